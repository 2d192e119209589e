"""Stage `build-sft`: the CoT-only and CoT + corrections training sets."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.common import train_problems
from lema.stages.layout import paths
from lema.stages.sft.build import run_build_sft


def run(cfg: Config, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    s = cfg.sft
    valid, right = p.cumulative()
    return run_build_sft(train_problems(cfg, s.cot_limit), valid, right, p.sft,
                         include_right_paths=s.include_right_paths,
                         correction_fraction=s.correction_fraction, cot_repeats=s.cot_repeats,
                         explanations=s.explanations, seed=cfg.seed)
