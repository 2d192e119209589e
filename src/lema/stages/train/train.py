"""Train stage: supervised fine-tuning with TRL's ``SFTTrainer``.

Loss is on the completion only (TRL does this for prompt/completion data).
LoRA adapters (peft) are merged after training, so every trained model is a
plain Hugging Face directory that vLLM can serve.

Checkpoints live under ``<checkpoint_root>/<key>/``, where the key hashes what
produces the model (training config, SFT set, base model, seed): a changed
input starts afresh, and only an interrupted run of the same key resumes (a
finished run removes its checkpoints).
Under ``accelerate launch`` (DDP/FSDP) only the main process writes files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lema.config import TrainConfig
from lema.jsonl import iter_jsonl, write_json
from lema.records import SFTExample, StageReport


def mix(examples: list[SFTExample], weights: dict[str, float], seed: int = 0,
        require: tuple[str, ...] = ("cot", "correction")) -> list[SFTExample]:
    """Apply the recipe's mixture: weight w keeps each example of that kind w times in expectation
    (0.5 keeps half, 2 doubles).  Every required kind with a weight must be present: a silently
    empty source is an error (the CoT-only baseline requires only "cot")."""
    import random

    rng = random.Random(seed)
    kinds = {e.kind for e in examples}
    unknown = set(weights) - {"cot", "correction"}
    if unknown:
        raise ValueError(f"train.mixture: unknown kind(s) {sorted(unknown)} (expected cot, correction)")
    missing = [k for k, w in weights.items() if w > 0 and k in require and k not in kinds]
    if missing:
        raise ValueError(f"train.mixture asks for {missing} but the SFT set has no such examples")
    out = []
    for e in examples:
        w = weights.get(e.kind, 1.0)
        copies = int(w) + (1 if rng.random() < w - int(w) else 0)
        out.extend([e] * copies)
    if not out:
        raise ValueError("train.mixture leaves no training examples")
    rng.shuffle(out)
    return out


def _truncate(text: str, tok, limit: int | None, keep: str) -> str:
    if not limit:
        return text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return tok.decode(ids[-limit:] if keep == "end" else ids[:limit])


def _dataset(path: str | Path, cfg: TrainConfig, tok, seed: int, require: tuple[str, ...]):
    from datasets import Dataset

    examples = mix(list(iter_jsonl(path, SFTExample)), cfg.mixture, seed, require)
    rows = [{"prompt": _truncate(e.prompt, tok, cfg.max_source_length, "end"),
             "completion": _truncate(e.completion, tok, cfg.max_target_length, "start")} for e in examples]
    if not rows:
        raise ValueError(f"{path}: no training examples")
    return Dataset.from_list(rows)


def learning_rate(cfg: TrainConfig, n_params: int) -> float:
    """The paper's rule: a lower rate from `large_model_params_b` billion parameters."""
    if cfg.learning_rate_large is not None and n_params >= cfg.large_model_params_b * 1e9:
        return cfg.learning_rate_large
    return cfg.learning_rate


def grad_accum(cfg: TrainConfig, world_size: int = 1) -> int:
    if cfg.global_batch_size is None:
        return cfg.grad_accum
    per_step = cfg.batch_size * world_size
    if cfg.global_batch_size % per_step:
        raise ValueError(f"train.global_batch_size {cfg.global_batch_size} is not a multiple of "
                         f"batch_size x devices = {per_step}")
    return cfg.global_batch_size // per_step


