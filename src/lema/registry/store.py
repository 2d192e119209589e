"""MLflow I/O for the register stage: tracking, the model registry and the promotion aliases.

Each fine-tuned variant gets a run (params, metrics, dataset inputs, artifacts, its
per-question evaluation rows) and a version of one registered model (a pyfunc with
the serving contract, ``lema.registry.serving``), tagged with its data version, git
commit, config hash and metrics.  The run's better variant is the candidate; it
becomes ``champion`` only if it beats the current champion significantly on the same
questions (``lema.registry.promote``), else ``challenger`` with the reason recorded.
Every decision is kept as version tags (the promotion history, ``lema registry
history``); every version carries a model card.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lema.records import StageReport
from lema.registry.card import model_card
from lema.registry.promote import decide, promotion_tags

SECRET_MARKERS = ("key", "token", "secret", "password")


# MLflow's switch between presigned storage URLs (true) and the server's artifact proxy (false) for downloads.
PROXY_DOWNLOADS = "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"


@contextlib.contextmanager
def using_tracking_uri(uri: str):
    """Point MLflow at `uri` for a block, then restore the previous URI and environment.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI, so without this a second run in the
    same process (or any subprocess it starts) would silently log to the first run's store.

    Downloads go through the tracking server, as uploads do (unless the caller sets PROXY_DOWNLOADS): an MLflow 3
    client otherwise takes presigned URLs on the server's own storage endpoint (``http://s3:5000`` in the compose
    stack), which a client outside that network cannot reach and retries for minutes.
    """
    import mlflow

    before_env = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri() if before_env else None
    ours = PROXY_DOWNLOADS not in os.environ
    if ours:
        os.environ[PROXY_DOWNLOADS] = "false"
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if ours:
            os.environ.pop(PROXY_DOWNLOADS, None)
        if before_env is None:
            mlflow.set_tracking_uri(None)  # unsets the global and the environment variable
        else:
            mlflow.set_tracking_uri(before)
            os.environ["MLFLOW_TRACKING_URI"] = before_env


def tracking_uri(configured: str | None, run_dir: str | Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def create_experiment_beside_store(uri: str, name: str) -> None:
    """Create experiment `name` if missing; in a SQLite store its artifacts go to `mlartifacts/` beside the
    database (MLflow's default there is ./mlruns of whatever directory the caller happens to run in)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and MlflowClient(uri).get_experiment_by_name(name) is None:
        artifacts = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        MlflowClient(uri).create_experiment(name, artifact_location=artifacts.as_uri())


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
    """MLflow metric names allow letters, digits, _ - . space and /: "gsm8k/test" -> "gsm8k_test", "maj@8" -> "maj_at_8"."""
    return name.replace("/", "_").replace("@", "_at_")


def outcomes(rows_file: str | Path, eval_set: str) -> dict[str, bool]:
    out = {}
    for line in Path(rows_file).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r["eval_set"] == eval_set:
                out[r["id"]] = bool(r["correct"])
    return out


def _champion_outcomes(client, model_name: str, eval_set: str, exclude: set[str]):
    """(version, {id: correct}) of the current champion, from the eval rows logged with its run."""
    import mlflow

    try:
        champ = client.get_model_version_by_alias(model_name, "champion")
    except mlflow.exceptions.MlflowException:
        return None, None
    if str(champ.version) in exclude:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(champ.run_id, "eval/rows.jsonl", tmp)
        except Exception:  # noqa: BLE001 - a champion without rows cannot be compared; say so, do not guess
            return str(champ.version), {}
        return str(champ.version), outcomes(path, eval_set)


def register_models(candidates: list[dict[str, Any]], *, uri: str, experiment: str, model_name: str,
                    primary_metric: str, params: dict[str, Any], run_artifacts: list[str | Path],
                    stage_metrics: dict[str, float], tags: dict[str, str] | None = None, alpha: float = 0.05,
                    min_questions: int = 1, seed: int = 0, serving: dict[str, Any] | None = None) -> StageReport:
    """candidates: [{name, model_dir, metrics: {set: {...}}, rows: path, artifacts: [...], loss_history,
    datasets: [DataRecord], tags: {...}}]; `serving`: the serving contract (``lema.registry.serving.contract``,
    default: the evaluation defaults)."""
    from lema.registry.serving import contract

    if serving is None:
        from lema.config.schema import EvaluateConfig

        e = EvaluateConfig()
        serving = contract(e.max_tokens, e.stop, e.shots, seed)
    with using_tracking_uri(uri):
        return _register(candidates, uri=uri, experiment=experiment, model_name=model_name,
                         primary_metric=primary_metric, params=params, run_artifacts=run_artifacts,
                         stage_metrics=stage_metrics, tags=tags, alpha=alpha, min_questions=min_questions, seed=seed,
                         serving=serving)


def _log_candidate(cand: dict[str, Any], *, model_name: str, params: dict[str, Any], tags: dict[str, str],
                   run_artifacts: list[str | Path], stage_metrics: dict[str, float], serving: dict[str, Any]):
    """One variant's run: params, metrics, dataset inputs, artifacts and the pyfunc model; returns
    (run id, registered version)."""
    import mlflow
    from lema.registry.datasets import log_records
    from lema.registry.serving import save

    with mlflow.start_run(run_name=cand["name"]) as run:
        mlflow.log_params(flatten(params))
        mlflow.set_tags({"lema.variant": cand["name"], **tags})
        log_records(cand.get("datasets", []))
        for set_name, m in cand["metrics"].items():
            for k, v in m.items():
                if isinstance(v, (int, float)):
                    mlflow.log_metric(metric_key(f"{set_name}.{k}"), float(v))
        for k, v in stage_metrics.items():
            mlflow.log_metric(k, float(v))
        for step, entry in enumerate(cand.get("loss_history", [])):
            mlflow.log_metric("train_loss", float(entry["loss"]), step=int(entry.get("step", step)))
        if cand.get("rows"):  # stored under a fixed name: later promotions compare against it
            with tempfile.TemporaryDirectory() as tmp:
                fixed = Path(tmp) / "rows.jsonl"
                fixed.write_bytes(Path(cand["rows"]).read_bytes())
                mlflow.log_artifact(str(fixed), artifact_path="eval")
        for art in run_artifacts + cand.get("artifacts", []):
            p = Path(art)
            if p.is_dir():
                mlflow.log_artifacts(str(p), artifact_path=p.name)
            elif p.exists():
                mlflow.log_artifact(str(p))
        # Saved, then logged as run artifacts and registered: logging through log_model would load the model
        # and generate for the input example inside the register stage (a CPU task sized for bookkeeping).
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifacts(str(save(cand["model_dir"], Path(tmp) / "model", serving, serving_requirements())),
                                 artifact_path="model")
        mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name)
    return run.info.run_id, str(mv.version)


