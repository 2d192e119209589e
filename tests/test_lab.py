"""The lab: generator and its programs, error types and explanations, the real tokenizer's token matching,
seed-level statistics against scipy, and the quick lab with 2 rounds end to end."""

import json
import math
import random

import numpy as np
import pytest

from lema import stats
from lema.grading.answers import extract_answer, is_correct
from lema.grading.steps import split_steps
from lema.lab import arms, task
from lema.lab.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def pools():
    return task.make_pools(7, {"test": 150, "train": 200, "collect": 300, "extra": 1500})


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_answers_equal_their_programs(pools):
    for p in pools["train"] + pools["test"]:
        cur = p.steps[0].a
        for op, a, b, r in p.program:
            assert a == cur and task.OPS[op](a, b) == r and (op != "/" or a % b == 0)
            cur = r
        assert cur == p.answer and 2 <= len(p.program) <= 4
        assert task.first_mistake(p.cot(), p) is None


def test_no_question_overlap_between_pools(pools):
    qs = {k: {p.question for p in v} for k, v in pools.items()}
    assert all(len(qs[k]) == len(pools[k]) for k in pools)
    names = list(qs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not qs[a] & qs[b], (a, b)
    # a pool's content does not depend on the sizes of the pools after it
    again = task.make_pools(7, {"test": 150, "train": 10})
    assert [p.question for p in again["test"]] == [p.question for p in pools["test"]]
    with pytest.raises(ValueError, match="pretrain"):
        task.make_pools(7, {"test": 1, "pretrain": 10})


def test_step_format_parses_with_lema_answers(pools):
    for p in pools["test"]:
        steps = split_steps(p.cot())
        assert len(steps) == len(p.program) + 1 and steps[-1] == f"The answer is {p.answer}."
        assert extract_answer(p.cot(), "lab") == str(p.answer)
        assert is_correct(p.cot(), str(p.answer), "lab")


@pytest.mark.parametrize("kind", task.ERROR_TYPES)
def test_every_planted_error_type_is_found_and_named(pools, kind):
    rng = random.Random(kind)
    found = 0
    for p in pools["collect"]:
        step = rng.randint(1, len(p.steps))
        path = task.plant(p, kind, step, rng)
        m = task.first_mistake(path, p)
        assert m is not None, path  # a planted error is never read as a right answer
        found += m.kind == kind
        informative = task.explanation(p, m, "informative")
        assert m.kind in informative and f"Step {m.step}" in informative
        assert not any(t in task.explanation(p, m, "templated") for t in task.ERROR_TYPES)
        assert task.explanation(p, m, "none") == ""
        text = task.correction_text(p, m, "informative")
        assert is_correct(text, str(p.answer), "lab") and "Explanation:" in text
        assert "Explanation:" not in task.correction_text(p, m, "none")
    assert found >= 0.95 * len(pools["collect"]), (kind, found)


def test_tokenizer_splits_digits_and_round_trips(pools, tok):
    for p in pools["test"][:50]:
        text = task.cot_prompt(p.question) + p.cot()
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("= 105") == [tok.ids["="], tok.ids["1"], tok.ids["0"], tok.ids["5"]]
    with pytest.raises(ValueError, match="not in the lab vocabulary"):
        tok.encode("Zebras")


def _wrongs(pools, n=120):
    rng = random.Random(0)
    out = []
    for p in pools["collect"][:n]:
        path = task.plant(p, rng.choice(task.ERROR_TYPES), rng.randint(1, len(p.steps)), rng)
        out.append(arms.Wrong(p, path, task.first_mistake(path, p)))
    return out


def test_token_matched_arm_is_within_two_percent_with_the_real_tokenizer(pools, tok):
    wrongs = _wrongs(pools)
    sets, sizes = arms.arm_sets(pools["train"], wrongs, pools["extra"], tok, tolerance=0.02, seed=3)
    n_cot = len(pools["train"])
    target = sum(len(tok.encode(e.completion)) + 1 for e in sets["lema"][n_cot:])
    extra = sum(len(tok.encode(e.completion)) + 1 for e in sets["cot_extra_tokens"][n_cot:])
    assert abs(extra / target - 1) <= 0.02 and sizes["cot_extra_tokens"]["token_ratio"] == extra / target
    assert sizes["cot_extra_examples"]["added_examples"] == len(wrongs) == sizes["lema"]["added_examples"]
    assert all(sets[a][:n_cot] == sets["cot"] for a in arms.ARMS)  # every arm keeps the same CoT
    assert sizes["lema_no_expl"]["added_tokens"] < sizes["lema"]["added_tokens"] < \
        sizes["lema_informative"]["added_tokens"]
    with pytest.raises(ValueError, match="token matching failed"):
        arms.match_tokens(arms.cot_examples(pools["extra"][:5]), target, tok, 0.02, seed=0)


def test_base_is_pretrained_on_a_related_but_different_distribution(pools, tok):
    from lema.lab.pretrain import KINDS, pretrain_examples

    task_qs = {p.question for pool in pools.values() for p in pool}
    pre = pretrain_examples(1, 400, task_qs, max_number=9, max_value=99, distractors=0.3)
    assert not {e.prompt for e in pre} & {task.cot_prompt(q) for q in task_qs}
    assert {e.kind for e in pre} == {f"pretrain/{k}" for k in KINDS}
    # never a multi-step problem: one reasoning step and the read-out; the task always has at least two
    assert all(len(split_steps(e.completion)) == 2 for e in pre)
    assert min(len(p.steps) for p in pools["test"]) >= 2
    for e in pre:  # the task's vocabulary: every word is in the closed tokenizer
        tok.encode(e.prompt + e.completion)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5])
