"""``lema pipeline compile | run --local | submit``: the Kubeflow side of the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pipeline_module():
    """pipelines/ and components/ live at the repo root (they are deployment code, not library)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pipelines import lema_pipeline

    return lema_pipeline


def resolved_config_text(config_path: str | Path, data_dir: str | None = None) -> str:
    """The config with its recipe resolved, as one JSON line: what the components receive."""
    import json

    from .config import load_config

    data = load_config(config_path).model_dump(mode="json", by_alias=True)
    data["train"].pop("recipe", None)
    if data_dir:
        data["data"]["dir"] = str(Path(data_dir).resolve())
    return json.dumps(data, sort_keys=True)


def compile_pipeline(config_path: str | Path, out: str | Path, num_shards: int = 2, gpu: bool = False) -> Path:
    from kfp import compiler

    mod = _pipeline_module()
    pipeline = mod.build_pipeline(resolved_config_text(config_path), num_shards=num_shards, gpu=gpu)
    compiler.Compiler().compile(pipeline, str(out))
    return Path(out)


def run_local(config_path: str | Path, pipeline_root: str | Path, num_shards: int = 1, data_dir: str | None = None):
    """Run the whole pipeline here with kfp.local's SubprocessRunner (lightweight components)."""
    from kfp import local

    text = resolved_config_text(config_path, data_dir)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    pipeline = _pipeline_module().build_pipeline(text, num_shards=num_shards)
    return pipeline()


def submit(host: str, package: str | Path, params: dict | None = None, experiment: str = "lema"):
    """Submit a compiled pipeline to a Kubeflow Pipelines endpoint."""
    import kfp

    client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(str(package), arguments=params or {}, experiment_name=experiment)