def _register(candidates, *, uri, experiment, model_name, primary_metric, params, run_artifacts, stage_metrics, tags,
              alpha, min_questions, seed, serving) -> StageReport:
    import mlflow
    from mlflow import MlflowClient

    create_experiment_beside_store(uri, experiment)
    mlflow.set_experiment(experiment)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = dict(tags or {})
    versions: dict[str, str] = {}
    run_ids: dict[str, str] = {}
    version_tags: dict[str, dict[str, str]] = {}
    for cand in candidates:
        version_tags[cand["name"]] = {**tags, **cand.get("tags", {})}
        run_ids[cand["name"]], versions[cand["name"]] = _log_candidate(
            cand, model_name=model_name, params=params, tags=version_tags[cand["name"]], run_artifacts=run_artifacts,
            stage_metrics=stage_metrics, serving=serving)
        version = versions[cand["name"]]
        for k, v in {"variant": cand["name"], **version_tags[cand["name"]]}.items():
            client.set_model_version_tag(model_name, version, k, v)
        for set_name, m in cand["metrics"].items():
            client.set_model_version_tag(model_name, version, f"accuracy.{set_name}", f"{m['accuracy']:.4f}")

    # The run's candidate: the better variant on the primary metric (LeMa on ties).
    scores = {c["name"]: c["metrics"].get(primary_metric, {}).get("accuracy", 0.0) for c in candidates}
    best = max(candidates, key=lambda c: (scores[c["name"]], c["name"] == "lema"))
    champ_version, champ_rows = _champion_outcomes(client, model_name, primary_metric, set(versions.values()))
    best_rows = outcomes(best["rows"], primary_metric) if best.get("rows") else {}
    decision = decide(champ_rows if champ_version else None, best_rows, alpha=alpha, min_questions=min_questions,
                      seed=seed, against=f"v{champ_version}" if champ_version else None)
    version = versions[best["name"]]
    set_aliases(client, model_name, version, decision.promote)
    history = promotion_tags(decision, primary_metric)
    history["promotion.at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for k, v in history.items():
        client.set_model_version_tag(model_name, version, k, v)
    not_selected = f"{best['name']} scored higher on {primary_metric} in the same run"
    for c in candidates:
        if c is not best:
            client.set_model_version_tag(model_name, versions[c["name"]], "promotion.decision", "not-selected")
            client.set_model_version_tag(model_name, versions[c["name"]], "promotion.reason", not_selected)
    for c in candidates:  # every version carries its card: description and run artifact
        card = model_card(model_name, versions[c["name"]], c, decision if c is best else None,
                          version_tags[c["name"]], params, serving, not_selected=not_selected)
        client.update_model_version(model_name, versions[c["name"]], description=card)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "model_card.md").write_text(card)
            client.log_artifact(run_ids[c["name"]], str(Path(tmp) / "model_card.md"))
    return StageReport(stage="register", n_in=len(candidates), n_out=len(versions),
                       details={"tracking_uri": uri, "model_name": model_name, "versions": versions,
                                "run_ids": run_ids, "candidate": best["name"], "scores": scores,
                                "champion": best["name"] if decision.promote else None,
                                "previous_champion": champ_version, "decision": decision.as_dict(),
                                "primary_metric": primary_metric,
                                "data_versions": {c: t.get("data_version") for c, t in version_tags.items()}})


