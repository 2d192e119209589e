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


def transformers_generation() -> list[str]:
    """`--set` flags that move the tiny config's sampling and evaluation from vLLM to transformers: for tests of
    run dirs and rounds, where vLLM engine start-ups would be most of the time (clone_run, test_generate and the
    compose tests run vLLM)."""
    import json

    import yaml

    gens = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())["generators"]
    return ["--set", "evaluate.backend=transformers",
            "--set", "generators=" + json.dumps([{**g, "backend": "transformers"} for g in gens])]


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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(proc, url: str, what: str, tries: int = 120) -> None:
    """Until `url` answers 200 (one try a second); fails with the server's stderr if `proc` exits first."""
    import time

    import httpx

    for _ in range(tries):
        if proc.poll() is not None:
            pytest.fail(proc.stderr.read()[-3000:])
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    pytest.fail(f"{what} did not start")


def docker_or_skip():
    """A reachable Docker daemon, else skip with the reason; with LEMA_REQUIRE_DOCKER=1 (CI) a missing daemon fails."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as e:  # no SDK, no socket, daemon down: all mean "no Docker here"
        if os.environ.get("LEMA_REQUIRE_DOCKER"):
            pytest.fail(f"LEMA_REQUIRE_DOCKER is set but no Docker daemon is reachable: {e}")
        pytest.skip(f"no Docker daemon reachable ({type(e).__name__}); set LEMA_REQUIRE_DOCKER=1 to make this fail")


@pytest.fixture(scope="session")
def cpu_image() -> str:
    """The lema-cpu image for this source tree, built once per session (`make images` already did it in CI:
    then this only finds it by its input-derived tag)."""
    import subprocess

    from lema.orchestration.images import CPU_IMAGE

    docker_or_skip()
    if subprocess.run(["docker", "image", "inspect", CPU_IMAGE], capture_output=True).returncode != 0:
        out = subprocess.run(["make", "-C", str(ROOT), "base-image"], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        out = subprocess.run([str(ROOT / "images" / "build.sh"), "lema-cpu"], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return CPU_IMAGE


def changed_value(value, key: str = ""):
    """Another value for a config key, one the schema accepts (the first number inside a section or a list of
    sections changes): the config- and cache-sensitivity matrices change keys with it."""
    if key == "data.source":
        return "hub"
    if key == "evaluate.backend":
        return "vllm" if value != "vllm" else "transformers"
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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` needs no Docker: a test that uses an image (the `cpu_image` fixture, directly or through a
    stack) must be marked `container`, so that `-m "not container"` leaves it out and `make test-containers`
    runs it.

    `make test` runs on two pytest-xdist workers (`--dist loadgroup`), and each worker builds its own
    session and module fixtures.  So the tests of the shared tiny run (`clone_run`) and every container test go to
    one worker, group "e2e" (one tiny run, one Docker workload at a time); tests that use a module-scoped fixture
    stay together per module; the rest are free.  Container tests come last (a stable sort), so that on CI
    Docker's workloads run once the other worker's tests are done rather than beside them.  Before them, slow
    work first: xdist hands out the groups largest first and then single tests in this order, so a slow test
    collected late (say in test_train.py) would otherwise start when the other worker is nearly done."""
    unit = {i.nodeid: xdist_group(i) or i.nodeid for i in items}  # what xdist hands out whole
    slow_units = {unit[i.nodeid] for i in items if i.get_closest_marker("slow")}
    items.sort(key=lambda i: (i.get_closest_marker("container") is not None, unit[i.nodeid] not in slow_units))
    unmarked = [i.nodeid for i in items if "cpu_image" in i.fixturenames and not i.get_closest_marker("container")]
    if unmarked:
        raise pytest.UsageError(f"uses a lema image but is not marked container: {', '.join(unmarked)}")
    for item in items:
        if unit[item.nodeid] != item.nodeid:
            item.add_marker(pytest.mark.xdist_group(unit[item.nodeid]))


def xdist_group(item) -> str | None:
    """The worker group of a test (see pytest_collection_modifyitems)."""
    if "clone_run" in item.fixturenames or item.get_closest_marker("container"):
        return "e2e"
    info = getattr(item, "_fixtureinfo", None)  # pytest has no public accessor for a test's fixture scopes
    if info and any(d and d[-1].scope == "module" for d in info.name2fixturedefs.values()):
        return item.module.__name__
    return None
