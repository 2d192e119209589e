"""The production services as containers (infra/compose): PostgreSQL, the S3 stand-in, MLflow and vLLM from the
images built here.  The tiny pipeline runs in containers against it and registers into PostgreSQL + S3 (through
the MLflow server); `lema registry history` reads it back; `dvc push` / `dvc pull` round-trip a tiny run's
outputs through the S3 stand-in; a generator with `backend: openai` collects through the vLLM server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from lema.config import load_config

from .conftest import ROOT, lema_env
from .test_dvc_kfp import _dvc
from .test_generate import _free_port

pytestmark = [pytest.mark.slow, pytest.mark.container]
COMPOSE = ROOT / "infra" / "compose" / "docker-compose.yaml"


def _compose(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args], env=env, capture_output=True, text=True)
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


SERVICES = ("postgres", "s3", "mlflow", "vllm")


@contextlib.contextmanager
def _stack(tmp_path_factory, cpu_image: str, services=SERVICES):
    """The compose stack (or some of its services) under a project name of its own, on free loopback ports, with
    an env file made from example.env; torn down (volumes included) afterwards."""
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
    _compose(env, "up", "-d", *services)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            ids = _compose(env, "ps", "-q").stdout.split()
            health = [subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", i],
                                     capture_output=True, text=True).stdout.strip() for i in ids]
            if len(ids) == len(services) and all(h == "healthy" for h in health):
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


@pytest.fixture(scope="module")
def stack(cpu_image, tmp_path_factory):
    """The whole compose stack."""
    with _stack(tmp_path_factory, cpu_image) as s:
        yield s


@pytest.fixture(scope="module")
def s3_stack(cpu_image, tmp_path_factory):
    """The stack without vLLM: S3 and the MLflow service that creates its buckets (the DVC remote needs no more)."""
    with _stack(tmp_path_factory, cpu_image, ("postgres", "s3", "mlflow")) as s:
        yield s


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
    # a host client (no S3 keys, no S3 endpoint) downloads the champion through the server's artifact proxy
    champion, name = tmp_path / "champion", load_config(ROOT / "configs" / "tiny.yaml").register_.model_name
    env = {k: v for k, v in lema_env(ROOT).items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    got = subprocess.run([os.sys.executable, "-c", "import sys; from lema.registry.store import download_champion; "
                          "print(download_champion(*sys.argv[1:]))", stack["mlflow"], name, str(champion)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0 and (champion / "config.json").is_file(), got.stderr[-3000:]


def test_dvc_push_and_pull_round_trip_through_the_s3_remote(s3_stack, clone_run, tmp_path, monkeypatch):
    """README's commands on a copy of the tiny run: the stack's S3 as the default remote in .dvc/config.local
    (git-ignored), the keys from the env file's AWS variables; push, drop the outputs and the cache, pull: every
    cached output comes back byte for byte."""
    import boto3
    from dvc.repo import Repo

    repo = tmp_path / "lema"
    shutil.copytree(clone_run[0], repo, symlinks=True)
    s, prefix = s3_stack["secrets"], f"lema-{uuid.uuid4().hex[:8]}"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, s[key])  # set -a; . infra/compose/.env
    _dvc(repo, "remote", "add", "--local", "-d", "stack", f"s3://lema-dvc/{prefix}")
    _dvc(repo, "remote", "modify", "--local", "stack", "endpointurl", s3_stack["s3"])
    assert subprocess.run(["git", "status", "--porcelain", ".dvc"], cwd=repo, capture_output=True,
                          text=True).stdout == "", "the stack's remote must stay out of git"
    with Repo(str(repo)) as r:
        outs = [Path(o.fs_path) for o in r.index.outs if o.use_cache]
    files = [f for o in outs for f in ([o] if o.is_file() else sorted(o.rglob("*"))) if f.is_file()]
    assert any("train" in str(f) and f.name == "model.safetensors" for f in files), files
    before = {f: f.read_bytes() for f in files}

    assert "pushed" in _dvc(repo, "push")
    assert "in sync" in _dvc(repo, "status", "--cloud")
    s3 = boto3.client("s3", endpoint_url=s3_stack["s3"], aws_access_key_id=s["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=s["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    assert s3.list_objects_v2(Bucket="lema-dvc", Prefix=prefix + "/files/md5/").get("KeyCount", 0) > 0
    for o in outs:
        shutil.rmtree(o) if o.is_dir() else o.unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    _dvc(repo, "pull")
    assert [str(f) for f in files if not f.is_file() or f.read_bytes() != before[f]] == []
    # after `dvc pull` a dry run finds nothing to do
    assert "Running stage" not in _dvc(repo, "repro", "--dry")


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
