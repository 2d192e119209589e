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


def compile_pipeline(config_path: str | Path, out: str | Path, num_shards: int = 2, gpu: bool = False) -> Path:
    from kfp import compiler

    mod = _pipeline_module()
    pipeline = mod.build_pipeline(Path(config_path).read_text(), num_shards=num_shards, gpu=gpu)
    compiler.Compiler().compile(pipeline, str(out))
    return Path(out)


def run_local(config_path: str | Path, pipeline_root: str | Path, num_shards: int = 1, data_dir: str | None = None):
    """Run the whole pipeline here with kfp.local's SubprocessRunner (lightweight components)."""
    import yaml
    from kfp import local

    text = Path(config_path).read_text()
    if data_dir:
        cfg = yaml.safe_load(text)
        cfg.setdefault("data", {})["dir"] = str(Path(data_dir).resolve())
        text = yaml.safe_dump(cfg)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    pipeline = _pipeline_module().build_pipeline(text, num_shards=num_shards)
    return pipeline()


def submit(host: str, package: str | Path, params: dict | None = None, experiment: str = "lema"):
    """Submit a compiled pipeline to a Kubeflow Pipelines endpoint."""
    import kfp

    client = kfp.Client(host=host)
    return client.create_run_from_pipeline_package(str(package), arguments=params or {}, experiment_name=experiment)
