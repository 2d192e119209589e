"""`lema register` end to end against a real `mlflow server` backed by a real PostgreSQL on loopback."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lema.register import register_models

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    base = tmp_path_factory.mktemp("pg")
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = _port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "lema", "--auth=trust"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                 f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lema",
                                 "mlflow"]), check=True, capture_output=True)
    yield f"postgresql://lema@127.0.0.1:{port}/mlflow"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    port = _port()
    artifacts = tmp_path_factory.mktemp("mlartifacts")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
                             "--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            pytest.fail(proc.stderr.read()[-3000:])
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    proc.terminate()
    proc.wait(30)


def test_register_against_postgres_backed_server(mlflow_server, tiny_model, monkeypatch, postgres):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    candidates = [
        {"name": "cot", "model_dir": tiny_model, "metrics": {"gsm8k/test": {"n": 10, "correct": 2, "accuracy": 0.2}}},
        {"name": "lema", "model_dir": tiny_model, "metrics": {"gsm8k/test": {"n": 10, "correct": 4, "accuracy": 0.4}},
         "loss_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]},
    ]
    rep = register_models(candidates, uri=mlflow_server, experiment="lema-test", model_name="lema-test-model",
                          primary_metric="gsm8k/test", params={"train": {"epochs": 1}, "api_key": "sk-secret"},
                          run_artifacts=[], stage_metrics={"funnel.validated": 5})
    client = MlflowClient(tracking_uri=mlflow_server)
    champ = client.get_model_version_by_alias("lema-test-model", "champion")
    chall = client.get_model_version_by_alias("lema-test-model", "challenger")
    assert champ.tags["variant"] == "lema" == rep.details["champion"] and chall.tags["variant"] == "cot"
    assert champ.tags["accuracy.gsm8k/test"] == "0.4000"
    run = client.get_run(champ.run_id)
    assert run.data.metrics["gsm8k_test.accuracy"] == 0.4 and "api_key" not in run.data.params
    assert [m.value for m in client.get_metric_history(champ.run_id, "train_loss")] == [2.0, 1.5]
    # the model round-trips through the server's artifact proxy
    local = mlflow.artifacts.download_artifacts(f"models:/lema-test-model@champion", tracking_uri=mlflow_server)
    assert any(Path(local).rglob("config.json"))
    # and the metadata really lives in PostgreSQL
    import sqlalchemy

    with sqlalchemy.create_engine(postgres).connect() as conn:
        names = {r[0] for r in conn.execute(sqlalchemy.text("select name from registered_models"))}
    assert "lema-test-model" in names
