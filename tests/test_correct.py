import json
import subprocess
import sys

import pytest

from lema.grading.answers import is_correct
from lema.grading.arith import claims, first_slip
from lema.grading.step_check import ERROR_TYPES, check_path
from lema.grading.steps import format_steps, split_steps
from lema.jsonl import read_jsonl, read_raw
from lema.records import Correction, WrongPath
from lema.stages.correct.correct import ReferenceCorrector, parse_correction, render_correction, run_correct
from lema.stages.correct.task import CorrectionTask

from .conftest import FIXTURES

FOREIGN = FIXTURES / "foreign_wrong_paths.jsonl"


@pytest.mark.parametrize("text,n", [
    ("Step 1: a = 1\nStep 2: b = 2\nStep 3: The answer is 3.", 3),
    ("**Step 1:** x\n\n**Step 2**: y", 2),
    ("Sure!\n1. first 1\n2. second 2\nThe answer is 2.", 3),
    ("She had 5 apples. She ate 2.5 of them. Now she has 2.5 left.", 3),
    ("The area is $3.5 \\cdot 2 = 7$. So the answer is $7$.", 2),
    ("", 0),
])
def test_split_steps_styles(text, n):
    assert len(split_steps(text)) == n


def test_arithmetic_claims():
    assert first_slip("so 3 x 4 = 13 apples").describe() == "3 x 4 = 13"
    assert first_slip("(3 + 4) * 2 = 14 and 10 / 3 = 3.33") is None
    assert claims("20% of 50 = 10") == []  # prose is not an expression
    assert claims("x = 5") == []
    assert first_slip("$1,200 - 200 = $1,100").describe() == "1,200 - 200 = 1100"


@pytest.mark.parametrize("row", [r for r in read_raw(FOREIGN)], ids=lambda r: r["id"])
def test_reference_corrector_on_other_models_outputs(row):
    out = ReferenceCorrector().correct_one(WrongPath(**row))
    if row["expected_step"] is None:
        assert out.correction is None and out.reason
        return
    c = out.correction
    assert c is not None, out.reason
    assert c.incorrect_step == row["expected_step"]
    assert c.corrected_solution.startswith(f"Step {row['expected_step']}:")
    assert is_correct(c.corrected_solution, row["gold_answer"], "gsm8k")
    assert c.final_answer == row["gold_answer"]
    if row["expected_kind"] == "arithmetic":
        assert "claims" in c.explanation and " but " in c.explanation and c.error_type == "arithmetic slip"
    assert c.error_type in ERROR_TYPES and c.error_type == check_path(WrongPath(**row)).error_type
    parsed = parse_correction(c.correction)
    assert (parsed.incorrect_step, parsed.explanation, parsed.corrected_solution) == (
        c.incorrect_step, c.explanation, c.corrected_solution)


@pytest.mark.parametrize("text", [
    "Incorrect Step: Step 2.\nExplanation: wrong sum.\nCorrect Solution:\nStep 2: 1 + 1 = 2\nStep 3: The answer is 2.",
    "**Incorrect step:** step 2:\n**Explanation:** wrong sum.\n**Correct solution:**\nStep 2: 1 + 1 = 2\nStep 3: The answer is 2.",
    "incorrect step 2\nEXPLANATION - wrong sum.\nCorrected Solution:\nStep 2: 1 + 1 = 2\nStep 3: The answer is 2.",
    "## Incorrect Step: 2\n## Explanation: wrong sum.\n## Correct Solution:\nStep 2: 1 + 1 = 2\nStep 3: The answer is 2.",
])
def test_parse_correction_is_tolerant(text):
    p = parse_correction(text)
    assert p.incorrect_step == 2
    assert p.explanation.strip(" -") == "wrong sum."
    assert p.corrected_solution.startswith("Step 2: 1 + 1 = 2")


