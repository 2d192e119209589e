"""Shared fixtures: the bundled data, and one tiny real model built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
FIXTURES = Path(__file__).parent / "fixtures"

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


@pytest.fixture(scope="session")
def tiny_config():
    from lema.config import load_config

    return load_config(ROOT / "configs" / "tiny.yaml", {"data.dir": str(DATA)})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_config) -> Path:
    """A real Llama + BPE tokenizer, pretrained for a few seconds (HF format)."""
    from lema.stages.base_model.build import build_base_model

    out = tmp_path_factory.mktemp("tiny-model")
    cfg = tiny_config.base_model.model_copy(update={"pretrain_steps": 100})
    build_base_model(cfg, out, data_dir=str(DATA), seed=0, limit=400)
    return out


def lema_env(repo: Path) -> dict:
    """Environment for subprocesses that run `lema`/`dvc` on `repo`'s own source."""
    import sys

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
               PYTHONPATH=str(repo / "src"))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture(scope="session")
def clone_run(tmp_path_factory):
    """A fresh `git clone` of this repo (committed state), params.yaml set to the tiny config, then `dvc repro`:
    one real end-to-end run shared by the pipeline, DVC and Kubeflow tests.  Returns (repo, config, snapshot)
    where snapshot holds the artifacts other tests compare against, read before any test changes the run."""
    import json
    import subprocess

    import yaml

    from lema.config import load_config

    repo = tmp_path_factory.mktemp("clone") / "lema"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    tiny = load_config(repo / "configs" / "tiny.yaml").model_dump(mode="json", by_alias=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    out = subprocess.run([os.sys.executable, "-m", "dvc", "repro"], cwd=repo, env=lema_env(repo),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    cfg = load_config(repo / "params.yaml")
    run = repo / cfg.run_dir
    snapshot = {"repro_stdout": out.stdout,
                "files": {f: (run / f).read_text() for f in ("collect/paths.jsonl", "correct/corrections.jsonl",
                                                             "sft/cot.jsonl", "sft/lema.jsonl")},
                "metrics": {v: json.loads((run / "eval" / v / "metrics.json").read_text()) for v in ("cot", "lema")}}
    return repo, cfg, snapshot


def changed_value(value, key: str = ""):
    """Another value for a config key, one the schema accepts (the first number inside a section or a list of
    sections changes): the config- and cache-sensitivity matrices change keys with it."""
    if key == "data.source":
        return "hub"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):  # halved: shares and probabilities stay in range
        return value / 2 if value else 0.5
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, list):
        if not value:
            return ["probe"]
        return [changed_value(value[0])] + value[1:] if isinstance(value[0], dict) else value + value[-1:]
    if isinstance(value, dict):
        numeric = [k for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        k = (numeric or list(value))[0]
        return {**value, k: changed_value(value[k])}
    return 1
