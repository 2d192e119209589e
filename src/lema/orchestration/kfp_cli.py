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
              cache_root: str | Path | None = None, runner: str = "subprocess"):
    """Run the whole pipeline here with kfp.local: `subprocess` (tasks inherit this environment:
    MLFLOW_TRACKING_URI, OPENAI_API_KEY) or `docker` (every task in the image the pipeline names, see
    lema.orchestration.containers; the data dir is the image's).  The corrector cache defaults to
    <pipeline_root>/cache."""
    from kfp import local

    from lema.orchestration import containers
    from lema.orchestration.kfp import CPU_IMAGE, build_pipeline

    root = Path(pipeline_root).resolve()
    text = resolved_config_text(config_path, containers.IMAGE_DATA_DIR if runner == "docker" else data_dir)
    cache = Path(cache_root or root / "cache").resolve()
    pipeline = build_pipeline(text, num_shards=num_shards, cache_root=str(cache))
    # Tasks get the tracking URI from the environment (a cluster: the lema-pipeline config map); without one, a
    # registry under the pipeline root that outlives the tasks, so the report can log to the registered run.
    had = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = had or f"sqlite:///{root / 'mlflow.db'}"
    try:
        if runner == "docker":
            containers.require_image(CPU_IMAGE)
            cache.mkdir(parents=True, exist_ok=True)
            local.init(runner=containers.docker_runner(root), pipeline_root=str(root), raise_on_error=True)
        else:
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
        return pipeline()
    finally:
        if had is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def submit(host: str, package: str | Path, params: dict | None = None, experiment: str = "lema"):
    """Submit a compiled pipeline to a Kubeflow Pipelines endpoint."""
    import kfp

    client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(str(package), arguments=params or {}, experiment_name=experiment)