def test_controlled_corrector_names_a_wrong_step_for_the_stated_fraction(pools, rate):
    wrongs = _wrongs(pools, n=100)
    named, flipped = arms.misname_steps(wrongs, rate, seed=5)
    assert len(flipped) == round(rate * len(wrongs)) == sum(a.mistake.step != b.mistake.step
                                                            for a, b in zip(wrongs, named))
    for i in flipped:
        assert 1 <= named[i].mistake.step <= len(wrongs[i].problem.steps) + 1
        text = task.correction_text(named[i].problem, named[i].mistake, "templated")
        assert text.startswith(f"Incorrect step: {named[i].mistake.step}.")
        assert is_correct(text, str(named[i].problem.answer), "lab")  # the continuation is still right


def test_step_checker_is_scored_against_the_programs_first_wrong_step(pools):
    """The production checker (lema.grading.step_check, from the step-check work) through the lab's adapter:
    on planted arithmetic slips it must name the planted step; right paths are not wrong paths."""
    from lema.lab import stepcheck

    pytest.importorskip(stepcheck.CHECKER_MODULE)
    rng = random.Random(4)
    probs = pools["collect"][:60]
    paths = [task.plant(p, "arithmetic slip", rng.randint(1, len(p.steps)), rng) for p in probs[:40]]
    paths += [p.cot() for p in probs[40:]]
    records = stepcheck.path_records(probs, paths)
    assert sum(r["true_step"] is None for r in records) == 20
    sc = stepcheck.score_checker(records, {p.question: p for p in probs})
    assert sc["available"] and sc["wrong_paths"] == 40 and sc["right_paths"] == 20
    assert sc["recall_by_kind"]["arithmetic slip"] >= 0.9 and sc["false_alarms"] == 0 and sc["precision"] >= 0.9