def set_aliases(client, model_name: str, version: str, promote: bool) -> None:
    """``champion``: the version serving traffic, moved only by a promotion (a first version, or a significant
    paired win over the current champion).  ``challenger``: the latest candidate that was compared with the
    current champion and did not beat it; a new champion clears it, since it was never compared with that one."""
    if promote:
        client.set_registered_model_alias(model_name, "champion", version)
        if "challenger" in client.get_registered_model(model_name).aliases:
            client.delete_registered_model_alias(model_name, "challenger")
    else:
        client.set_registered_model_alias(model_name, "challenger", version)


def history(uri: str, model_name: str) -> list[dict[str, Any]]:
    """Every version with its variant, aliases and promotion tags, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    aliases: dict[str, list[str]] = {}
    for alias, v in client.get_registered_model(model_name).aliases.items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        t = mv.tags
        rows.append({"version": int(mv.version), "variant": t.get("variant"), "aliases": aliases.get(str(mv.version), []),
                     "decision": t.get("promotion.decision"), "reason": t.get("promotion.reason"),
                     "against": t.get("promotion.against"), "p_value": t.get("promotion.p_value"),
                     "at": t.get("promotion.at"), "git_commit": t.get("git_commit"),
                     "round": t.get("lema.round"), "parent": t.get("lema.parent_version"),
                     "accuracy": {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("accuracy.")}})
    return sorted(rows, key=lambda r: r["version"])


def download_champion(uri: str, model_name: str, dst: str | Path) -> dict[str, Any]:
    """The version behind ``models:/<name>@champion`` as one local Hugging Face directory (the pyfunc's
    ``hf_model`` artifact; versions logged with the transformers flavour: ``model/`` plus ``components/``),
    for the next round to sample with.

    The alias is resolved once and that exact version is downloaded, so a promotion in between cannot mix two."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    with using_tracking_uri(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            mv = client.get_model_version_by_alias(model_name, "champion")
        except mlflow.exceptions.MlflowException as e:
            raise ValueError(f"models:/{model_name}@champion does not exist in {uri}: the previous round promoted "
                             "no champion, so there is no generator for this round") from e
        dst = Path(dst)
        if dst.exists():
            shutil.rmtree(dst)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{mv.version}",
                                                             dst_path=tmp))
            artifacts = mlflow.models.Model.load(str(local / "MLmodel")).flavors.get("python_function", {}).get(
                "artifacts", {})
            if "hf_model" in artifacts:
                shutil.copytree(local / artifacts["hf_model"]["path"], dst)
            else:
                shutil.copytree(local / "model", dst)
                for comp in sorted((local / "components").glob("*")) if (local / "components").is_dir() else []:
                    shutil.copytree(comp, dst, dirs_exist_ok=True)
    if not (dst / "config.json").exists():
        raise ValueError(f"models:/{model_name}/{mv.version} has no Hugging Face model")
    return {"model_uri": f"models:/{model_name}@champion", "version": str(mv.version), "run_id": mv.run_id,
            "variant": mv.tags.get("variant"), "champion_round": mv.tags.get("lema.round")}


def log_report(registry: dict, report_dir: str | Path) -> None:
    """Attach the run report (Markdown + plots) to every registered variant's MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry["tracking_uri"])
    for run_id in registry.get("run_ids", {}).values():
        client.log_artifacts(run_id, str(report_dir), artifact_path="report")
