"""The same stages under DVC and under Kubeflow (kfp.local), on the tiny config."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DATA, ROOT

pytestmark = pytest.mark.slow


def _dvc(repo: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("dvcrepo")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    from lema.config import load_config

    # every section DVC tracks must be in params.yaml: write the fully resolved tiny config
    cfg = load_config(ROOT / "configs" / "tiny.yaml").model_dump(mode="json", by_alias=True)
    cfg["data"]["dir"] = "data"
    (repo / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copytree(DATA, repo / "data")
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "recipes", repo / "recipes")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    _dvc(repo, "remote", "add", "-d", "local", str(repo.parent / "dvc-remote"))
    return repo


def test_dvc_repro_is_idempotent_and_incremental(dvc_repo):
    first = _dvc(dvc_repo, "repro")
    assert "Running stage 'base-model'" in first and "Running stage 'report'" in first
    again = _dvc(dvc_repo, "repro")
    assert "Running stage" not in again
    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["evaluate"]["max_tokens"] = 4
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = _dvc(dvc_repo, "repro")
    ran = {line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage")}
    assert ran == {"evaluate@cot", "evaluate@lema", "register", "report"}
    metrics = json.loads(_dvc(dvc_repo, "metrics", "show", "--json"))
    flat = json.dumps(metrics)
    assert "accuracy" in flat and "pass_rate" in flat
    plots = _dvc(dvc_repo, "plots", "show", "--json")
    assert "funnel.json" in plots and "accuracy.json" in plots
    _dvc(dvc_repo, "push")  # the local remote takes the data


def test_local_kfp_run_matches_cli_run(tmp_path):
    from lema.config import load_config
    from lema.kfp_cli import run_local
    from lema.pipeline import paths, run_all

    cfg_file = tmp_path / "tiny.yaml"
    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["data"]["dir"] = str(DATA)
    cfg["run_dir"] = str(tmp_path / "cli")
    cfg_file.write_text(yaml.safe_dump(cfg))
    run_all(load_config(cfg_file))
    cli = {v: json.loads((paths(load_config(cfg_file)).eval(v) / "metrics.json").read_text()) for v in ("cot", "lema")}

    root = tmp_path / "kfp"
    run_local(cfg_file, root, num_shards=1)
    found = {}
    for f in root.rglob("metrics.json"):
        rows = (f.parent / "rows.jsonl").read_text().splitlines()
        found[json.loads(rows[0])["model"]] = json.loads(f.read_text())
    assert found == cli
