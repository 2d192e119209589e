"""The reference corrector: corrections built from the reference solution, no LLM.

It re-checks each step's arithmetic, else finds the first step whose result is
not a quantity of the reference solution (``lema.grading.step_check.locate``, which
also names the error type), and continues from there with the reference solution.
Paths it cannot localise are reported, never forced into a correction.  It is the
offline default and the free half of the hybrid corrector.
"""

from __future__ import annotations

from lema.grading.step_check import locate, reference_quantities, step_result
from lema.grading.steps import format_steps, solution_steps, split_steps
from lema.prompts import load_prompt
from lema.records import Correction, WrongPath
from lema.stages.correct.task import Outcome, render_correction


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
        check = locate(steps, gold_steps, reference_quantities(wp.question, wp.gold_solution, gold_steps),
                       wp.gold_answer, wp.task)
        if not check.decided:
            return Outcome(None, f"could not localise: {check.reason}")
        k = check.step
        if check.kind == "arithmetic":
            explanation = f"{check.reason}. Every later step inherits this miscalculation."
        elif check.kind == "answer":
            explanation = (f"Step {k} concludes that the answer is {step_result(steps[k - 1], wp.task)}, but the "
                           f"quantities established so far do not lead to it: the question asks for a different "
                           f"quantity, and the reasoning stops before computing it.")
        else:
            explanation = None
        earlier = {v for s in steps[: k - 1] if (v := step_result(s, wp.task)) is not None}
        body = gold_steps[:-1]
        remaining = [s for s in body if step_result(s, wp.task) not in earlier]
        continuation = remaining + [gold_steps[-1]]
        if explanation is None:
            value = step_result(steps[k - 1], wp.task)
            first = continuation[0]
            explanation = (f"Step {k} arrives at {value}, which no correct solution of this problem "
                           f"passes through: it misreads how the quantities relate. At this point the "
                           f"solution should instead reason: {first.rstrip('.')}.")
        corrected = format_steps(continuation, start=k)
        return Outcome(Correction(**wp.model_dump(), incorrect_step=k, explanation=explanation,
                                  corrected_solution=corrected, final_answer=wp.gold_answer,
                                  correction=render_correction(k, explanation, corrected),
                                  corrector=self.name, correction_prompt_hash=self.prompt_hash,
                                  error_type=check.error_type), kind=check.kind)
