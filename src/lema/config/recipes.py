"""Training recipes: alignment-handbook style YAML (TRL field names plus a `lema:` block) as TrainConfig keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# A recipe is written the way alignment-handbook recipes are: flat keys named after TRL's `ModelConfig`
# and `SFTConfig` fields (so a recipe reads like `trl sft` arguments), plus a `lema:` block for the keys
# TRL has no field for.  Each TRL key maps onto one TrainConfig key (`trl_args` maps them back).
RECIPE_TRL_KEYS: dict[str, str] = {
    # trl.ModelConfig
    "model_name_or_path": "model",
    "use_peft": "lora.enabled",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_target_modules": "lora.target_modules",
    "load_in_4bit": "quantization",           # with bnb_4bit_quant_type: nf4 (the only kind lema trains)
    "bnb_4bit_quant_type": "quantization",
    "use_bnb_nested_quant": "double_quant",
    # trl.SFTConfig (transformers.TrainingArguments)
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "max_length": "max_length",
    "warmup_steps": "warmup_ratio",           # transformers 5: a float in [0, 1) is a ratio of total steps
    "lr_scheduler_type": "lr_scheduler",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps",
    "bf16": "bf16",
    "gradient_checkpointing": "gradient_checkpointing",
    "packing": "packing",
    "packing_strategy": "packing_strategy",
    "save_steps": "save_steps",
}
# lema's own keys (no TRL field): the data mixture, the global batch, the paper's large-model rate,
# prompt/completion truncation, and the quantization shorthand.
RECIPE_LEMA_KEYS = ("mixture", "global_batch_size", "learning_rate_large", "large_model_params_b",
                    "max_source_length", "max_target_length", "quantization", "double_quant")


def _key_line(path: Path, text: str, key: str) -> int | None:
    """1-based line of a top-level (or `lema:`) key, for error messages."""
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*:", line):
            return i
    return None


def recipe_to_train(data: dict[str, Any], where: str = "<recipe>", text: str = "") -> dict[str, Any]:
    """A recipe mapping (TRL field names + `lema:` block) as TrainConfig keys (nested `lora`)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a recipe is a mapping of SFTConfig/ModelConfig fields")
    if "train" in data:  # lema's native layout (TrainConfig keys under `train:`), still accepted
        return dict(data["train"] or {})
    out: dict[str, Any] = {}

    def put(dotted: str, value: Any) -> None:
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def bad(key: str, msg: str) -> ValueError:
        line = _key_line(Path(where), text, key)
        return ValueError(f"{where}{f', line {line}' if line else ''}: field '{key}': {msg}")

    quant_type = data.get("bnb_4bit_quant_type", "nf4")
    for key, value in data.items():
        if key == "lema":
            for k, v in (value or {}).items():
                if k not in RECIPE_LEMA_KEYS:
                    raise bad(k, f"not one of lema's recipe keys {list(RECIPE_LEMA_KEYS)}")
                put(k, v)
        elif key in ("load_in_4bit", "bnb_4bit_quant_type"):
            if quant_type != "nf4":
                raise bad("bnb_4bit_quant_type", f"{quant_type!r}: lema trains NF4 (QLoRA) only")
            if key == "load_in_4bit":
                put("quantization", "nf4" if value else "none")
        elif key == "warmup_steps":
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise bad(key, f"{value!r}: give warm-up as a ratio of the total steps, in [0, 1)")
            put("warmup_ratio", float(value))
        elif key in RECIPE_TRL_KEYS:
            put(RECIPE_TRL_KEYS[key], value)
        else:
            raise bad(key, "not a trl SFTConfig/ModelConfig field lema maps (see RECIPE_TRL_KEYS), "
                           "nor the `lema:` block")
    return out


def load_recipe(path: str | Path, base_dir: Path | None = None) -> dict[str, Any]:
    """A recipe file as TrainConfig keys (resolved relative to cwd, then to `base_dir`)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"training recipe not found: {path}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    return recipe_to_train(data, str(path), text)