def test_seed_statistics_agree_with_scipy():
    from scipy import stats as st

    a = [0.52, 0.55, 0.50, 0.58, 0.53]
    b = [0.57, 0.56, 0.55, 0.63, 0.55]
    r = stats.paired_seeds(a, b)
    d = np.array(b) - np.array(a)
    lo, hi = st.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=st.sem(d))
    assert r["mean"] == pytest.approx(d.mean()) and r["ci95"] == pytest.approx([lo, hi])
    assert r["p"] == pytest.approx(st.ttest_rel(b, a).pvalue)
    # the minimum detectable effect has (about) 80% power under the noncentral t
    sd = d.std(ddof=1)
    m = stats.mde(sd, len(d))
    tc = st.t.ppf(0.975, len(d) - 1)
    power = 1 - st.nct.cdf(tc, len(d) - 1, m / (sd / math.sqrt(len(d)))) + st.nct.cdf(-tc, len(d) - 1,
                                                                                           m / (sd / math.sqrt(len(d))))
    assert 0.75 < power < 0.85
    # hierarchical bootstrap: seeds then questions; covers the true difference, wider than questions alone
    rng = np.random.default_rng(0)
    oa = rng.random((5, 400)) < np.array(a)[:, None]
    ob = oa | (rng.random((5, 400)) < 0.08)
    ci = stats.hierarchical_bootstrap(oa, ob, iters=1000)
    true = (ob.mean(1) - oa.mean(1)).mean()
    assert ci[0] < true < ci[1]
    with pytest.raises(ValueError):
        stats.paired_seeds([0.1], [0.1, 0.2])


def test_report_says_how_many_seeds_and_cpu_hours_the_2_point_check_still_needs():
    from lema.lab.report import seeds_to_go

    comps = {"a - b": {"seeds_for_mde_2pt": 12}, "c - d": {"seeds_for_mde_2pt": 45}, "e - f": {}}
    cpu = {1: {"total": 900.0}, 2: {"total": 960.0}}  # 15.5 CPU-minutes per seed
    line = seeds_to_go(comps, 20, cpu)
    assert "asks for 45 seeds" in line and "15.5 CPU-minutes per seed" in line and "25 missing seeds" in line
    assert "about 6.5 CPU-hours" in line and "`--seeds 45`" in line  # 25 * 930 s
    assert seeds_to_go(comps, 45, cpu) == ""  # met: nothing to add
    assert "CPU-hours" not in seeds_to_go(comps, 20, {})  # no timing on record: seeds only


