"""Train stage: supervised fine-tuning with TRL's ``SFTTrainer``.

Loss is on the completion only (TRL does this for prompt/completion data).
LoRA adapters (peft) are merged after training, so every trained model is a
plain Hugging Face directory that vLLM can serve.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import TrainConfig
from .jsonl import iter_jsonl, write_json
from .records import SFTExample, StageReport


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


def sft_args(cfg: TrainConfig, out_dir: Path, seed: int, lr: float | None = None):
    import os

    import torch
    from trl import SFTConfig

    world = int(os.environ.get("WORLD_SIZE", "1"))
    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
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
    """QLoRA: 4-bit NF4 (double quantisation) base weights, bf16 compute.  CUDA only."""
    if cfg.quantization == "none":
        return None
    import torch

    if not torch.cuda.is_available():
        raise ValueError("train.quantization: nf4 (QLoRA) needs a CUDA GPU and bitsandbytes; "
                         "use a recipe without quantization on CPU")
    if not cfg.lora.enabled:
        raise ValueError("train.quantization: nf4 trains LoRA adapters; set train.lora.enabled: true")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=torch.bfloat16)


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
          name: str = "model") -> StageReport:
    """Fine-tune `model` on `data_path`; the merged model lands in ``out_dir/model``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    t0 = time.time()
    torch.manual_seed(seed)
    out = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    ds = _dataset(data_path, cfg, tok, seed, ("cot", "correction") if name == "lema" else ("cot",))
    quant = quantization_config(cfg)
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, quantization_config=quant)
    lr = learning_rate(cfg, sum(p.numel() for p in base.parameters()))
    trainer = SFTTrainer(model=base, args=sft_args(cfg, out, seed, lr), train_dataset=ds, processing_class=tok,
                         peft_config=peft_config(cfg))
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    result = trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
    model_dir = out / "model"
    if cfg.lora.enabled and quant is not None:
        trainer.model.save_pretrained(out / "adapter")
        tok.save_pretrained(out / "adapter")
        merge_adapter(model, out / "adapter", model_dir, dtype)
    else:
        final = trainer.model.merge_and_unload() if cfg.lora.enabled else trainer.model
        final.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    (out / "loss.json").write_text(json.dumps(history, indent=1))
    report = StageReport(stage=f"train:{name}", n_in=len(ds), n_out=1, seconds=time.time() - t0,
                         details={"train_loss": result.training_loss, "steps": trainer.state.global_step,
                                  "base_model": model, "lora": cfg.lora.enabled, "learning_rate": lr,
                                  "examples_after_mixture": len(ds), "resumed_from": ckpts[-1].name if ckpts else None,
                                  "final_loss": history[-1]["loss"] if history else None},
                         outputs={"model": str(model_dir), "loss": str(out / "loss.json")})
    write_json(out / "report.json", report)
    return report
