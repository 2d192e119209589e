"""`lema run --config X`: a run dir with its own DVC project.  One writer at a time (a second run stops at once,
naming the holder, and changes nothing of the first); the project is portable, has the enclosing project's
remote, and is a git repo where DVC's own workflow (`status`, `repro --dry`, `exp run -S`, `exp show`) works.
A finished run grows a second LeMa round (`--set rounds=2`) without redoing the first."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, lema_env, transformers_generation

pytestmark = pytest.mark.slow

# configs/tiny.yaml at its smallest (the run only has to finish; what is checked is who writes the run dir)
SMALL = ["--set", "base_model.pretrain_steps=30", "--set", "data.train_limit=8", "--set", "sft.cot_limit=16",
         "--set", "data.eval_sets={gsm8k/test: 6, math500/test: 2}", "--set", "evaluate.max_tokens=32",
         *transformers_generation()]
BUSY = "is in use by another lema run"


def _lema_run(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lema", "run", "--config", str(ROOT / "configs" / "tiny.yaml"),
                             "--set", f"run_dir={run_dir}", *SMALL, *extra], cwd=ROOT, env=lema_env(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _cmd(run_dir: Path, *args: str) -> str:
    out = subprocess.run(list(args), cwd=run_dir, env=lema_env(ROOT), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A run, and while it runs the same with `--set train.epochs=3` on its run dir: (first, second) results,
    the first run's files as they were when the second started, and a copy of the finished run dir ("pristine",
    at the same depth so that its relative remote still resolves) for tests that change a run dir."""
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    first = _lema_run(run_dir)
    deadline = time.time() + 300
    while not (run_dir / "config.json").exists():  # the first run has written its project and config
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline
        time.sleep(0.2)
    before = {f: (run_dir / f).read_text() for f in ("params.yaml", "config.json", "dvc.yaml")}
    t0 = time.time()
    second = _lema_run(run_dir, "--set", "train.epochs=3")
    out2, err2 = second.communicate(timeout=300)
    second_took = time.time() - t0
    after_second = {f: (run_dir / f).read_text() for f in before}
    out1, err1 = first.communicate(timeout=3600)
    assert first.returncode == 0, out1[-4000:] + err1[-4000:]
    pristine = tmp_path_factory.mktemp("pristine") / "tiny"
    shutil.copytree(run_dir, pristine, symlinks=True)
    return {"run_dir": run_dir, "pristine": pristine, "before": before, "after_second": after_second, "second": (second.returncode,
            out2, err2, second_took), "first_stdout": out1}


def test_a_second_run_on_the_same_dir_stops_at_once_and_changes_nothing(first_run):
    from mlflow import MlflowClient

    run_dir = first_run["run_dir"]
    rc, out, err, took = first_run["second"]
    assert rc != 0 and BUSY in err and "Traceback" not in out + err
    holder = err.split(BUSY)[1]
    assert "pid" in holder and "started" in holder and "lema" in holder  # who holds it, since when, running what
    assert took < 60  # at once: no stage ran (python start-up only)
    assert first_run["after_second"] == first_run["before"]
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["train"]["epochs"] == 1
    assert yaml.safe_load((run_dir / "params.yaml").read_text())["train"]["epochs"] == 1
    train = {v: json.loads((run_dir / "train" / v / "report.json").read_text())["details"] for v in ("cot", "lema")}
    sft = {v: len((run_dir / "sft" / f"{v}.jsonl").read_text().splitlines()) for v in ("cot", "lema")}
    batch = cfg["train"]["batch_size"] * cfg["train"]["grad_accum"]
    for v, d in train.items():  # every example counted: trained, or dropped because its prompt fills max_length
        assert d["examples_trained"] + d["dropped_prompt_fills_max_length"] == sft[v]
        assert d["steps"] == -(-d["examples_trained"] // batch), v  # one epoch each
    reg = json.loads((run_dir / "register" / "report.json").read_text())["details"]
    client = MlflowClient(tracking_uri=reg["tracking_uri"])
    for version in reg["versions"].values():
        run = client.get_run(client.get_model_version(reg["model_name"], version).run_id)
        assert float(run.data.params["train.epochs"]) == 1.0
    assert not (run_dir / ".lema-run.lock").read_text().strip()  # released (and emptied) by the finished run


def test_two_runs_started_at_the_same_moment_exactly_one_wins(tmp_path):
    run_dir = tmp_path / "tiny"
    procs = [_lema_run(run_dir), _lema_run(run_dir, "--set", "train.epochs=3")]
    try:
        deadline = time.time() + 300
        while all(p.poll() is None for p in procs):
            assert time.time() < deadline
            time.sleep(0.2)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        out, err = loser.communicate()
        assert loser.returncode != 0 and BUSY in err and "Traceback" not in out + err
        assert winner.poll() is None  # still running, undisturbed
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.communicate(timeout=120)


def test_run_dir_project_is_portable_with_the_remote_and_dvc_exp_works(first_run):
    run_dir = first_run["run_dir"]
    absolute = re.compile(r"(?<![\w.])/(?:" + "|".join(re.escape(p.parts[1]) for p in (ROOT, run_dir)) + ")/")
    for f in ("dvc.yaml", "params.yaml", "dvc.lock", ".dvc/config"):
        assert not absolute.search((run_dir / f).read_text()), f  # no absolute path of this machine
    stages = yaml.safe_load((run_dir / "dvc.yaml").read_text())["stages"]
    deps = [d for s in stages.values() for d in (s.get("do", s)["deps"])]
    assert deps and not any(os.path.isabs(d) for d in deps)
    remote = re.search(r"url = (\S+)", (run_dir / ".dvc" / "config").read_text()).group(1)
    assert not os.path.isabs(remote) and (run_dir / ".dvc" / remote).resolve() == (ROOT / "dvc-store").resolve()
    assert "(default)" in _cmd(run_dir, sys.executable, "-m", "dvc", "remote", "list")
    assert _cmd(run_dir, "git", "log", "--oneline").strip()  # lema run committed the project
    assert "up to date" in _cmd(run_dir, sys.executable, "-m", "dvc", "status")
    assert "Running stage" not in _cmd(run_dir, sys.executable, "-m", "dvc", "repro", "--dry")
    # a no-op `lema run`: one status, nothing reproduced
    again = _lema_run(run_dir)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:] + err[-3000:]
    assert out.count("unchanged, skipped") == len(stages) + 2 and "Running stage" not in out  # train, evaluate x2
    # DVC's experiment workflow on a training value from the recipe
    _cmd(run_dir, sys.executable, "-m", "dvc", "exp", "run", "-S", "train.learning_rate=0.001")
    show = json.loads(_cmd(run_dir, sys.executable, "-m", "dvc", "exp", "show", "--json"))
    text = json.dumps(show)
    assert "0.001" in text and "learning_rate" in text and "accuracy" in text


