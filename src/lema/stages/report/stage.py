"""Stage `report`: the run's Markdown report, plots and summary (logged to the registered run)."""

from __future__ import annotations

import json

from lema.config import Config
from lema.jsonl import read_jsonl, write_json
from lema.records import Correction, StageReport
from lema.stages.common import comparison, funnel_counts, stage_reports, validate_details
from lema.stages.layout import VARIANTS, paths
from lema.stages.report.report import step_histogram, write_report


def run(cfg: Config, rnd: int = 1) -> StageReport:
    p = paths(cfg, rnd)
    metrics = {v: json.loads(p.file("eval/{variant}/metrics.json", v).read_text()) for v in VARIANTS}
    loss_files = {v: p.file("train/{variant}/loss.json", v) for v in VARIANTS}
    losses = {v: json.loads(f.read_text()) for v, f in loss_files.items() if f.exists()}
    corrections = read_jsonl(p.file("validate/valid.jsonl"), Correction)
    stages = [json.loads(f.read_text()) for f in stage_reports(cfg, rnd)]
    registry_file = p.file("register/report.json")
    registry = json.loads(registry_file.read_text())["details"] if registry_file.exists() else None
    cmp = comparison(cfg, rnd)
    funnel = funnel_counts(cfg, rnd)
    checked = validate_details(cfg, rnd)
    path = write_report(p.report, funnel=funnel, metrics=metrics, step_histogram=step_histogram(corrections),
                        losses=losses, stages=stages, registry=registry, comparison=cmp,
                        step_check=checked.get("step_check"), error_types=checked.get("error_types"))
    # Tabular copies for `dvc plots show`.
    write_json(p.file("report/funnel.json"), {"funnel": [{"step": k, "rows": v} for k, v in funnel.items()]})
    write_json(p.file("report/accuracy.json"), {"accuracy": [
        {"model": f"{v}:{s}", "accuracy": m["accuracy"]} for v, sets in metrics.items() for s, m in sets.items()]})
    summary = {"funnel": funnel, "step_check": checked.get("step_check"), "error_types": checked.get("error_types"),
               "metrics": metrics, "comparison": cmp, "registry": registry, "report": str(path)}
    write_json(p.file("summary.json"), summary)
    if registry:
        from lema.registry.store import log_report

        log_report(registry, p.report)
    return StageReport(stage="report", n_in=len(stages), n_out=1, outputs={"report": str(path)})
