"""Stage `train@<variant>`: fine-tune the base on one SFT set (TRL's SFTTrainer)."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.common import resolve_model
from lema.stages.layout import paths


def run(cfg: Config, variant: str, rnd: int = 1) -> StageReport:
    from lema.stages.train.train import train

    p = paths(cfg, rnd)
    return train(resolve_model(cfg, cfg.train.model), p.file("sft/{variant}.jsonl", variant), p.train(variant),
                 cfg.train, seed=cfg.seed, name=variant)
