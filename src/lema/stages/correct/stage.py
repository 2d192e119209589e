"""Stage `correct`: the corrector names the first wrong step of each wrong path and continues correctly."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.common import corrector_for
from lema.stages.correct.correct import run_correct
from lema.stages.layout import paths


def run(cfg: Config, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    return run_correct(p.collect / "wrong.jsonl", p.correct / "corrections.jsonl", p.correct / "quarantine.jsonl",
                       corrector_for(cfg, p.correct / "cache"), p.correct / "report.json")