def sft_args(cfg: TrainConfig, ckpt_dir: Path, seed: int, lr: float | None = None, world: int | None = None):
    """The recipe as trl's SFTConfig (the TrainConfig <-> SFTConfig names are config.RECIPE_TRL_KEYS)."""
    import torch
    from trl import SFTConfig

    world = world or int(os.environ.get("WORLD_SIZE", "1"))
    return SFTConfig(
        output_dir=str(ckpt_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=lr if lr is not None else cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=grad_accum(cfg, world),
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, max_length=cfg.max_length, logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "epoch", save_steps=cfg.save_steps or 500, save_total_limit=2,
        report_to=[], seed=seed, data_seed=seed, completion_only_loss=True, packing=cfg.packing,
        packing_strategy=cfg.packing_strategy, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=False, bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
    )


def peft_config(cfg: TrainConfig):
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def quantization_config(cfg: TrainConfig):
    """QLoRA: 4-bit NF4 (double quantisation) base weights, bf16 compute.  Built on any machine;
    `require_cuda` stops a run that would load it without a GPU."""
    if cfg.quantization == "none":
        return None
    if not cfg.lora.enabled:
        raise ValueError("train.quantization: nf4 trains LoRA adapters; set train.lora.enabled: true")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def require_cuda(quant) -> None:
    import torch

    if quant is not None and not torch.cuda.is_available():
        raise ValueError("train.quantization: nf4 (QLoRA) needs a CUDA GPU and bitsandbytes; "
                         "use a recipe without quantization on CPU")


def count_params(model: str) -> int:
    """Parameters of `model` from its config alone (meta device: no weights read, no memory used),
    so the large-model rule sees the true size even where 4-bit packing halves `numel`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
    return sum(p.numel() for p in m.parameters())


def _model_identity(model: str) -> str:
    """Content hash of a local model directory (names, sizes and mtimes above 2 GiB), else the hub id."""
    p = Path(model)
    if not p.is_dir():
        return model
    files = sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    big = sum(f.stat().st_size for f in files) > 2 << 30
    for f in files:
        h.update(str(f.relative_to(p)).encode())
        if big:
            st = f.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def run_key(model: str, data_path: str | Path, cfg: TrainConfig, seed: int) -> str:
    """What produces the model: its training config (values, not the recipe's name), SFT set, base model, seed."""
    spec = {"train": cfg.model_dump(mode="json", exclude={"recipe"}), "seed": seed,
            "data": hashlib.sha256(Path(data_path).read_bytes()).hexdigest(), "model": _model_identity(model)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def default_checkpoint_root(out_dir: Path) -> Path:
    """``<run_dir>/checkpoints/<variant>`` for the pipeline's ``<run_dir>/train/<variant>``, else a
    ``checkpoints/<name>`` sibling of the output: never inside the output, which DVC deletes before a rerun."""
    out = Path(out_dir)
    base = out.parent.parent if out.parent.name == "train" else out.parent
    return base / "checkpoints" / out.name


@dataclass
class TrainPlan:
    """Everything a run needs before the model is loaded: the recipe as trl/peft/bitsandbytes objects."""

    key: str
    ckpt_dir: Path
    args: Any           # trl.SFTConfig
    peft: Any           # peft.LoraConfig | None
    quant: Any          # transformers.BitsAndBytesConfig | None
    learning_rate: float
    n_params: int
    dataset: Any        # datasets.Dataset (prompt/completion)
    tokenizer: Any


def plan(model: str, data_path: str | Path, out_dir: str | Path, cfg: TrainConfig, seed: int = 0,
         name: str = "model", checkpoint_root: str | Path | None = None) -> TrainPlan:
    """Resolve the recipe against the model and data; fails on bad config before any weights load."""
    from transformers import AutoTokenizer

    out = Path(out_dir)
    root = Path(checkpoint_root) if checkpoint_root else default_checkpoint_root(out)
    key = run_key(model, data_path, cfg, seed)
    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    ds = _dataset(data_path, cfg, tok, seed, ("cot", "correction") if name == "lema" else ("cot",))
    quant = quantization_config(cfg)
    n_params = count_params(model)
    lr = learning_rate(cfg, n_params)
    return TrainPlan(key=key, ckpt_dir=root / key, args=sft_args(cfg, root / key, seed, lr), peft=peft_config(cfg),
                     quant=quant, learning_rate=lr, n_params=n_params, dataset=ds, tokenizer=tok)


def merge_adapter(base_model: str, adapter_dir: str | Path, out_dir: str | Path, dtype=None) -> Path:
    """Fold a LoRA adapter into an unquantised copy of its base model, for vLLM serving."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype or torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").exists()
                                  else base_model).save_pretrained(out_dir)
    return Path(out_dir)


def train(model: str, data_path: str | Path, out_dir: str | Path, cfg: TrainConfig, seed: int = 0,
          name: str = "model", *, checkpoint_root: str | Path | None = None, callbacks: list | None = None
          ) -> StageReport:
    """Fine-tune `model` on `data_path`; the merged model lands in ``out_dir/model``.

    Checkpoints go to ``checkpoint_root/<key>`` (default: `default_checkpoint_root`), outside the stage
    output that DVC deletes before a rerun.  `callbacks` are extra transformers TrainerCallbacks."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    t0 = time.time()
    torch.manual_seed(seed)
    out = Path(out_dir)
    p = plan(model, data_path, out, cfg, seed, name, checkpoint_root)
    require_cuda(p.quant)
    resume = get_last_checkpoint(str(p.ckpt_dir)) if p.ckpt_dir.is_dir() else None  # transformers' own rule
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, quantization_config=p.quant)
    trainer = SFTTrainer(model=base, args=p.args, train_dataset=p.dataset, processing_class=p.tokenizer,
                         peft_config=p.peft, callbacks=callbacks)
    # TRL drops an example whose prompt alone fills max_length (no completion token left to learn): say so.
    trained = len(trainer.train_dataset)
    if trained < len(p.dataset) and trainer.is_world_process_zero():
        print(f"train {name}: {len(p.dataset) - trained} of {len(p.dataset)} examples not trained on: the prompt "
              f"fills train.max_length={cfg.max_length} tokens (raise it to keep them)", file=sys.stderr)
    result = trainer.train(resume_from_checkpoint=resume)

    if trainer.is_fsdp_enabled:  # gather the shards: save_model writes one full model on the main process
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    main = trainer.is_world_process_zero()
    model_dir = out / "model"
    if cfg.lora.enabled:
        # The adapter is scratch next to the checkpoints (removed below): the declared artifact is the merged model.
        adapter = p.ckpt_dir / "adapter"
        trainer.save_model(str(adapter))  # every rank joins (FSDP gathers); only the main one writes
        trainer.accelerator.wait_for_everyone()
        if main:
            p.tokenizer.save_pretrained(adapter)
            merge_adapter(model, adapter, model_dir, dtype)
    else:
        trainer.save_model(str(model_dir))
        if main:
            p.tokenizer.save_pretrained(model_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    report = StageReport(stage=f"train:{name}", n_in=len(p.dataset), n_out=1, seconds=time.time() - t0,
                         details={"train_loss": result.training_loss, "steps": trainer.state.global_step,
                                  "base_model": model, "lora": cfg.lora.enabled, "learning_rate": p.learning_rate,
                                  "quantization": cfg.quantization, "run_key": p.key,
                                  "world_size": trainer.args.world_size,
                                  "examples_after_mixture": len(p.dataset), "examples_trained": trained,
                                  "dropped_prompt_fills_max_length": len(p.dataset) - trained,
                                  "resumed_from": Path(resume).name if resume else None,
                                  "final_loss": history[-1]["loss"] if history else None},
                         outputs={"model": str(model_dir), "loss": str(out / "loss.json"),
                                  "checkpoints": str(p.ckpt_dir)})
    if main:
        (out / "loss.json").write_text(json.dumps(history, indent=1))
        write_json(out / "report.json", report)
        # Checkpoints exist to resume an interrupted run; a finished one (and any other key's) needs none,
        # so a rerun of the same inputs (e.g. `lema run --force`) trains again instead of "resuming" at the end.
        shutil.rmtree(p.ckpt_dir.parent, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return report
