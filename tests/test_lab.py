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
    return task.make_pools(7, {"test": 150, "pretrain": 300, "train": 200, "collect": 300, "extra": 1500})


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
    again = task.make_pools(7, {"test": 150, "pretrain": 10})
    assert [p.question for p in again["test"]] == [p.question for p in pools["test"]]


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


@pytest.mark.slow
def test_quick_lab_with_two_rounds_end_to_end(tmp_path, capsys):
    from lema.cli import main

    out, run = tmp_path / "report", tmp_path / "run"
    rc = main(["lab", "--quick", "--seeds", "2", "--workers", "2", "--rounds", "2", "--out", str(out),
               "--run-dir", str(run)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [1, 2] and len(res["base_accuracy"]) == 2
    for arm in arms.ARMS:
        r = res["arms"][arm]
        assert len(r["per_seed"]) == 2 and r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    assert abs(res["token_ratio"]["cot_extra_tokens"]["mean"] - 1) <= 0.02
    assert {(r["round"], r["arm"]) for r in res["rounds"]} == {(k, c) for k in (0, 1, 2)
                                                              for c in ("lema", "self_train", "cot_extra")}
    assert "lema - cot" in res["comparisons"] and "MDE" in (out / "report.md").read_text()
    assert res["command"].startswith("lema lab --quick") and res["minutes"] > 0
    for png in ("accuracy_per_arm.png", "rounds.png"):
        assert (out / png).stat().st_size > 1000
    # the report can be rewritten from the run's seed files (a run copied back from a GPU machine)
    assert main(["lab", "--report-only", "--run-dir", str(run), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["arms"] == res["arms"] and again["rounds"] == res["rounds"] and again["command"] == res["command"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lema-lab").experiment_id])
    assert sorted({r.data.params["arm"] for r in runs}) == sorted(["base", *arms.ARMS, "rounds/lema",
                                                                   "rounds/self_train", "rounds/cot_extra"])


def test_configs_lab_yaml_is_the_default_and_bad_settings_name_the_file(tmp_path):
    from lema.config import Config
    from lema.lab.config import LabConfig, load_lab_config

    from .conftest import ROOT

    assert load_lab_config(ROOT / "configs" / "lab.yaml") == LabConfig() == Config().lab
    bad = tmp_path / "lab.yaml"
    bad.write_text("lab:\n  n_tset: 3\n")
    with pytest.raises(ValueError, match="(?s)lab.yaml.*n_tset"):
        load_lab_config(bad)
