"""``lema pipeline compile | run --local | submit``: the Kubeflow side of the CLI (``lema.orchestration.kfp``).

Every action compiles from the config it is given (file + ``--set``): what runs is what you asked for."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from lema.config import Config

TOKEN_ENV = "KF_PIPELINES_TOKEN"  # bearer token of a multi-user Kubeflow (never an argument, never logged)


def load(config_path: str | Path | None, overrides: dict[str, Any] | None = None,
         data_dir: str | None = None) -> Config:
    """The resolved config the pipeline is compiled from; `data_dir`: the bundled data as the tasks see it
    (kfp.local: an absolute path here; a cluster: relative, resolved in the image)."""
    from lema.config import load_config

    cfg = load_config(config_path, overrides)
    if data_dir:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"dir": str(Path(data_dir).resolve())})})
    return cfg


def resolved_config_text(config_path: str | Path, data_dir: str | None = None,
                         overrides: dict[str, Any] | None = None) -> str:
    """The whole resolved config as one JSON line (``lema.config.serialize``): what register receives."""
    from lema.config.serialize import resolved, to_text

    return to_text(resolved(load(config_path, overrides, data_dir)))


def compile_pipeline(config_path: str | Path | None, out: str | Path, num_shards: int = 2, gpu: bool = False,
                     cache_root: str | None = None, overrides: dict[str, Any] | None = None) -> Path:
    _compile(load(config_path, overrides), out, num_shards, gpu, cache_root)
    return Path(out)


def _compile(cfg: Config, out: str | Path, num_shards: int, gpu: bool, cache_root: str | None) -> set[str]:
    """Write the pipeline package to `out`; returns the run parameters it declares."""
    from kfp import compiler

    from lema.orchestration.kfp import build_pipeline

    pipeline = build_pipeline(cfg, num_shards=num_shards, gpu=gpu, cache_root=cache_root)
    compiler.Compiler().compile(pipeline, str(out))
    return set(pipeline.component_spec.inputs or {})


def run_local(config_path: str | Path | None, pipeline_root: str | Path, num_shards: int = 2,
              data_dir: str | None = None, cache_root: str | Path | None = None,
              overrides: dict[str, Any] | None = None, runner: str = "subprocess"):
    """Run the whole pipeline here with kfp.local: `subprocess` (tasks inherit this environment:
    MLFLOW_TRACKING_URI, OPENAI_API_KEY) or `docker` (every task in the image the pipeline names, see
    lema.orchestration.containers; the data dir is the image's).  The corrector cache defaults to
    <pipeline_root>/cache; without a tracking URI, the registry and its artifacts live under the pipeline root
    too (not ./mlruns)."""
    from kfp import local

    from lema.orchestration import containers
    from lema.orchestration.kfp import CPU_IMAGE, build_pipeline
    from lema.registry.store import create_experiment_beside_store

    cfg = load(config_path, overrides, containers.IMAGE_DATA_DIR if runner == "docker" else data_dir)
    root = Path(pipeline_root).resolve()
    cache = Path(cache_root or root / "cache").resolve()
    pipeline = build_pipeline(cfg, num_shards=num_shards, cache_root=str(cache))
    had = os.environ.get("MLFLOW_TRACKING_URI")
    if had is None:
        # a registry that outlives the tasks, so the report can log to the registered run
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        create_experiment_beside_store(os.environ["MLFLOW_TRACKING_URI"], cfg.register_.experiment)
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


def submit(host: str, config_path: str | Path | None, overrides: dict[str, Any] | None = None,
           params: dict[str, Any] | None = None, run_name: str | None = None, experiment: str | None = None,
           namespace: str | None = None, num_shards: int = 2, gpu: bool = False, cache_root: str | None = None,
           package: str | Path | None = None):
    """Compile the pipeline from this config and start a run on a Kubeflow Pipelines endpoint.

    The bearer token of a multi-user deployment comes from $KF_PIPELINES_TOKEN only (sent as the Authorization
    header by kfp.Client; never printed).  `params`: pipeline parameters (min_accuracy, corrector_cache).
    `namespace`: where the run's pods start (default: ``kubeflow.namespace``, where infra/ puts the config map,
    secret and cache volume the tasks use).  `package`: where to keep the compiled YAML (default: a temp file)."""
    import kfp

    cfg = load(config_path, overrides)
    with tempfile.TemporaryDirectory(prefix="lema-submit-") as tmp:
        out = Path(package) if package else Path(tmp) / "lema_pipeline.yaml"
        declared = _compile(cfg, out, num_shards, gpu, cache_root)  # the config loaded once, above
        unknown = set(params or {}) - declared
        if unknown:  # before anything reaches the server
            raise ValueError(f"--param {', '.join(sorted(unknown))}: not a parameter of the pipeline "
                             f"(it has {', '.join(sorted(declared))})")
        namespace = namespace or cfg.kubeflow.namespace
        client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(TOKEN_ENV) or None)
        return client.create_run_from_pipeline_package(
            str(out), arguments=params or {}, run_name=run_name or f"lema-{Path(cfg.run_dir).name}",
            experiment_name=experiment or cfg.register_.experiment, namespace=namespace)
