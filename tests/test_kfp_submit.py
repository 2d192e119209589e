"""`lema pipeline submit` against a loopback KFP API server: the real kfp.Client sends the pipeline compiled from
the given config and --set, the run parameters, name, experiment and namespace, and the bearer token from the
environment as a header only (never in the output)."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT
from .kfp_api_server import KFPServer

TOKEN = "kfp-token-DO-NOT-LEAK-7731"


@pytest.fixture
def kfp_server():
    server = KFPServer().start()
    yield server
    server.stop()


def _lema(tmp_path, *args, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES")}
    env |= {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}  # HOME: no kfp context file of this machine
    if token:
        env["KF_PIPELINES_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "lema", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_submit_sends_the_given_config_parameters_and_token(kfp_server, tmp_path):
    out = _lema(tmp_path, "pipeline", "submit", "--config", "configs/tiny.yaml", "--set", "train.epochs=3",
                "--host", kfp_server.url, "--run-name", "tiny-3-epochs", "--experiment", "lema-tests",
                "--namespace", "team-a", "--param", "min_accuracy=0.25", "--param", "corrector_cache=/mnt/c")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "submitted run run-1" in out.stdout
    assert TOKEN not in out.stdout + out.stderr

    reqs = kfp_server.requests
    assert reqs and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in reqs)
    experiment = next(r.json() for r in reqs if r.method == "POST" and r.path == "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "lema-tests" and experiment["namespace"] == "team-a"
    run = next(r.json() for r in reqs if r.method == "POST" and r.path == "/apis/v2beta1/runs")
    assert run["display_name"] == "tiny-3-epochs" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {"min_accuracy": 0.25, "corrector_cache": "/mnt/c"}
    # the pipeline is compiled from configs/tiny.yaml with --set applied: the tasks' config inputs say so
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert "lema-corrector-cache" in json.dumps(platform)  # the kfp-kubernetes settings travel too
    tasks = spec["root"]["dag"]["tasks"]
    train = json.loads(tasks["train"]["inputs"]["parameters"]["config"]["runtimeValue"]["constant"])
    assert train["train"]["epochs"] == 3 and train["seed"] == 7
    collect = json.loads(tasks["base-model"]["inputs"]["parameters"]["config"]["runtimeValue"]["constant"])
    assert collect["base_model"]["hidden_size"] == 64  # tiny.yaml's, not params.yaml's
    assert TOKEN not in json.dumps(run)


def test_submit_without_a_token_sends_no_authorization(kfp_server, tmp_path):
    out = _lema(tmp_path, "pipeline", "submit", "--config", "configs/tiny.yaml", "--host", kfp_server.url,
                token=None)
    assert out.returncode == 0, out.stderr[-3000:]
    assert kfp_server.requests and not any("authorization" in r.headers for r in kfp_server.requests)
    run = next(r.json() for r in kfp_server.requests if r.path == "/apis/v2beta1/runs")
    assert run["display_name"] == "lema-tiny"  # run_dir runs/tiny


def test_pipeline_run_and_compile_take_set(tmp_path):
    """--set reaches the config of `pipeline run` (a bad value stops it before anything runs) and `compile`."""
    bad = _lema(tmp_path, "pipeline", "run", "--local", "--config", "configs/tiny.yaml", "--set", "rounds=0",
                "--pipeline-root", str(tmp_path / "root"))
    assert bad.returncode != 0 and "rounds" in bad.stderr and not (tmp_path / "root").exists()
    out = tmp_path / "p.yaml"
    ok = _lema(tmp_path, "pipeline", "compile", "--config", "configs/tiny.yaml", "--set", "seed=99", "--out", str(out))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert '\\"seed\\": 99' in out.read_text() or '"seed": 99' in out.read_text()


def test_submit_rejects_an_unknown_parameter_before_contacting_the_server(kfp_server, tmp_path):
    out = _lema(tmp_path, "pipeline", "submit", "--config", "configs/tiny.yaml", "--host", kfp_server.url,
                "--param", "min_acuracy=0.25")
    assert out.returncode != 0
    assert "min_acuracy: not a parameter of the pipeline (it has corrector_cache, min_accuracy)" in out.stderr
    assert kfp_server.requests == []
