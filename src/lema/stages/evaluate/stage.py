"""Stage `evaluate@<variant>`: pass@1 (and maj@k/pass@k) of one fine-tuned model on every eval set."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.common import backend_for, eval_sets
from lema.stages.evaluate.evaluate import run_evaluate
from lema.stages.layout import paths


def run(cfg: Config, variant: str, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    backend = backend_for(cfg, cfg.evaluate.backend, str(p.model(variant)))
    try:
        e = cfg.evaluate
        skipped: dict[str, list] = {}
        sets = eval_sets(cfg, skipped=skipped)
        return run_evaluate(backend, variant, sets, p.eval(variant), max_tokens=e.max_tokens,
                            shots=e.shots, stop=e.stop, samples=e.samples, sample_temperature=e.sample_temperature,
                            seed=cfg.seed, min_decimals=e.min_decimals, skipped=skipped)
    finally:
        backend.close()
