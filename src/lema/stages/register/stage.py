"""Stage `register`: log both candidates to MLflow, register them, and promote by a paired test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lema
from lema.config import Config
from lema.jsonl import write_json
from lema.records import StageReport
from lema.stages.common import funnel_counts, quality_metrics, validate_details
from lema.stages.layout import VARIANTS, paths


def candidates(cfg: Config, rnd: int = 1) -> list[dict[str, Any]]:
    """Both fine-tuned variants with their metrics, eval rows, dataset inputs and data version."""
    from lema.registry.datasets import variant_records
    from lema.registry.provenance import data_version

    p = paths(cfg, rnd)
    out = []
    for v in VARIANTS:
        loss_file = p.file("train/{variant}/loss.json", v)
        records = variant_records(cfg, v, rnd)
        metrics = json.loads(p.file("eval/{variant}/metrics.json", v).read_text())
        out.append({"name": v, "model_dir": p.model(v), "metrics": metrics,
                    "rows": p.file("eval/{variant}/rows.jsonl", v), "datasets": records,
                    "tags": {"data_version": data_version(records)},
                    "loss_history": json.loads(loss_file.read_text()) if loss_file.exists() else [],
                    "artifacts": [p.file("eval/{variant}/metrics.json", v)]})
    return out


def serving_contract(cfg: Config) -> dict[str, Any]:
    """The registered models answer as evaluation asked them: its prompt, shots, token budget and stop strings."""
    from lema.registry.serving import contract

    e = cfg.evaluate
    return contract(e.max_tokens, e.stop, e.shots, cfg.seed)


def promotion_numbers(report: StageReport) -> dict[str, Any]:
    """`register/promotion.json` for `dvc metrics show`: versions, scores and the decision as numbers and booleans
    (the statistics only when a comparison was made; the model cards live in MLflow)."""
    d = report.details
    dec = d["decision"]
    out: dict[str, Any] = {"version": {k: int(v) for k, v in d["versions"].items()}, "score": d["scores"],
                           "promoted": bool(dec["promote"]), "compared": bool(dec["compared"]),
                           "candidate_is_lema": d["candidate"] == "lema"}
    if dec["compared"]:
        out |= {k: dec[k] for k in ("n", "wins", "losses", "diff", "p_value") if dec[k] is not None}
        out |= {"ci95_low": dec["ci95"][0], "ci95_high": dec["ci95"][1]}
        if dec["mdd"] is not None:
            out["mdd"] = dec["mdd"]
    return out


def run(cfg: Config, rnd: int = 1) -> StageReport:
    from lema.registry.provenance import git_commit, lineage_tags
    from lema.registry.store import register_models, tracking_uri

    p = paths(cfg, rnd)
    funnel = funnel_counts(cfg, rnd)
    stage_metrics = {f"funnel.{k.replace(' ', '_')}": v for k, v in funnel.items()}
    usage = json.loads(p.file("correct/report.json").read_text())["details"].get("usage", {})
    stage_metrics |= {f"correct.{k}": v for k, v in usage.items() if isinstance(v, (int, float))}
    stage_metrics |= quality_metrics(validate_details(cfg, rnd))
    report = register_models(
        candidates(cfg, rnd), uri=tracking_uri(cfg.register_.tracking_uri, cfg.run_dir),
        experiment=cfg.register_.experiment, model_name=cfg.register_.model_name,
        primary_metric=cfg.register_.primary_metric, params=cfg.model_dump(mode="json", by_alias=True),
        run_artifacts=[p.file("validate/ge_result.json"), p.file("validate/data_docs"),
                       p.file("correct/report.json"), p.file("collect/report.json")],
        stage_metrics=stage_metrics,
        tags={"config_hash": cfg.section_hash(*cfg.model_dump(by_alias=True).keys()),
              "git_commit": git_commit(Path(lema.__file__).parent)} | lineage_tags(p),  # the code's own checkout
        alpha=cfg.register_.alpha, min_questions=cfg.register_.min_questions, seed=cfg.seed,
        serving=serving_contract(cfg))
    write_json(p.file("register/report.json"), report)
    write_json(p.file("register/promotion.json"), promotion_numbers(report))
    return report
