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
    from lema.base_model import build_base_model

    out = tmp_path_factory.mktemp("tiny-model")
    cfg = tiny_config.base_model.model_copy(update={"pretrain_steps": 100})
    build_base_model(cfg, out, data_dir=str(DATA), seed=0, limit=400)
    return out
