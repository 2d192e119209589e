"""The reference corrector: corrections built from the reference solution, no LLM.

It re-checks each step's arithmetic, else finds the first step whose result is
not a quantity of the reference solution, and continues from there with the
reference solution.  Paths it cannot localise are reported, never forced into a
correction.  It is the offline default and the free half of the hybrid corrector.
"""

from __future__ import annotations

import re

from lema.grading.answers import answers_equal, extract_answer, numbers_in
from lema.grading.arith import first_slip, fmt
from lema.grading.steps import format_steps, solution_steps, split_steps
from lema.prompts import load_prompt
from lema.records import Correction, WrongPath
from lema.stages.correct.task import Outcome, render_correction


def _step_result(step: str, task: str) -> str | None:
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


def _is_answer_step(step: str) -> bool:
    return bool(re.search(r"(?i)\banswer\b\s*(?:is|:)|\\boxed|####", step))


class ReferenceCorrector:
    """Deterministic corrector built from the reference solution (no LLM, no cost)."""

    name = "reference"

    def __init__(self) -> None:
        self.prompt_hash = load_prompt("correction").hash(0)

    def correct(self, paths: list[WrongPath]) -> list[Outcome]:
        return [self.correct_one(p) for p in paths]

    def correct_one(self, wp: WrongPath) -> Outcome:
        steps = split_steps(wp.path)
        if not steps:
            return Outcome(None, "empty path: no steps to check")
        gold_steps = solution_steps(wp.gold_solution, wp.gold_answer, wp.task)
        quantities = set(numbers_in(wp.question)) | set(numbers_in(wp.gold_solution))
        quantities |= {n for s in gold_steps for n in numbers_in(s)}
        found, checked, kind = None, 0, None
        for k, step in enumerate(steps, start=1):
            slip = first_slip(step)
            if slip is not None:
                kind = "arithmetic"
                found = (k, f"Step {k} claims {slip.describe()}, but {slip.expression} is "
                            f"{fmt(slip.actual)}. Every later step inherits this miscalculation.")
                break
            value = _step_result(step, wp.task)
            if value is None:
                continue
            checked += 1
            if _is_answer_step(step):
                if not answers_equal(extract_answer(step, wp.task), wp.gold_answer, wp.task):
                    kind = "answer"
                    found = (k, f"Step {k} concludes that the answer is {value}, but the quantities "
                                f"established so far do not lead to it: the question asks for a different "
                                f"quantity, and the reasoning stops before computing it.")
                break
            if value not in quantities:
                kind = "quantity"
                found = (k, None)
                break
        if found is None and checked == 0:
            return Outcome(None, "could not localise: no step states a result to check")
        if found is None:
            return Outcome(None, "could not localise: every step checks out against the reference quantities")
        k, explanation = found
        earlier = {v for s in steps[: k - 1] if (v := _step_result(s, wp.task)) is not None}
        body = gold_steps[:-1]
        remaining = [s for s in body if _step_result(s, wp.task) not in earlier]
        continuation = remaining + [gold_steps[-1]]
        if explanation is None:
            value = _step_result(steps[k - 1], wp.task)
            first = continuation[0]
            explanation = (f"Step {k} arrives at {value}, which no correct solution of this problem "
                           f"passes through: it misreads how the quantities relate. At this point the "
                           f"solution should instead reason: {first.rstrip('.')}.")
        corrected = format_steps(continuation, start=k)
        return Outcome(Correction(**wp.model_dump(), incorrect_step=k, explanation=explanation,
                                  corrected_solution=corrected, final_answer=wp.gold_answer,
                                  correction=render_correction(k, explanation, corrected),
                                  corrector=self.name, correction_prompt_hash=self.prompt_hash), kind=kind)
