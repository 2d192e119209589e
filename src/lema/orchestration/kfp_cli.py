"""``lema pipeline compile | run --local | submit``: the Kubeflow side of the CLI (``lema.orchestration.kfp``)."""

from __future__ import annotations

import os
from pathlib import Path


def resolved_config_text(config_path: str | Path, data_dir: str | None = None) -> str:
    """The config with its recipe resolved, as one JSON line: what the components receive."""
    import json

    from lema.config import load_config

    data = load_config(config_path).model_dump(mode="json", by_alias=True)
    data["train"].pop("recipe", None)
    if data["rounds"] == 1:  # the default: left out, so the compiled default pipeline does not change
        data.pop("rounds")
    if data_dir:
        data["data"]["dir"] = str(Path(data_dir).resolve())
    return json.dumps(data, sort_keys=True)


def compile_pipeline(config_path: str | Path, out: str | Path, num_shards: int = 2, gpu: bool = False,
                     cache_root: str = "") -> Path:
    from kfp import compiler

    from lema.orchestration.kfp import build_pipeline

    pipeline = build_pipeline(resolved_config_text(config_path), num_shards=num_shards, gpu=gpu,
                              cache_root=cache_root)
    compiler.Compiler().compile(pipeline, str(out))
    return Path(out)


def run_local(config_path: str | Path, pipeline_root: str | Path, num_shards: int = 2, data_dir: str | None = None,
              cache_root: str | Path | None = None):
    """Run the whole pipeline here with kfp.local's SubprocessRunner; tasks inherit this environment
    (MLFLOW_TRACKING_URI, OPENAI_API_KEY).  The corrector cache defaults to <pipeline_root>/cache."""
    from kfp import local

    from lema.orchestration.kfp import build_pipeline

    text = resolved_config_text(config_path, data_dir)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    cache = Path(cache_root or Path(pipeline_root) / "cache").resolve()
    pipeline = build_pipeline(text, num_shards=num_shards, cache_root=str(cache))
    # Tasks get the tracking URI from the environment (a cluster: the lema-pipeline config map); without one, a
    # registry under the pipeline root that outlives the tasks, so the report can log to the registered run.
    default_uri = f"sqlite:///{Path(pipeline_root).resolve() / 'mlflow.db'}"
    had = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = had or default_uri
    try:
        return pipeline()
    finally:
        if had is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def submit(host: str, package: str | Path, params: dict | None = None, experiment: str = "lema"):
    """Submit a compiled pipeline to a Kubeflow Pipelines endpoint."""
    import kfp

    client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(str(package), arguments=params or {}, experiment_name=experiment)
