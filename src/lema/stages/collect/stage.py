"""Stage `collect`: sample CoT paths from every generator on the round's training questions."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.collect.collect import run_collect
from lema.stages.common import collect_problems, generator_backend, resolve_model, round_generators
from lema.stages.layout import paths


def run(cfg: Config, rnd: int = 1) -> StageReport:
    return run_collect(collect_problems(cfg, rnd), round_generators(cfg, rnd), generator_backend(cfg),
                       lambda m: resolve_model(cfg, m), paths(cfg, rnd).collect, seed=cfg.seed)
