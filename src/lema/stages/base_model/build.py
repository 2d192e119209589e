"""The embedded default model: a byte-level BPE tokenizer (digits always split
into single tokens, which is what lets a tiny model learn arithmetic) and a
small Llama pretrained from scratch on training solutions in step format.

Saved in Hugging Face format, so everything downstream uses the same
``from_pretrained`` path a user's real model takes.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from lema.config import BaseModelConfig
from lema.data import load_split
from lema.grading.steps import format_steps, solution_steps
from lema.prompts import cot_prompt
from lema.records import Problem, StageReport

SPECIAL = ["<pad>", "<s>", "</s>"]


def cot_text(p: Problem) -> tuple[str, str]:
    """(prompt, completion) of a reference solution in the shared step format."""
    prompt = cot_prompt(p.task).render(shots=0, question=p.question)
    return prompt, format_steps(solution_steps(p.gold_solution, p.gold_answer, p.task))


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=4096)


def _packed_blocks(token_lists: list[list[int]], block: int, eos: int) -> list[list[int]]:
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids + [eos])
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


class _Blocks:
    """Packed token blocks as a map-style dataset (no `datasets` needed); labels = inputs (causal LM)."""

    def __init__(self, blocks: list[list[int]]):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict:
        import torch

        ids = torch.tensor(self.blocks[i])
        return {"input_ids": ids, "labels": ids}


def _wall_clock_stop(seconds: float):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        """The optional `pretrain_minutes` cap (the step budget stays the reproducible one)."""

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.time()

        def on_step_end(self, args, state, control, **kw):
            if time.time() - self.start >= seconds:
                control.should_training_stop = True

    return Stop()


def build_base_model(cfg: BaseModelConfig, out_dir: str | Path, *, data_source: str = "bundled",
                     data_dir: str = "data", seed: int = 0, limit: int | None = None,
                     problems: list[Problem] | None = None) -> StageReport:
    """Train tokenizer + pretrain a tiny Llama for a fixed step budget (on `problems` if given).

    Pretraining goes through transformers' Trainer, so it runs on the GPU when there is one (and under
    `accelerate launch`); on CPU the same config and seed give the same model."""
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, set_seed

    t0 = time.time()
    random.seed(seed)
    set_seed(seed)
    if problems is None:
        problems = [p for split in cfg.corpus for p in load_split(split, data_source, data_dir, limit)]
    docs = ["".join(cot_text(p)) for p in problems]
    tok = train_tokenizer(docs, cfg.vocab_size)
    ids = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    blocks = _packed_blocks(ids, cfg.max_length, tok.eos_token_id)
    if not blocks:
        raise ValueError("pretraining corpus is smaller than one block; raise the limit or lower max_length")

    model_cfg = LlamaConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                            num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                            intermediate_size=cfg.intermediate_size, max_position_embeddings=2048,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(model_cfg)
    steps_per_epoch = math.ceil(len(blocks) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.pretrain_max_epochs
    if cfg.pretrain_steps is not None:
        total_steps = min(total_steps, cfg.pretrain_steps)
    callbacks = [_wall_clock_stop(cfg.pretrain_minutes * 60)] if cfg.pretrain_minutes else []
    with tempfile.TemporaryDirectory(prefix="lema-pretrain-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=total_steps, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.05},
            warmup_steps=max(1, min(50, total_steps // 10)), logging_steps=1, save_strategy="no", report_to=[],
            seed=seed, data_seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=_Blocks(blocks), callbacks=callbacks)
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    step = trainer.state.global_step
    out = Path(out_dir)
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "pretrain_loss.txt").write_text("\n".join(f"{x:.5f}" for x in losses) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    return StageReport(stage="base-model", n_in=len(problems), n_out=1, seconds=time.time() - t0,
                       details={"params": n_params, "steps": step, "blocks": len(blocks),
                                "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
                                "vocab": len(tok), "device": str(args.device)},
                       outputs={"model": str(out)})
