"""`lema register` end to end against a real `mlflow server` backed by a real PostgreSQL on loopback."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lema.registry.store import register_models

from .conftest import free_port, wait_for_http

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    # not under pytest's tmp dir: that is private to root, and the server runs as `postgres`
    base = Path(tempfile.mkdtemp(prefix="lema-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "lema", "--auth=trust"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                 f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lema",
                                 "mlflow"]), check=True, capture_output=True)
    yield f"postgresql://lema@127.0.0.1:{port}/mlflow"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    port = free_port()
    artifacts = tmp_path_factory.mktemp("mlartifacts")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
                             "--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(proc, f"{url}/health", "mlflow server")
    yield url
    proc.terminate()
    proc.wait(30)


def _rows(path: Path, correct: list[bool]) -> Path:
    import json

    path.write_text("".join(json.dumps({"id": f"q{i}", "eval_set": "gsm8k/test", "correct": c}) + "\n"
                            for i, c in enumerate(correct)))
    return path


def _cand(name, model, rows, tmp_path):
    n, k = len(rows), sum(rows)
    return {"name": name, "model_dir": model, "rows": _rows(tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.jsonl", rows),
            "metrics": {"gsm8k/test": {"n": n, "correct": k, "accuracy": k / n}}}


def test_register_and_promote_against_postgres_backed_server(mlflow_server, tiny_model, monkeypatch, postgres,
                                                             tmp_path):
    import mlflow
    from lema.registry.store import history
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    kw = dict(uri=mlflow_server, experiment="lema-test", model_name="lema-test-model", primary_metric="gsm8k/test",
              params={"train": {"epochs": 1}, "api_key": "sk-secret"}, run_artifacts=[],
              stage_metrics={"funnel.validated": 5}, tags={"git_commit": "abc123", "data_version": "d1"})
    # round 1: no champion yet -> the run's better variant (lema) becomes champion
    cot = _cand("cot", tiny_model, [True] * 20 + [False] * 80, tmp_path)
    lema = _cand("lema", tiny_model, [True] * 40 + [False] * 60, tmp_path)
    lema["loss_history"] = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    rep = register_models([cot, lema], **kw)
    client = MlflowClient(tracking_uri=mlflow_server)
    champ = client.get_model_version_by_alias("lema-test-model", "champion")
    assert champ.tags["variant"] == "lema" == rep.details["champion"]
    assert champ.tags["promotion.reason"] == "no current champion" and champ.tags["git_commit"] == "abc123"
    assert "first version" in champ.description and "McNemar" not in champ.description  # the model card
    run = client.get_run(champ.run_id)
    assert run.data.metrics["gsm8k_test.accuracy"] == 0.4 and "api_key" not in run.data.params
    assert [m.value for m in client.get_metric_history(champ.run_id, "train_loss")] == [2.0, 1.5]
    # round 2: +2 points on the same questions is not significant -> challenger, champion unchanged
    better = [True] * 42 + [False] * 58
    rep2 = register_models([_cand("cot", tiny_model, [False] * 100, tmp_path),
                            _cand("lema", tiny_model, better, tmp_path)], **kw)
    d = rep2.details["decision"]
    assert not d["promote"] and "not significant" in d["reason"] and d["wins"] == 2 and d["losses"] == 0
    assert client.get_model_version_by_alias("lema-test-model", "champion").version == champ.version
    chall = client.get_model_version_by_alias("lema-test-model", "challenger")
    assert chall.tags["promotion.against"] == f"v{champ.version}"
    # round 3: a clearly better model on the same questions takes over
    rep3 = register_models([_cand("cot", tiny_model, [False] * 100, tmp_path),
                            _cand("lema", tiny_model, [True] * 70 + [False] * 30, tmp_path)], **kw)
    assert rep3.details["decision"]["promote"] and rep3.details["decision"]["p_value"] < 1e-6
    new = client.get_model_version_by_alias("lema-test-model", "champion")
    assert int(new.version) > int(champ.version)
    # the old challenger lost to the old champion, never to this one: a promotion clears the alias
    assert "challenger" not in client.get_registered_model("lema-test-model").aliases
    for mv in client.search_model_versions("name = 'lema-test-model'"):  # a model card on every version
        assert mv.description.startswith(f"# lema-test-model v{mv.version} ({mv.tags['variant']})")
    hist = history(mlflow_server, "lema-test-model")
    assert [h["decision"] for h in hist] == ["not-selected", "champion", "not-selected", "challenger",
                                             "not-selected", "champion"]
    # the model round-trips through the server's artifact proxy
    local = mlflow.artifacts.download_artifacts("models:/lema-test-model@champion", tracking_uri=mlflow_server)
    assert any(Path(local).rglob("config.json"))
    # and the metadata really lives in PostgreSQL
    import sqlalchemy

    with sqlalchemy.create_engine(postgres).connect() as conn:
        names = {r[0] for r in conn.execute(sqlalchemy.text("select name from registered_models"))}
    assert "lema-test-model" in names