@pytest.mark.slow
def test_quick_lab_protocol_end_to_end(tmp_path):
    """Seconds-scale run of the whole protocol: generator = the CoT-fine-tuned base sampled at temperature 1 on
    the training questions, token-matched arms, controlled correctors, rounds, report with lift and MDE."""
    from lema.cli import main

    out, run = tmp_path / "report", tmp_path / "run"
    rc = main(["lab", "--quick", "--seeds", "2", "--rounds", "2", "--out", str(out), "--run-dir", str(run)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    seed = json.loads((run / "seed1.json").read_text())
    gen = seed["generator"]
    assert gen == {"model": "cot", "temperature": 1.0, "questions": "train", "samples": 1}
    from lema.lab.config import load_lab_config
    from lema.lab.run import build_pools

    train_qs = {p.question for p in build_pools(load_lab_config(quick=True, rounds=2))["train"]}
    assert {r["question"] for r in seed["generator_paths"]} == train_qs
    assert seed["funnel"]["sampled"] == len(train_qs)
    assert seed["funnel"]["wrong"] == sum(r["true_step"] is not None for r in seed["generator_paths"])
    assert res["seeds"] == [1, 2] and len(res["base_accuracy"]) == 2
    assert res["base_accuracy"][0] == res["base_accuracy"][1]  # one base model, as in the paper
    for arm in [*arms.ARMS, "lema_wrong_step_25", "lema_wrong_step_50"]:
        r = res["arms"][arm]
        assert len(r["per_seed"]) == 2 and r["ci95"][0] <= r["mean"] <= r["ci95"][1]
        assert res["lift_over_base"][arm]["per_seed"] == pytest.approx(
            [a - b for a, b in zip(r["per_seed"], res["base_accuracy"])])
    assert abs(res["token_ratio"]["cot_extra_tokens"]["mean"] - 1) <= 0.02
    assert {(r["round"], r["arm"]) for r in res["rounds"]} == {(k, c) for k in (0, 1, 2)
                                                              for c in ("lema", "self_train", "cot_extra")}
    assert set(res["protocol"]) == {"base_under_30", "cot_lifts_20", "every_arm_above_base", "every_mde_at_most_2"}
    assert "lema - lema_wrong_step_50" in res["comparisons"]
    assert "seeds_for_mde_2pt" in res["comparisons"]["lema - cot"]
    report = (out / "report.md").read_text()
    assert "| lift over base (points) |" in report and "| MDE (80% power) |" in report and "| verdict |" in report
    assert "## Design checks" in report and "process CPU" in report
    assert res["command"].startswith("lema lab --quick") and res["minutes"] > 0 and res["cpu_minutes"] > 0
    for png in ("accuracy_per_arm.png", "rounds.png"):
        assert (out / png).stat().st_size > 1000
    # the report can be rewritten from the run's seed files (a run copied back from a GPU machine)
    assert main(["lab", "--report-only", "--run-dir", str(run), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["arms"] == res["arms"] and again["rounds"] == res["rounds"] and again["command"] == res["command"]
    # more seeds go on from what is on disk: seeds 1-2 are reused byte for byte, only seed 3 runs
    before = {s: (run / f"seed{s}.json").read_bytes() for s in (1, 2)}
    assert main(["lab", "--quick", "--seeds", "3", "--rounds", "2", "--out", str(tmp_path / "more"),
                 "--run-dir", str(run)]) == 0
    more = json.loads((tmp_path / "more" / "results.json").read_text())
    assert more["seeds"] == [1, 2, 3] and more["arms"]["cot"]["per_seed"][:2] == res["arms"]["cot"]["per_seed"]
    assert all((run / f"seed{s}.json").read_bytes() == b for s, b in before.items())
    assert "Seeds [1, 2] were finished by earlier runs" in (tmp_path / "more" / "report.md").read_text()
    from lema.lab.run import finished_seeds

    quick3 = load_lab_config(quick=True, rounds=2, seeds=[1, 2, 3])
    assert sorted(finished_seeds(quick3, "cpu", run)) == [1, 2, 3]
    assert finished_seeds(quick3.model_copy(update={"n_test": 41}), "cpu", run) == {}  # other settings: rerun
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lema-lab").experiment_id])
    assert {r.data.params["arm"] for r in runs} >= {"base", *arms.ARMS, "rounds/lema", "rounds/self_train",
                                                   "rounds/cot_extra"}


def test_configs_lab_yaml_is_the_default_and_bad_settings_name_the_file(tmp_path):
    from lema.config import Config
    from lema.lab.config import LabConfig, load_lab_config

    from .conftest import ROOT

    assert load_lab_config(ROOT / "configs" / "lab.yaml") == LabConfig() == Config().lab
    bad = tmp_path / "lab.yaml"
    bad.write_text("lab:\n  n_tset: 3\n")
    with pytest.raises(ValueError, match="(?s)lab.yaml.*n_tset"):
        load_lab_config(bad)


PROBE = {"finetune", "arms", "wrong_step_rates", "rounds"}
THREE = (["cot", "lema", "cot_extra_tokens"], [], 1, 1000)


@pytest.mark.parametrize("name, ft, changed, shape", [
    ("lab-spread-lr1e-3", {"learning_rate": 0.001}, PROBE, (["cot", "lema"], [], 1, 1000)),
    ("lab-spread-lr2e-3", {"learning_rate": 0.002}, PROBE, (["cot", "lema"], [], 1, 1000)),
    ("lab-lr2e-3", {"learning_rate": 0.002}, {"finetune"}, None),
    ("lab-probe-test3000", {"learning_rate": 0.002}, {"finetune", "n_test"}, None),
    ("lab-probe-ep14", {"epochs": 14.0}, PROBE, THREE),
    ("lab-probe-train2000", {}, PROBE - {"finetune"} | {"n_train", "n_extra"}, THREE),
    ("lab-probe-wd1", {"weight_decay": 1.0}, PROBE, (["cot", "lema"], [], 1, 1000)),
    ("lab-probe-lr1e-3-ep14", {"learning_rate": 0.001, "epochs": 14.0}, PROBE, (["cot", "lema"], [], 1, 1000)),
    ("lab-probe-pretrain6", {}, PROBE - {"finetune"} | {"pretrain"}, (["cot", "lema"], [], 1, 1000)),
    ("lab-probe-data-seed1", {}, PROBE - {"finetune"} | {"data_seed"}, (["cot", "lema"], [], 1, 1000)),
    ("lab-data-seed1", {}, {"data_seed"}, None),
])
def test_kept_lab_configs_are_the_default_but_where_their_reports_say(name, ft, changed, shape):
    """docs/lab/README.md compares the probes and kept reports with the default: they must share the base (the
    same pretraining data, so `base.pt` is reused; pool sizes leave it alone, as pretraining never holds a task
    question) unless they probe the base itself, and differ only where the README says."""
    from lema.lab.config import LabConfig, load_lab_config
    from lema.lab.run import base_key

    from .conftest import ROOT

    cfg, default = load_lab_config(ROOT / "configs" / f"{name}.yaml"), LabConfig()
    assert (base_key(cfg) == base_key(default)) == (not changed & {"pretrain", "data_seed"})
    assert all(getattr(cfg.finetune, k) == v != getattr(default.finetune, k) for k, v in ft.items())
    base = default.model_dump()
    assert {k for k, v in cfg.model_dump().items() if v != base[k]} == changed
    assert cfg.finetune.model_copy(update={k: getattr(default.finetune, k) for k in ft}) == default.finetune
    if shape:
        assert (cfg.arms, cfg.wrong_step_rates, cfg.rounds, cfg.n_test) == shape


def test_a_base_with_the_same_pretraining_settings_is_reused_from_the_run_dir(tmp_path):
    from lema.lab.config import load_lab_config
    from lema.lab.run import load_or_pretrain_base

    cfg = load_lab_config(quick=True, n_pretrain=20, n_test=5, n_train=5, n_collect=5, n_extra=20)
    first = load_or_pretrain_base(cfg, "cpu", tmp_path, log=lambda m: None)
    again = load_or_pretrain_base(cfg, "cpu", tmp_path, log=lambda m: None)
    assert again["train"]["reused"] and not first["train"].get("reused")
    assert all((again["state"][k] == v).all() for k, v in first["state"].items())
    other = load_or_pretrain_base(cfg.model_copy(update={"n_pretrain": 21}), "cpu", tmp_path, log=lambda m: None)
    assert not other["train"].get("reused") and other["key"]["data"] != first["key"]["data"]
    # a pool size changes the base only through the data: pretraining never holds a multi-step question
    bigger_test = load_or_pretrain_base(cfg.model_copy(update={"n_test": 9}), "cpu", tmp_path, log=lambda m: None)
    assert bigger_test["key"] == first["key"]


def test_a_stopped_parallel_run_reports_its_real_wall_time(tmp_path):
    """Seeds that ran in parallel overlap: a stopped run's wall time is start -> last finished seed (from
    started.json), not the sum of the seeds' wall times; its command and workers are the run's own."""
    import json
    import os

    from lema.lab.config import LabConfig
    from lema.lab.run import interrupted_meta

    t0 = 1_000_000.0
    (tmp_path / "started.json").write_text(json.dumps({"command": "lema lab --workers 2", "time": t0, "workers": 2,
                                                       "load": 0.5}))
    for s in (1, 2):
        f = tmp_path / f"seed{s}.json"
        f.write_text(json.dumps({"device": "cpu", "seconds": 2700.0, "cpu_seconds": {"cot": 60.0},
                                 "base": {"train": {"seconds": 1264.0, "cpu_seconds": 264.0, "reused": True}}}))
        os.utime(f, (t0 + 2690 + s, t0 + 2690 + s))
    meta = interrupted_meta(LabConfig(seeds=[1, 2, 3]), tmp_path, [1, 2], "lema lab --report-only")
    assert meta["minutes"] == round(2692 / 60, 2) and meta["workers"] == 2
    assert meta["cpu_minutes"] == 2.0 and meta["command"].startswith("lema lab --workers 2 (stopped after 2 of 3")


def test_a_stopped_run_leaves_reused_seeds_out_of_its_time(tmp_path):
    """Seeds an earlier run finished (named in started.json, or written before it) are in the report but not in
    the stopped run's wall or CPU minutes."""
    import json
    import os

    from lema.lab.config import LabConfig
    from lema.lab.run import interrupted_meta

    t0 = 1_000_000.0
    for s, t in ((1, t0 - 5000), (2, t0 + 1200), (3, t0 + 1500)):
        f = tmp_path / f"seed{s}.json"
        f.write_text(json.dumps({"device": "cpu", "seconds": 1000.0, "cpu_seconds": {"cot": 60.0 * s},
                                 "base": {"train": {"seconds": 1.0, "cpu_seconds": 1.0, "reused": True}}}))
        os.utime(f, (t, t))
    started = {"command": "lema lab --seeds 4", "time": t0, "workers": 2, "load": 0.5}
    for record in ({}, {"reused_seeds": [1]}):  # a started.json from before the field, and one with it
        (tmp_path / "started.json").write_text(json.dumps({**started, **record}))
        meta = interrupted_meta(LabConfig(seeds=[1, 2, 3, 4]), tmp_path, [1, 2, 3], "lema lab --report-only")
        assert meta["reused_seeds"] == [1] and meta["minutes"] == 25.0 and meta["cpu_minutes"] == 5.0


def test_a_new_run_in_a_finished_run_dir_is_reported_as_itself_when_stopped(tmp_path, monkeypatch):
    """More seeds in a finished run's dir: once the new run starts, the old meta.json is gone, so --report-only
    after a stop reports the new run's finished seeds (and its command), not the earlier run."""
    import json

    from lema.lab import run as lab_run
    from lema.lab.config import load_lab_config

    (tmp_path / "meta.json").write_text(json.dumps({"command": "lema lab --seeds 1", "seeds": [1]}))

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lab_run, "load_or_pretrain_base", stopped)
    cfg = load_lab_config(quick=True, seeds=[1, 2], run_dir=str(tmp_path), device="cpu", workers=1)
    with pytest.raises(KeyboardInterrupt):
        lab_run.run_lab(cfg, "lema lab --seeds 2", log=lambda m: None)
    assert not (tmp_path / "meta.json").exists()
    assert json.loads((tmp_path / "started.json").read_text())["command"] == "lema lab --seeds 2"


def test_spread_splits_a_comparison_into_test_questions_and_seed(tmp_path, capsys):
    """`python -m lema.lab.spread` recovers the question part that `lema.stats.compare` measured, and the seed's
    part is the rest of the per-seed SD."""
    import json

    import numpy as np

    from lema import stats
    from lema.lab import spread

    rng = np.random.default_rng(0)
    a = rng.random((5, 400)) < 0.4
    b = np.where(rng.random((5, 400)) < 0.2, ~a, a)
    acc_a, acc_b = a.mean(axis=1).tolist(), b.mean(axis=1).tolist()
    c = stats.compare(acc_a, acc_b, a, b, iters=50)
    sd, question, seed = spread.spread_parts(c)
    assert question == pytest.approx(100 * stats.question_noise_sd(a, b))
    assert sd == pytest.approx(100 * c["sd_seeds"]) and seed ** 2 == pytest.approx(max(sd ** 2 - question ** 2, 0))
    run = tmp_path / "probe"
    run.mkdir()
    arms = {"cot": {"per_seed": acc_a, "mean": float(np.mean(acc_a))},
            "lema": {"per_seed": acc_b, "mean": float(np.mean(acc_b))}}
    (run / "results.json").write_text(json.dumps({"arms": arms, "base_accuracy": [0.08] * 5,
                                                  "comparisons": {"lema - cot": c}}))
    assert spread.main([str(run)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("| `probe/` | 5 | 8.0 |") and f"({question:.2f} / {seed:.2f})" in line
    with pytest.raises(SystemExit, match="nothing/results.json"):
        spread.main([str(tmp_path / "nothing")])
    (run / "results.json").write_text(json.dumps({"arms": arms, "base_accuracy": [0.08] * 5, "comparisons": {}}))
    with pytest.raises(SystemExit, match="probe/results.json: no field 'lema - cot'"):
        spread.main([str(run)])