def test_a_second_round_reuses_the_first_and_shows_its_lineage(first_run, tmp_path):
    """`--set rounds=2` on a finished one-round run dir: round 1 is reused as it is (DVC reruns none of its
    stages); round 2 samples with round 1's champion (downloaded from the registry by alias) on fresh questions,
    trains on both rounds' data, and registers with its lineage (`lema registry history`)."""
    from lema.jsonl import read_jsonl
    from lema.records import Correction, SampledPath, SFTExample
    from lema.stages.layout import Paths

    run_dir = first_run["pristine"]
    one_round = list(yaml.safe_load((run_dir / "dvc.yaml").read_text())["stages"])
    proc = _lema_run(run_dir, "--set", "rounds=2")
    out, err = proc.communicate(timeout=3600)
    assert proc.returncode == 0, out[-4000:] + err[-4000:]
    assert "round 2 of 2" in out
    ran = set(re.findall(r"Running stage '([^'@]+)", out))
    assert ran and not ran & set(one_round) and all(s.endswith("-r2") for s in ran), ran

    one, two = Paths(run_dir, 1), Paths(run_dir, 2)
    champ = json.loads((two.generator / "report.json").read_text())["details"]
    reg1 = json.loads((one.register / "report.json").read_text())["details"]
    assert champ["model_uri"].endswith("@champion") and champ["version"] == reg1["versions"][reg1["candidate"]]
    assert champ["round"] == 2 and champ["champion_round"] == "1"
    # round 2 sampled with that champion, on questions round 1 never saw
    p1, p2 = read_jsonl(one.collect / "paths.jsonl", SampledPath), read_jsonl(two.collect / "paths.jsonl", SampledPath)
    # the run dir's project is portable: the model is named relative to it
    assert {str(run_dir / p.model) for p in p2} == {str(two.generator / "model")}
    assert not {p.id for p in p1} & {p.id for p in p2}
    # round 2 trains on every round's validated corrections
    valid = read_jsonl(one.validate / "valid.jsonl", Correction) + read_jsonl(two.validate / "valid.jsonl", Correction)
    assert read_jsonl(two.pool / "valid.jsonl", Correction) == valid
    sft = read_jsonl(two.sft / "lema.jsonl", SFTExample)
    assert sum(e.kind == "correction" for e in sft) == len(valid)

    sets = ["--config", str(ROOT / "configs" / "tiny.yaml"), "--set", f"run_dir={run_dir}", *SMALL,
            "--set", "rounds=2"]
    rows = {r["version"]: r for r in json.loads(_cmd(tmp_path, sys.executable, "-m", "lema", "registry", "history",
                                                     "--json", *sets))}
    reg2 = json.loads((two.register / "report.json").read_text())["details"]
    assert {int(v) for v in reg1["versions"].values()} | {int(v) for v in reg2["versions"].values()} == set(rows)
    for v in reg1["versions"].values():
        assert rows[int(v)]["round"] == "1" and rows[int(v)]["parent"] is None
    for v in reg2["versions"].values():
        assert rows[int(v)]["round"] == "2" and rows[int(v)]["parent"] == champ["version"]
    table = subprocess.run([sys.executable, "-m", "lema", "registry", "history", *sets], cwd=tmp_path,
                           env=lema_env(ROOT) | {"COLUMNS": "200"}, capture_output=True, text=True)
    assert "round" in table.stdout and "parent" in table.stdout
    assert (run_dir / "rounds" / "2" / "report").is_dir()
