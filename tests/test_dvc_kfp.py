"""The same stage graph under DVC and under Kubeflow (kfp.local), on a fresh clone with the tiny config."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lema.stages import STAGES, readers

from .conftest import changed_value, lema_env
from .openai_fault_server import FaultServer

pytestmark = pytest.mark.slow


def _dvc(repo: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                         env=lema_env(repo))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_second_repro_is_a_noop_status_clean_and_push_pull_work(clone_run):
    repo, cfg, _ = clone_run
    assert "Running stage" not in _dvc(repo, "repro")
    assert "up to date" in _dvc(repo, "status")
    metrics = json.dumps(json.loads(_dvc(repo, "metrics", "show", "--json")))
    assert "accuracy" in metrics and "pass_rate" in metrics and "promoted" in metrics
    assert "model_card" not in metrics and "## Evaluation" not in metrics  # cards are MLflow artifacts, not metrics
    plots = _dvc(repo, "plots", "show", "--json")
    assert "funnel.json" in plots and "accuracy.json" in plots
    _dvc(repo, "push")  # the committed default remote: <repo>/dvc-store (git-ignored)
    assert any((repo / "dvc-store").rglob("*"))
    paths = repo / cfg.run_dir / "collect" / "paths.jsonl"
    before = paths.read_bytes()
    paths.unlink()
    import shutil

    shutil.rmtree(repo / ".dvc" / "cache")
    _dvc(repo, "pull")
    assert paths.read_bytes() == before


def test_sensitivity_matrix_from_the_declaration(clone_run):
    """Every config key a stage reads: changing it makes exactly the stages that read it stale in DVC (their
    descendants then rerun when those outputs change: `lema run` checks that for a sample key)."""
    from lema.orchestration.local import stale

    repo, cfg, _ = clone_run
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    assert stale(repo) == set()
    keys = sorted({k for st in STAGES for k in st.reads})
    try:
        for key in keys:
            params = yaml.safe_load(original)
            node = params
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = changed_value(node[leaf], key)
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            expected = readers(key, cfg)
            assert expected, key
            assert stale(repo) == expected, key
    finally:
        params_file.write_text(original)
    assert stale(repo) == set()


def _normalised(text: str) -> list:
    """JSONL rows without the `model` field (the base model's path differs between run dirs)."""
    def drop(x):
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if k != "model"}
        if isinstance(x, list):
            return [drop(v) for v in x]
        return x

    return [drop(json.loads(line)) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("runner", ["subprocess", pytest.param("docker", marks=pytest.mark.container)])
def test_local_kfp_run_with_two_shards_matches_dvc_and_lema_run(clone_run, tmp_path, runner, request):
    """SubprocessRunner (this venv) and DockerRunner (every task in lema-cpu, non-root, read-only root filesystem,
    the image's data): the same artifacts and metrics as `dvc repro` / `lema run`."""
    from lema.orchestration.kfp_cli import run_local

    if runner == "docker":
        request.getfixturevalue("cpu_image")
    repo, cfg, snapshot = clone_run
    root = tmp_path / "kfp"
    mlruns_before = sorted(Path.cwd().glob("mlruns/*"))
    run_local(repo / "configs" / "tiny.yaml", root, num_shards=2, data_dir=str(repo / "data"), runner=runner)
    # the registry and its artifacts stay under the pipeline root, not in ./mlruns of this directory
    assert sorted(Path.cwd().glob("mlruns/*")) == mlruns_before
    assert (root / "mlflow.db").exists() and any((root / "mlartifacts").rglob("MLmodel"))

    def output(task: str, name: str) -> Path:
        found = [f for f in root.rglob(name) if any(part.startswith(task) for part in f.relative_to(root).parts)]
        assert len(found) == 1, (task, name, found)
        return found[0]

    assert _normalised(output("merge-collect", "paths.jsonl").read_text()) == _normalised(
        snapshot["files"]["collect/paths.jsonl"])
    assert _normalised(output("merge-correct", "corrections.jsonl").read_text()) == _normalised(
        snapshot["files"]["correct/corrections.jsonl"])
    for v in ("cot", "lema"):
        assert _normalised(output("build-sft", f"{v}.jsonl").read_text()) == _normalised(
            snapshot["files"][f"sft/{v}.jsonl"])
    found = {}
    for f in (f for f in root.rglob("metrics.json")  # the evaluate tasks' outputs, not MLflow's copies of them
              if any(part.startswith("evaluate") for part in f.relative_to(root).parts)):
        rows = (f.parent / "rows.jsonl").read_text().splitlines()
        found[json.loads(rows[0])["model"]] = json.loads(f.read_text())
    assert found == snapshot["metrics"]


def test_kfp_correct_task_killed_and_retried_never_pays_twice(tmp_path):
    """The `correct` component body against the loopback fault server: SIGKILL one shard mid-way, retry it
    (what KFP's retry policy does); every answer is bought once; merged usage is the sum of the shards."""
    from lema.config import load_config
    from lema.jsonl import write_jsonl
    from lema.orchestration.artifacts import merge_correct

    from .test_llm_corrector import wrong_paths

    server = FaultServer(latency=0.3).start()
    try:
        rows = wrong_paths(16)
        collect = tmp_path / "collect"
        write_jsonl(collect / "wrong.jsonl", rows)
        cfg = load_config(None).model_dump(mode="json", by_alias=True)
        cfg["corrector"] |= {"kind": "llm", "model": "gpt-4o-mini", "base_url": server.url, "timeout_s": 5,
                             "backoff_base_s": 0.01, "n": 1, "concurrency": 2}
        config = json.dumps(cfg)
        cache = tmp_path / "cache"
        env = dict(os.environ, OPENAI_API_KEY="sk-test-local")

        def task(shard: int) -> subprocess.Popen:
            code = ("import sys; from lema.orchestration.artifacts import run_stage; "
                    "run_stage('correct', sys.argv[1], {'collect': sys.argv[2]}, {'correct': sys.argv[3]}, "
                    f"shard=({shard}, 2), cache_root=sys.argv[4])")
            return subprocess.Popen([sys.executable, "-c", code, config, str(collect),
                                     str(tmp_path / f"out{shard}"), str(cache)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        first = task(0)
        deadline = time.time() + 120
        while time.time() < deadline and len(list(cache.rglob("*.json"))) < 3:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(0.5)  # let the server finish what was in flight at the kill
        assert not (tmp_path / "out0").exists()
        lost = sum(server.stats.delivered.values()) - len(list(cache.rglob("*.json")))
        assert 0 <= lost <= 2  # at most the requests in flight (concurrency 2) when the task died
        for shard in (0, 1):  # the retry of shard 0, then shard 1
            p = task(shard)
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-2000:]
        # every answer already received is served from the persistent cache: only in-flight ones are bought again
        assert sum(server.stats.delivered.values()) == len(rows) + lost
        shards = [json.loads((tmp_path / f"out{s}" / "report.json").read_text())["details"]["usage"] for s in (0, 1)]
        merged = merge_correct([str(tmp_path / f"out{s}") for s in (0, 1)], tmp_path / "merged").details["usage"]
        for key in ("prompt_tokens", "completion_tokens", "succeeded", "requests"):
            assert merged[key] == shards[0][key] + shards[1][key]
        assert 0 < merged["succeeded"] < len(rows)  # the killed attempt's answers came from the cache
    finally:
        server.stop()


def _code_matrix(cfg) -> dict[str, set[str]]:
    """Every file of lema's code (src/lema, prompt files included) -> the nodes whose declared code holds it."""
    from lema.stages import instances
    from lema.stages.code import SRC, code_files

    owners: dict[str, set[str]] = {f.relative_to(SRC.parent).as_posix(): set() for f in SRC.rglob("*")
                                   if f.is_file() and "__pycache__" not in f.parts}
    for node in instances(cfg):
        for f in code_files(f"lema.stages.{node.stage.package}"):
            owners[f.relative_to(SRC.parent).as_posix()].add(node.name)
    return owners


def test_code_sensitivity_matrix(clone_run):
    """Touching a library file makes exactly the stages whose declared code holds it stale in `dvc status`
    (and `lema run` then reproduces those and their descendants).  DVC is asked for a sample that gives every
    stage a file only it (or the fewest others) holds, a file every stage holds and files no stage holds."""
    from dvc.repo import Repo

    from lema.orchestration.local import _stale_and_after, stale
    from lema.stages import descendants, instances

    repo, cfg, _ = clone_run
    matrix = _code_matrix(cfg)
    names = {n.name for n in instances(cfg)}
    sample = {min((f for f, o in matrix.items() if n in o), key=lambda f: (len(matrix[f]), f)) for n in names}
    sample |= {"lema/config/schema.py", "lema/cli.py", "lema/orchestration/kfp.py", "lema/lab/report.py"}
    assert set().union(*(matrix[f] for f in sample)) == names  # every stage is tested at least once
    assert not matrix["lema/cli.py"] and matrix["lema/config/schema.py"] == names
    assert stale(repo) == set()
    for rel in sorted(sample):
        f = repo / "src" / rel
        original = f.read_bytes()
        try:
            f.write_bytes(original + b"\n# touched by the code-sensitivity test\n")
            assert stale(repo) == matrix[rel], rel
            with contextlib.chdir(repo), Repo(str(repo)) as r:
                after = _stale_and_after(r, cfg)
            assert after == set().union(set(), *(descendants(n, cfg) for n in matrix[rel])), rel
        finally:
            f.write_bytes(original)
    assert stale(repo) == set()
