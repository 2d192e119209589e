"""Re-deriving the first wrong step of a wrong path, independently of any corrector.

Pure functions over text: the first step that states a false arithmetic claim, else the first step whose
result is not a quantity of the question or reference solution, else an answer step that disagrees with the
gold answer.  Numeric tasks only: a MATH (LaTeX) path, or a path with nothing checkable, is *undecidable* and
says why; the validator tags such rows instead of passing them silently.  The reference corrector localises
with the same function, and the lab measures its precision and recall where the true step is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lema.grading.answers import answers_equal, extract_answer, numbers_in
from lema.grading.arith import binary, claims, first_slip, fmt
from lema.grading.steps import solution_steps, split_steps

# The lab's error types (lema.lab.task.ERROR_TYPES) plus two only a reader of the question can name.
ERROR_TYPES = ("arithmetic slip", "wrong operation", "wrong operand or quantity", "skipped step",
               "wrong final read-out", "misread question", "other")
NUMERIC_TASKS = ("gsm8k", "lab")
UNDECIDABLE = "undecidable"
Agreement = Literal["agree", "disagree", "undecidable"]


@dataclass(frozen=True)
class StepCheck:
    """The checker's verdict on one path: the first wrong step (1-based) or None when undecidable."""

    step: int | None
    reason: str
    kind: str | None = None        # what caught it: "arithmetic", "quantity" or "answer"
    error_type: str | None = None  # one of ERROR_TYPES when decided

    @property
    def decided(self) -> bool:
        return self.step is not None


def step_result(step: str, task: str) -> str | None:
    """The value a step arrives at: after its last '=', else its last number."""
    text = re.sub(r"<<[^<>]*>>", "", step)
    if re.match(r"(?i)\W*(?:so\s+|thus\s+|therefore\s+)?the\s+(?:final\s+)?answer", text):
        return extract_answer(text, task)
    if "=" in text:
        tail_nums = numbers_in(text[text.rfind("=") + 1 :])
        if tail_nums:
            return tail_nums[0]
    nums = numbers_in(text)
    return nums[-1] if nums else None


def is_answer_step(step: str) -> bool:
    return bool(re.search(r"(?i)\banswer\b\s*(?:is|:)|\\boxed|####", step))


def reference_quantities(question: str, gold_solution: str, gold_steps: list[str]) -> set[str]:
    """Every number the question and the reference solution mention: what a correct path may pass through."""
    return set(numbers_in(question)) | set(numbers_in(gold_solution)) | {n for s in gold_steps for n in numbers_in(s)}


def locate(steps: list[str], gold_steps: list[str], quantities: set[str], gold_answer: str,
           task: str) -> StepCheck:
    """The first wrong step by the three checks, on any task; undecidable when none fires.  A step that
    calculates must arrive at a number of the reference solution (a question's number is an input, not a result
    the solution computes); a step that only states a number may restate any reference quantity."""
    computed = {n for s in gold_steps for n in numbers_in(s)}
    checked = 0
    for k, step in enumerate(steps, start=1):
        slip = first_slip(step)
        if slip is not None:
            return StepCheck(k, f"Step {k} claims {slip.describe()}, but {slip.expression} is {fmt(slip.actual)}",
                             "arithmetic", "arithmetic slip")
        value = step_result(step, task)
        if value is None:
            continue
        checked += 1
        if is_answer_step(step):
            if not answers_equal(extract_answer(step, task), gold_answer, task):
                short = k - 1 < len(gold_steps) - 1  # fewer steps before it than the reference takes
                return StepCheck(k, f"Step {k} reads out {value}, but every earlier result is a reference "
                                    f"quantity and the answer is {gold_answer}"
                                    + (f" ({len(gold_steps) - 1} steps lead to it)" if short else ""),
                                 "answer", "skipped step" if short else "wrong final read-out")
            return StepCheck(None, f"step {k} reads out the gold answer: no step is wrong")
        if value not in (computed if claims(step) else quantities):
            return StepCheck(k, f"Step {k} arrives at {value}, which is neither in the question nor in the "
                                f"reference solution", "quantity", _quantity_error(step, quantities, gold_steps))
    if checked == 0:
        return StepCheck(None, "no step states a result to check")
    return StepCheck(None, "every step checks out against the reference quantities")


def _quantity_error(step: str, quantities: set[str], gold_steps: list[str]) -> str:
    """Which error a correct-looking calculation on the wrong numbers is: the operands and operator of the
    step's claim compared with the reference solution's claims."""
    ops = [b for c in claims(step) if (b := binary(c.expression)) is not None]
    if not ops:
        return "wrong operand or quantity"
    x, op, y = ops[-1]
    gold = [b for s in gold_steps for c in claims(s) if (b := binary(c.expression)) is not None]
    known = quantities | {fmt(v) for gx, _, gy in gold for v in (gx, gy)}  # "48/2" reads as 24 in prose
    if not {fmt(x), fmt(y)} <= known:
        return "wrong operand or quantity"
    if any({gx, gy} == {x, y} and gop != op for gx, gop, gy in gold):
        return "wrong operation"
    if any(gop == op and gy == y and gx != x for gx, gop, gy in gold):
        return "skipped step"  # a later operation applied before the one the question describes first
    return "wrong operand or quantity"


def first_wrong_step(question: str, gold_solution: str, gold_answer: str, path: str, task: str) -> StepCheck:
    """The checker: the first wrong step of a wrong path on a numeric task, or undecidable with the reason."""
    if task not in NUMERIC_TASKS:
        return StepCheck(None, f"{task} paths are LaTeX, not numeric claims: not checked")
    if not numbers_in(gold_answer):
        return StepCheck(None, f"gold answer {gold_answer!r} is not a number")
    steps = split_steps(path)
    if not steps:
        return StepCheck(None, "empty path: no steps to check")
    gold_steps = solution_steps(gold_solution, gold_answer, task)
    return locate(steps, gold_steps, reference_quantities(question, gold_solution, gold_steps), gold_answer, task)


def check_path(row) -> StepCheck:
    """`first_wrong_step` on any record with question, gold_solution, gold_answer, path and task."""
    return first_wrong_step(row.question, row.gold_solution, row.gold_answer, row.path, row.task)


def agreement(corrector_step: int | None, check: StepCheck) -> Agreement:
    """Whether the corrector's first wrong step is the checker's; undecidable when either names none."""
    if corrector_step is None or not check.decided:
        return UNDECIDABLE
    return "agree" if corrector_step == check.step else "disagree"


def score(truth: list[int], checks: list[StepCheck]) -> dict[str, float | int]:
    """The checker against known first wrong steps: precision over the paths it decides, recall over all."""
    if len(truth) != len(checks):
        raise ValueError(f"{len(truth)} true steps for {len(checks)} checks")
    decided = sum(c.decided for c in checks)
    right = sum(c.step == t for t, c in zip(truth, checks))
    return {"n": len(checks), "decided": decided, "right": right,
            "precision": right / decided if decided else float("nan"),
            "recall": right / len(checks) if checks else float("nan")}


__all__ = ["ERROR_TYPES", "NUMERIC_TASKS", "UNDECIDABLE", "Agreement", "StepCheck", "agreement",
           "check_path", "first_wrong_step", "score", "is_answer_step", "locate", "reference_quantities", "step_result"]
