"""Stage `register`: log both candidates to MLflow, register them, and promote by a paired test."""

from __future__ import annotations

import json
from pathlib import Path

import lema
from lema.config import Config
from lema.jsonl import write_json
from lema.records import StageReport
from lema.stages.common import funnel_counts
from lema.stages.layout import VARIANTS, paths


def run(cfg: Config, rnd: int = 1) -> StageReport:
    from lema.registry.provenance import data_version, git_commit, lineage_tags
    from lema.registry.store import register_models, tracking_uri

    p = paths(cfg, rnd)
    candidates = []
    for v in VARIANTS:
        metrics = json.loads((p.eval(v) / "metrics.json").read_text())
        loss_file = p.train(v) / "loss.json"
        candidates.append({"name": v, "model_dir": p.model(v), "metrics": metrics, "rows": p.eval(v) / "rows.jsonl",
                           "loss_history": json.loads(loss_file.read_text()) if loss_file.exists() else [],
                           "artifacts": [p.eval(v) / "metrics.json"]})
    funnel = funnel_counts(cfg, rnd)
    stage_metrics = {f"funnel.{k.replace(' ', '_')}": v for k, v in funnel.items()}
    usage = json.loads((p.correct / "report.json").read_text())["details"].get("usage", {})
    stage_metrics |= {f"correct.{k}": v for k, v in usage.items() if isinstance(v, (int, float))}
    report = register_models(
        candidates, uri=tracking_uri(cfg.register_.tracking_uri, cfg.run_dir), experiment=cfg.register_.experiment,
        model_name=cfg.register_.model_name, primary_metric=cfg.register_.primary_metric,
        params=cfg.model_dump(mode="json", by_alias=True),
        run_artifacts=[p.validate / "ge_result.json", p.validate / "data_docs", p.correct / "report.json",
                       p.collect / "report.json"],
        stage_metrics=stage_metrics,
        tags={"config_hash": cfg.section_hash(*cfg.model_dump(by_alias=True).keys()),
              "git_commit": git_commit(Path(lema.__file__).parent),  # the code's own checkout
              "data_version": data_version(cfg, rnd)} | lineage_tags(p),
        alpha=cfg.register_.alpha, min_questions=cfg.register_.min_questions, seed=cfg.seed)
    write_json(p.register / "report.json", report)
    return report
