"""Stage `base-model`: pretrain the embedded tiny Llama (only when a generator or training uses `base`)."""

from __future__ import annotations

from lema.config import Config
from lema.jsonl import write_json
from lema.records import StageReport
from lema.stages.base_model.build import build_base_model
from lema.stages.layout import paths


def run(cfg: Config) -> StageReport:
    out = paths(cfg).base_model
    report = build_base_model(cfg.base_model, out, data_source=cfg.data.source, data_dir=cfg.data.dir,
                              seed=cfg.seed)
    write_json(paths(cfg).file("models/base_report.json"), report)
    return report
