"""Stage `correct`: the corrector names the first wrong step of each wrong path and continues correctly."""

from __future__ import annotations

from lema.config import Config
from lema.records import StageReport
from lema.stages.common import corrector_for
from lema.stages.correct.correct import run_correct
from lema.stages.layout import paths


def run(cfg: Config, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    return run_correct(p.file("collect/wrong.jsonl"), p.file("correct/corrections.jsonl"),
                       p.file("correct/quarantine.jsonl"),
                       corrector_for(cfg, p.file("correct/cache")), p.file("correct/report.json"))
