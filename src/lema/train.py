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


def _dataset(path: str | Path):
    from datasets import Dataset

    rows = [{"prompt": e.prompt, "completion": e.completion} for e in iter_jsonl(path, SFTExample)]
    if not rows:
        raise ValueError(f"{path}: no training examples")
    return Dataset.from_list(rows)


def sft_args(cfg: TrainConfig, out_dir: Path, seed: int, resume: bool = False):
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, max_length=cfg.max_length, logging_steps=cfg.logging_steps,
        save_strategy="epoch", save_total_limit=1, report_to=[], seed=seed, data_seed=seed,
        completion_only_loss=True, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=False, bf16=False,
    )


def peft_config(cfg: TrainConfig):
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def train(model: str, data_path: str | Path, out_dir: str | Path, cfg: TrainConfig, seed: int = 0,
          name: str = "model") -> StageReport:
    """Fine-tune `model` on `data_path`; the merged model lands in ``out_dir/model``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    t0 = time.time()
    torch.manual_seed(seed)
    out = Path(out_dir)
    ds = _dataset(data_path)
    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    args = sft_args(cfg, out, seed)
    trainer = SFTTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config(cfg))
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    result = trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
    final = trainer.model
    if cfg.lora.enabled:
        final = final.merge_and_unload()
    model_dir = out / "model"
    final.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    (out / "loss.json").write_text(json.dumps(history, indent=1))
    report = StageReport(stage=f"train:{name}", n_in=len(ds), n_out=1, seconds=time.time() - t0,
                         details={"train_loss": result.training_loss, "steps": trainer.state.global_step,
                                  "base_model": model, "lora": cfg.lora.enabled,
                                  "final_loss": history[-1]["loss"] if history else None},
                         outputs={"model": str(model_dir), "loss": str(out / "loss.json")})
    write_json(out / "report.json", report)
    return report
