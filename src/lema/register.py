"""Register stage: MLflow tracking and the model registry.

Each fine-tuned model gets a run (params, metrics, artifacts) and a version of
one registered model; the better model by the primary metric gets the
``champion`` alias, the other ``challenger``.  The tracking URI is
``MLFLOW_TRACKING_URI`` when set, else a SQLite store inside the run dir.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .records import StageReport

SECRET_MARKERS = ("key", "token", "secret", "password")


def tracking_uri(configured: str | None, run_dir: str | Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted params for MLflow; anything that looks like a secret is dropped, never logged."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if any(m in k.lower() for m in SECRET_MARKERS):
            continue
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = str(v)[:500]
    return out


def serving_requirements() -> list[str]:
    """Pinned requirements for the logged model (MLflow's inference would demand torchvision)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in ("torch", "transformers", "tokenizers", "accelerate")]


def metric_key(name: str) -> str:
    return name.replace("/", "_")


def register_models(candidates: list[dict[str, Any]], *, uri: str, experiment: str, model_name: str,
                    primary_metric: str, params: dict[str, Any], run_artifacts: list[str | Path],
                    stage_metrics: dict[str, float], tags: dict[str, str] | None = None) -> StageReport:
    """candidates: [{name, model_dir, metrics: {set: {accuracy, ...}}, artifacts: [...]}]."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    client = MlflowClient()
    versions: dict[str, str] = {}
    scores: dict[str, float] = {}
    run_ids: dict[str, str] = {}
    for cand in candidates:
        with mlflow.start_run(run_name=cand["name"]) as run:
            mlflow.log_params(flatten(params))
            mlflow.set_tags({"lema.variant": cand["name"], **(tags or {})})
            for set_name, m in cand["metrics"].items():
                for k, v in m.items():
                    mlflow.log_metric(f"{metric_key(set_name)}.{k}", float(v))
            for k, v in stage_metrics.items():
                mlflow.log_metric(k, float(v))
            for step, entry in enumerate(cand.get("loss_history", [])):
                mlflow.log_metric("train_loss", float(entry["loss"]), step=int(entry.get("step", step)))
            for art in run_artifacts + cand.get("artifacts", []):
                p = Path(art)
                if p.is_dir():
                    mlflow.log_artifacts(str(p), artifact_path=p.name)
                elif p.exists():
                    mlflow.log_artifact(str(p))
            info = mlflow.transformers.log_model(transformers_model=str(cand["model_dir"]), name="model",
                                                 task="text-generation", registered_model_name=model_name,
                                                 pip_requirements=serving_requirements())
            run_ids[cand["name"]] = run.info.run_id
        version = str(info.registered_model_version)
        versions[cand["name"]] = version
        client.set_model_version_tag(model_name, version, "variant", cand["name"])
        for set_name, m in cand["metrics"].items():
            client.set_model_version_tag(model_name, version, f"accuracy.{set_name}", f"{m['accuracy']:.4f}")
        scores[cand["name"]] = cand["metrics"].get(primary_metric, {}).get("accuracy", 0.0)
    best = max(scores, key=lambda n: (scores[n], n == "lema"))
    client.set_registered_model_alias(model_name, "champion", versions[best])
    for name, version in versions.items():
        if name != best:
            client.set_registered_model_alias(model_name, "challenger", version)
    return StageReport(stage="register", n_in=len(candidates), n_out=len(versions),
                       details={"tracking_uri": uri, "model_name": model_name, "versions": versions,
                                "run_ids": run_ids, "champion": best, "scores": scores,
                                "primary_metric": primary_metric})


def log_report(registry: dict, report_dir: str | Path) -> None:
    """Attach the run report (Markdown + plots) to every registered variant's MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry["tracking_uri"])
    for run_id in registry.get("run_ids", {}).values():
        client.log_artifacts(run_id, str(report_dir), artifact_path="report")
