"""The production services as containers (infra/compose): PostgreSQL, the S3 stand-in, MLflow and vLLM from the
images built here.  The tiny pipeline runs in containers against it and registers into PostgreSQL + S3 (through
the MLflow server); `lema registry history` reads it back; a generator with `backend: openai` collects through
the vLLM server."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, lema_env
from .test_generate import _free_port

pytestmark = pytest.mark.slow
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yaml"


def _compose(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args], env=env, capture_output=True, text=True)
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def stack(cpu_image, tmp_path_factory):
    """The compose stack under a project name of its own, on free loopback ports, with an env file made from
    example.env; torn down (volumes included) afterwards."""
    from lema.orchestration.images import tag

    for name in ("lema-s3", "lema-postgres"):
        if subprocess.run(["docker", "image", "inspect", tag(name)], capture_output=True).returncode != 0:
            out = subprocess.run([str(ROOT / "images" / "build.sh"), name], capture_output=True, text=True)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    envfile = tmp_path_factory.mktemp("compose") / "stack.env"
    envfile.write_text((ROOT / "infra" / "compose" / "example.env").read_text().replace(
        "change-me-postgres", uuid.uuid4().hex))
    ports = {k: _free_port() for k in ("S3", "MLFLOW", "VLLM")}
    env = dict(os.environ, COMPOSE_PROJECT_NAME=f"lematest{uuid.uuid4().hex[:8]}", LEMA_ENV_FILE=str(envfile),
               LEMA_CPU_IMAGE=cpu_image, LEMA_S3_IMAGE=tag("lema-s3"), LEMA_POSTGRES_IMAGE=tag("lema-postgres"),
               **{f"LEMA_{k}_PORT": str(v) for k, v in ports.items()})
    _compose(env, "up", "-d")
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            ids = _compose(env, "ps", "-q").stdout.split()
            health = [subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", i],
                                     capture_output=True, text=True).stdout.strip() for i in ids]
            if len(ids) == 4 and all(h == "healthy" for h in health):
                break
            assert "unhealthy" not in health, _compose(env, "logs", "--tail", "50").stdout[-4000:]
            time.sleep(5)
        else:
            pytest.fail("compose stack not healthy in 600 s: " + _compose(env, "logs", "--tail", "50").stdout[-4000:])
        secrets = dict(line.split("=", 1) for line in envfile.read_text().splitlines() if "=" in line
                       and not line.startswith("#"))
        yield {"env": env, "secrets": secrets, "mlflow": f"http://127.0.0.1:{ports['MLFLOW']}",
               "s3": f"http://127.0.0.1:{ports['S3']}", "vllm": f"http://127.0.0.1:{ports['VLLM']}/v1"}
    finally:
        _compose(env, "down", "-v", "--remove-orphans", check=False)


def test_docker_pipeline_registers_into_postgres_and_s3_through_the_mlflow_server(stack, tmp_path, monkeypatch):
    import boto3

    from lema.orchestration.kfp_cli import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack["mlflow"])
    run_local(ROOT / "configs" / "tiny.yaml", tmp_path / "kfp", num_shards=1, runner="docker")
    out = subprocess.run(["lema", "registry", "history", "--json", "--config", str(ROOT / "configs" / "tiny.yaml")],
                         env=dict(lema_env(ROOT), MLFLOW_TRACKING_URI=stack["mlflow"]), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    versions = json.loads(out.stdout)
    assert versions, out.stdout
    s = stack["secrets"]
    rows = _compose(stack["env"], "exec", "-T", "postgres", "psql", "-U", s["POSTGRES_USER"], "-d",
                    s["POSTGRES_DB"], "-tAc", "select count(*) from model_versions").stdout.strip()
    assert int(rows) == len(versions)
    s3 = boto3.client("s3", endpoint_url=stack["s3"], aws_access_key_id=s["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lema-mlflow").get("Contents", [])]
    assert any(k.endswith("model.safetensors") for k in keys), keys[:20]


def test_openai_generator_collects_through_the_vllm_server(stack, tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["generators"] = [{"name": "served", "model": "corrector", "backend": "openai", "base_url": stack["vllm"],
                          "n": 2, "max_tokens": 32}]
    cfg["run_dir"] = str(tmp_path / "run")
    cfg.setdefault("data", {})["dir"] = str(ROOT / "data")
    path = tmp_path / "served.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(lema_env(ROOT), OPENAI_API_KEY=stack["secrets"]["VLLM_API_KEY"])
    out = subprocess.run(["lema", "collect", "--config", str(path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = [json.loads(x) for x in (Path(cfg["run_dir"]) / "collect" / "paths.jsonl").read_text().splitlines()]
    assert rows and {r["generator"] for r in rows} == {"served"}
