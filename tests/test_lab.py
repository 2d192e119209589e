"""The synthetic lab task: generator, exact corrector, matched arms, and the quick protocol end to end."""

import json
import operator
import random

import pytest

from lema.answers import extract_answer, is_correct
from lema.lab import LabCorrector, generate, make_splits
from lema.records import WrongPath
from lema.steps import split_steps

from .conftest import ROOT

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


@pytest.fixture(scope="module")
def splits():
    return make_splits(7, n_train=300, n_test=100, n_pool=200, min_steps=2, max_steps=6)


def test_answers_match_their_programs(splits):
    for p in splits["train"] + splits["test"]:
        cur = None
        for op, a, b, r in p.program:
            assert cur is None or a == cur  # each step continues from the previous result
            assert OPS[op](a, b) == r and (op != "/" or a % b == 0)
            cur = r
        assert str(cur) == p.gold_answer and int(p.level) == len(p.program) + 0


def test_no_overlap_between_splits(splits):
    qs = {k: {p.question for p in v} for k, v in splits.items()}
    assert not (qs["train"] & qs["test"] or qs["pool"] & qs["test"] or qs["pool"] & qs["train"])
    assert len(qs["train"]) == 300 and len(qs["test"]) == 100


def test_step_format_parses_with_lema_answers(splits):
    for p in splits["test"]:
        steps = split_steps(p.gold_solution)
        assert len(steps) == len(p.program) + 1 and steps[-1] == f"The answer is {p.gold_answer}."
        assert extract_answer(p.gold_solution, "lab") == p.gold_answer
        assert is_correct(p.gold_solution, p.gold_answer, "lab")


def test_difficulty_knobs_and_seeds():
    rng = random.Random(3)
    probs = [generate(rng, min_steps=3, max_steps=3, max_number=9, distractors=0.0) for _ in range(50)]
    assert all(p.n_steps == 3 for p in probs)
    assert all(len(p.question.split(". ")) == 1 + 3 + 1 for p in probs)  # start, one sentence per op, question
    a = make_splits(5, 20, 10)["test"]
    b = make_splits(5, 20, 10)["test"]
    assert [p.question for p in a] == [p.question for p in b]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_exact_corrector_finds_the_first_wrong_step(splits, k):
    p = next(x for x in splits["train"] if len(x.program) >= 3)
    steps = split_steps(p.gold_solution)
    op, a, b, r = p.program[k - 1]
    steps[k - 1] = steps[k - 1].replace(f"= {r}", f"= {r + 1}")
    path = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps))
    out = LabCorrector().correct_one(WrongPath(**p.model_dump(), path=path, generator="t"))
    c = out.correction
    assert c.incorrect_step == k and out.kind == "arithmetic"
    assert c.corrected_solution.startswith(f"Step {k}: ") and f"= {r}" in c.corrected_solution
    assert is_correct(c.corrected_solution, p.gold_answer, "lab")


def test_exact_corrector_on_a_path_that_stops_early(splits):
    p = next(x for x in splits["train"] if len(x.program) >= 3)
    first = split_steps(p.gold_solution)[0]
    out = LabCorrector().correct_one(WrongPath(**p.model_dump(), path=f"Step 1: {first}", generator="t"))
    assert out.correction.incorrect_step == 2 and out.kind == "missing"


def test_matched_extra_cot_matches_examples_and_tokens():
    from transformers import AutoTokenizer  # noqa: F401  (the tokenizer below stands in for a real one)

    from lema.lab_runner import matched_extra
    from lema.records import SFTExample

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    cands = [SFTExample(id=str(i), task="lab", kind="cot", prompt="q", completion=" ".join(["w"] * (i % 20 + 1)))
             for i in range(200)]
    picked = matched_extra(cands, 30, 30 * 11, Tok())
    assert len(picked) == 30
    assert abs(sum(len(e.completion.split()) for e in picked) - 330) <= 5


@pytest.mark.slow
def test_quick_lab_runs_end_to_end(tmp_path):
    from lema.config import load_config
    from lema.lab_runner import run_lab

    cfg = load_config(ROOT / "configs" / "lab-quick.yaml",
                      {"lab.run_dir": str(tmp_path / "lab"), "lab.report_dir": str(tmp_path / "report"),
                       "register.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    report = run_lab(cfg, command="lema lab --quick", log=lambda m: None)
    text = report.read_text()
    for arm in ("CoT only", "CoT + corrections (LeMa)", "CoT + matched extra CoT", "LeMa without explanations"):
        assert arm in text
    for png in ("accuracy_per_arm.png", "accuracy_vs_steps.png", "mistake_positions.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    seed = results["seeds"][0]
    assert seed["sizes"]["lema"]["examples"] == seed["sizes"]["cot_extra"]["examples"]
    assert seed["sizes"]["lema"]["examples"] == seed["sizes"]["cot"]["examples"] + seed["used"]
    assert 0 <= results["aggregate"]["arms"]["lema"]["mean"] <= 1
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lema-lab")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.params["arm"] for r in runs) == ["cot", "cot_extra", "lema", "lema_no_expl"]
