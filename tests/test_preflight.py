"""A bad eval set or config stops `lema run` (and `lema validate`, `lema pipeline run/compile`) before any
stage: in seconds, exit 2, one message naming file, line and field, no traceback, no run dir written."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import DATA, ROOT, lema_env

GSM_HARD = [{"input": "Janet has 3 ducks and buys 1.1 more. How many?", "target": 4.1000000000000005},
            {"input": "A car goes 42159089 meters in 3 hours. Meters per hour?", "target": 14053029.666666666},
            {"input": "What is 2.0107 divided by a million?", "target": 2.0107e-06}]
ASDIV = [{"Body": "Tom has 5 apples.", "Question": "How many apples?", "Answer": "5 (apples)"},
         {"Body": "A show starts at 3:00 p.m. and lasts 30 minutes.", "Question": "When does it end?",
          "Answer": "3:30 p.m."},
         {"Body": "Ann gives 2 of her 9 dogs away.", "Question": "How many dogs are left?", "Answer": "7 (dogs)"}]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path, eval_sets, **extra):
    cfg = {"run_dir": "runs/pf", "data": {"dir": str(DATA), "eval_sets": eval_sets}} | extra
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def _lema(cwd, *args):
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "lema.cli", *args], cwd=cwd, env=lema_env(ROOT),
                         capture_output=True, text=True, timeout=60)
    return res, time.time() - t0


def _fails_before_any_stage(tmp_path, cfg, *expected, command=("run",)):
    res, seconds = _lema(tmp_path, *command, "--config", str(cfg))
    assert res.returncode == 2, res.stdout + res.stderr
    for text in expected:
        assert text in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "function-after" not in res.stderr
    assert not (tmp_path / "runs").exists()  # no run dir, no stage output
    assert seconds < 10, seconds
    return res.stderr


def test_a_bad_row_names_file_line_and_field(tmp_path):
    f = _jsonl(tmp_path / "gsm_hard.jsonl", [*GSM_HARD, {"input": "When?", "target": "5:45"}])
    cfg = _config(tmp_path, {"gsm-hard": {"path": "gsm_hard.jsonl", "fields": {"question": "input",
                                                                              "answer": "target"}}})
    _fails_before_any_stage(tmp_path, cfg, f"{f}:4: field 'target': not a number: '5:45'", "on_invalid: skip")


def test_a_missing_field_names_it(tmp_path):
    f = _jsonl(tmp_path / "asdiv.jsonl", ASDIV)
    cfg = _config(tmp_path, {"asdiv": {"path": str(f), "fields": {"question": ["Body", "Question"],
                                                                  "answer": "Solution"}}})
    _fails_before_any_stage(tmp_path, cfg, f"{f}:1: field 'Solution': missing (declared as the answer field)",
                            command=("validate",))


def test_a_missing_file_and_an_unknown_bundled_set(tmp_path):
    cfg = _config(tmp_path, {"gsm-hard/test": 20, "mine": {"path": "nowhere/mine.jsonl"}})
    err = _fails_before_any_stage(tmp_path, cfg, "unknown bundled evaluation set 'gsm-hard/test'",
                                  "gsm8k/test, math/train, math500/test, math/test, svamp/test",
                                  f"data.eval_sets.mine.path: file not found: {tmp_path / 'nowhere/mine.jsonl'}")
    assert err.count("lema run: error") == 1  # one message listing every problem
    _fails_before_any_stage(tmp_path, cfg, "unknown bundled evaluation set 'gsm-hard/test'",
                            command=("pipeline", "compile", "--out", str(tmp_path / "p.yaml")))


def test_value_ranges_and_set_blame(tmp_path):
    cfg = _config(tmp_path, {"gsm8k/test": 5}, train={"epochs": -1, "batch_size": 0})
    _fails_before_any_stage(tmp_path, cfg, f"{cfg}: field 'train.epochs': Input should be greater than 0",
                            f"{cfg}: field 'train.batch_size': Input should be greater than or equal to 1")
    cfg = _config(tmp_path, {"gsm8k/test": 5})
    err = _fails_before_any_stage(tmp_path, cfg, "--set train.learning_rate=abc: field 'train.learning_rate'",
                                  command=("run", "--set", "train.learning_rate=abc"))
    assert f"{cfg}:" not in err


def test_eval_set_typo_names_the_key(tmp_path):
    cfg = _config(tmp_path, {"mine": {"path": "x.jsonl", "answer_typo": "latex"}, "svamp/test": 0})
    _fails_before_any_stage(tmp_path, cfg, "eval set 'mine', key 'answer_typo': unknown key (an evaluation set has "
                            "path, hub,", "eval set 'svamp/test': expected a number of questions (>= 1)")


def test_limit_reads_only_the_rows_it_uses(tmp_path):
    from lema.config import load_config
    from lema.config.preflight import preflight
    from lema.data import load_eval_set

    f = _jsonl(tmp_path / "gsm_hard.jsonl", [*GSM_HARD, {"input": "When?", "target": "5:45"}])
    cfg = load_config(_config(tmp_path, {"gsm-hard": {"path": "gsm_hard.jsonl", "limit": 3, "fields": {
        "question": "input", "answer": "target"}}}))
    assert preflight(cfg) == ["gsm-hard: 3 rows"]  # row 4 is never graded: not an error
    with f.open("a") as fh:
        fh.write("{broken json\n")
    spec = cfg.data.eval_sets["gsm-hard"]
    golds = [p.gold_answer for p in load_eval_set("gsm-hard", spec)]  # stops reading after the limit
    assert golds == ["4.1", "14053029.6666667", "0.0000020107"]


def test_on_invalid_skip_is_counted_and_reported(tmp_path):
    from lema.config import load_config
    from lema.config.preflight import preflight
    from lema.stages.common import eval_sets

    _jsonl(tmp_path / "asdiv.jsonl", ASDIV)
    spec = {"path": "asdiv.jsonl", "fields": {"question": ["Body", "Question"], "answer": "Answer"}}
    cfg = load_config(_config(tmp_path, {"asdiv": spec | {"on_invalid": "skip"},
                                         "asdiv-time": spec | {"answer_type": "time", "on_invalid": "skip"}}))
    assert preflight(cfg) == ["asdiv: 2 rows, 1 skipped (on_invalid: skip; lines 2)",
                              "asdiv-time: 1 rows, 2 skipped (on_invalid: skip; lines 1, 3)"]
    skipped = {}
    sets = eval_sets(cfg, skipped=skipped)
    assert [p.gold_answer for p in sets["asdiv"]] == ["5", "7"] and sets["asdiv-time"][0].gold_answer == "15:30"
    assert [n for n, _ in skipped["asdiv"]] == [2] and "not a number: '3:30 p.m.'" in skipped["asdiv"][0][1]


def test_relative_path_resolves_against_the_config_dir_on_every_engine(tmp_path, monkeypatch):
    """`lema run --config conf/cfg.yaml` from another directory: the stages run in the run dir on its resolved
    params.yaml, and read the same file `lema validate` reads."""
    from lema.config import load_config
    from lema.orchestration.local import run_project
    from lema.stages.common import eval_sets

    conf = tmp_path / "conf"
    conf.mkdir()
    _jsonl(conf / "asdiv.jsonl", ASDIV[:1])
    cfg_file = _config(conf, {"asdiv": {"path": "asdiv.jsonl", "fields": {"question": ["Body", "Question"],
                                                                          "answer": "Answer"}}},
                       run_dir=str(tmp_path / "run"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(os.path.relpath(cfg_file, elsewhere))
    assert cfg.data.eval_sets["asdiv"].path == str(conf / "asdiv.jsonl")
    run_dir = run_project(cfg)  # the run dir's DVC project `lema run --config` executes the stages in
    assert str(conf / "asdiv.jsonl") in (run_dir / "params.yaml").read_text()  # DVC params: the absolute path
    monkeypatch.chdir(run_dir)
    staged = load_config("params.yaml")
    assert staged.data.eval_sets == cfg.data.eval_sets and len(eval_sets(staged)["asdiv"]) == 1
    # --set paths are relative to the working directory
    over = load_config(cfg_file, {"data.eval_sets.asdiv.path": "../conf/asdiv.jsonl"})
    assert over.data.eval_sets["asdiv"].path == str(conf / "asdiv.jsonl")


@pytest.mark.parametrize("command", [("run",), ("pipeline", "run", "--local")])
def test_a_relative_path_missing_from_the_config_dir_fails_naming_where_it_looked(tmp_path, command):
    conf = tmp_path / "conf"
    conf.mkdir()
    _jsonl(tmp_path / "asdiv.jsonl", ASDIV)  # next to the cwd, not the config: not found
    cfg = _config(conf, {"asdiv": {"path": "asdiv.jsonl"}})
    cmd = (*command, "--pipeline-root", str(tmp_path / "runs" / "kfp")) if "pipeline" in command else command
    _fails_before_any_stage(tmp_path, cfg, f"file not found: {conf / 'asdiv.jsonl'}", command=cmd)