@pytest.mark.parametrize("line,parsed,problem", [
    ("Error Type: wrong operation", "wrong operation", None),
    ("**Error type:** *Wrong Final Read-out.*", "wrong final read-out", None),
    ("ERROR TYPE - Arithmetic slip", "arithmetic slip", None),
    ("", None, "no 'Error Type' part"),
    ("Error Type: carelessness", "carelessness", "'carelessness' is not one of arithmetic slip, wrong operation"),
])
def test_error_type_is_parsed_and_checked_against_the_fixed_list(line, parsed, problem):
    wp = read_jsonl(FOREIGN, WrongPath)[0]
    text = (f"Incorrect Step: Step 2.\n{line}\nExplanation: 48 / 2 is 24, not 26.\nCorrect Solution:\n"
            f"Step 2: 48 / 2 = 24.\nStep 3: The answer is {wp.gold_answer}.")
    assert parse_correction(text).error_type == parsed and parse_correction(text).incorrect_step == 2
    c, problems = CorrectionTask().check(text, wp, corrector="llm")
    if problem is None:
        assert problems == [] and c.error_type == parsed
        assert parse_correction(c.correction).error_type is None  # the stored (SFT) text has no type line
    else:
        assert c is None and len(problems) == 1 and problem in problems[0]


def test_parse_correction_missing_parts():
    p = parse_correction("I think the answer is 4.")
    assert p.incorrect_step is None and p.explanation == "" and p.corrected_solution == ""


def test_correct_cli_on_any_file(tmp_path):
    out, quarantine = tmp_path / "out.jsonl", tmp_path / "q.jsonl"
    res = subprocess.run([sys.executable, "-m", "lema.cli", "correct", "--corrector", "reference", "--input",
                          str(FOREIGN), "--output", str(out), "--quarantine", str(quarantine)],
                         capture_output=True, text=True, check=True)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    n = len(read_raw(FOREIGN))
    assert report["n_in"] == n and report["n_out"] + report["n_quarantined"] == n
    corrections = read_jsonl(out, Correction)
    assert len(corrections) == report["n_out"] == 6
    q = read_raw(quarantine)
    assert {r["record"]["id"] for r in q} == {"empty", "no-numbers"}
    assert all(r["reasons"] and r["stage"] == "correct" for r in q)
    assert report["details"]["incorrect_step_histogram"] == {"2": 4, "3": 2}
    assert report["details"]["error_types"]["foreign:prose"] == {"wrong operation": 1}
    assert sum(n for g in report["details"]["error_types"].values() for n in g.values()) == 6


def test_run_correct_counts_in_equal_out(tmp_path):
    rows = read_jsonl(FOREIGN, WrongPath)
    report = run_correct(FOREIGN, tmp_path / "c.jsonl", tmp_path / "q.jsonl", ReferenceCorrector())
    assert report.n_in == len(rows) == report.n_out + report.n_quarantined


def test_render_format_round_trip():
    text = render_correction(3, "because.", format_steps(["x = 1", "The answer is 1."], start=3))
    assert text.splitlines()[0] == "Incorrect Step: Step 3."
    assert parse_correction(text).incorrect_step == 3


def test_correction_task_renders_and_judges_without_io():
    task = CorrectionTask(shots=1)
    wp = read_jsonl(FOREIGN, WrongPath)[0]
    prompt = task.render(wp)
    assert wp.question in prompt and f"Correct answer: {wp.gold_answer}" in prompt
    assert set(task.inputs) <= set(WrongPath.model_fields) and set(task.outputs) <= set(Correction.model_fields)
    good = render_correction(1, "It misreads the question.", f"Step 1: The answer is {wp.gold_answer}.",
                             error_type="misread question")
    c, problems = task.check(good, wp, corrector="any")
    assert problems == [] and c.corrector == "any" and c.correction_prompt_hash == task.prompt_hash
    c, problems = task.check(render_correction(9, "x", "Step 9: The answer is -1."), wp, corrector="any")
    assert c is None and any("outside the path" in p for p in problems) and any("does not equal gold" in p
                                                                               for p in problems)


def test_task_and_stage_modules_stay_apart():
    """The task needs no client, and the LLM corrector does not import the stage module (no import circle)."""
    code = ("import sys, lema.stages.correct.task, lema.stages.correct.reference; assert 'openai' not in sys.modules; "
            "import lema.stages.correct.llm; assert 'lema.stages.correct.correct' not in sys.modules, 'import circle'")
    subprocess.run([sys.executable, "-c", code], check=True)
