"""The step checker: the first wrong step of a wrong path, re-derived without the corrector."""

import random

import pytest

from lema.grading.arith import binary
from lema.grading.step_check import ERROR_TYPES, agreement, check_path, first_wrong_step, score
from lema.jsonl import read_raw
from lema.lab.task import ERROR_TYPES as LAB_ERROR_TYPES
from lema.lab.task import first_mistake, generate, plant
from lema.prompts import load_prompt
from lema.records import WrongPath

from .conftest import FIXTURES

FOREIGN = [WrongPath(**r) for r in read_raw(FIXTURES / "foreign_wrong_paths.jsonl")]
EXPECTED = {r["id"]: r["expected_step"] for r in read_raw(FIXTURES / "foreign_wrong_paths.jsonl")}


@pytest.mark.parametrize("wp", FOREIGN, ids=lambda w: w.id)
def test_checker_finds_the_first_wrong_step_in_other_models_paths(wp):
    check = check_path(wp)
    assert check.step == EXPECTED[wp.id] and check.reason
    assert (check.error_type in ERROR_TYPES) == check.decided


def test_error_type_follows_what_the_step_got_wrong():
    types = {wp.id: check_path(wp).error_type for wp in FOREIGN}
    assert types["gpt-markdown"] == "arithmetic slip"        # 48 / 2 = 26
    assert types["numbered-list"] == "wrong operation"       # 48 * 2 where the reference halves
    assert types["prose"] == "wrong operation"               # 15 + 2 where the reference doubles
    assert types["lema-steps"] == "wrong operand or quantity"


def test_latex_and_uncheckable_paths_are_undecidable_with_a_reason():
    math = first_wrong_step("What is $3 \\cdot 4$?", "$3 \\cdot 4 = 12$.", "12", "Step 1: $3 \\cdot 4 = 13$.", "math")
    assert not math.decided and "math" in math.reason
    none = first_wrong_step("How many?", "2 + 2 = 4\n#### 4", "4", "I think so.\nThe answer is five.", "gsm8k")
    assert not none.decided and none.reason == "no step states a result to check"


def test_agreement_needs_both_steps():
    decided = first_wrong_step("Tom has 3 apples and buys 2. How many?", "3 + 2 = 5\n#### 5", "5",
                               "Step 1: 3 + 2 = 6.\nStep 2: The answer is 6.", "gsm8k")
    assert decided.step == 1 and decided.error_type == "arithmetic slip"
    assert agreement(1, decided) == "agree" and agreement(2, decided) == "disagree"
    assert agreement(1, first_wrong_step("q", "s", "4", "", "gsm8k")) == "undecidable"
    assert agreement(None, decided) == "undecidable"


def test_binary_reads_one_operator():
    assert binary("6 + 2") == (6, "+", 2) and binary("$1,200 x 3") == (1200, "*", 3)
    assert binary("12 \\times 52") == (12, "*", 52) and binary("3") is None


def test_error_types_extend_the_labs_and_the_prompt_lists_them_all():
    assert set(LAB_ERROR_TYPES) <= set(ERROR_TYPES) and {"misread question", "other"} <= set(ERROR_TYPES)
    prompt = load_prompt("correction")
    assert "The error type is exactly one of: " + ", ".join(ERROR_TYPES) + "." in prompt.instruction


def test_checker_on_planted_lab_mistakes_where_the_truth_is_known():
    """Precision and recall of the step on 200 planted mistakes (the lab measures it on real ones)."""
    rng = random.Random(3)
    truth, checks = [], []
    for _ in range(200):
        p = generate(rng)
        path = plant(p, rng.choice(LAB_ERROR_TYPES), rng.randint(1, len(p.steps)), rng)
        truth.append(first_mistake(path, p).step)
        checks.append(first_wrong_step(p.question, p.cot(), str(p.answer), path, "lab"))
    s = score(truth, checks)
    assert s["n"] == 200 and s["precision"] >= 0.9 and s["recall"] >= 0.85 and s["right"] <= s["decided"] < 200
