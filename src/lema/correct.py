"""Correct stage: wrong reasoning path -> (first wrong step, why, corrected solution).

The default *reference corrector* needs no LLM: it re-checks each step's
arithmetic, else finds the first step whose result is not a quantity of the
reference solution, and continues from there with the reference solution.
Paths it cannot localise are reported, never forced into a correction.
An LLM corrector plugs in behind the same ``Corrector`` interface.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .answers import answers_equal, extract_answer, numbers_in
from .arith import first_slip, fmt
from .jsonl import iter_jsonl, write_json, write_jsonl
from .prompts import load_prompt
from .records import Correction, Quarantined, StageReport, WrongPath
from .steps import answer_step, format_steps, solution_steps, split_steps


@dataclass
class Outcome:
    correction: Correction | None
    reason: str | None = None
    kind: str | None = None  # reference corrector: "arithmetic", "quantity" or "answer"


class Corrector(Protocol):
    name: str

    def correct(self, paths: list[WrongPath]) -> list[Outcome]: ...


def render_correction(step: int, explanation: str, corrected_solution: str) -> str:
    return f"Incorrect Step: Step {step}.\nExplanation: {explanation}\nCorrect Solution:\n{corrected_solution}"


_PART = re.compile(r"(?im)^[\s>#*_]*(incorrect\s*step|explanation|correct(?:ed)?\s*solution)[\s*_]*[:：]?[\s*_]*")


@dataclass
class ParsedCorrection:
    incorrect_step: int | None
    explanation: str
    corrected_solution: str


def parse_correction(text: str) -> ParsedCorrection:
    """Three parts of a correction, tolerant of case, spacing, markdown and "Step 2" vs "step 2:"."""
    parts: dict[str, str] = {}
    marks = list(_PART.finditer(text))
    for i, m in enumerate(marks):
        key = re.sub(r"\s+", " ", m.group(1).lower())
        key = "incorrect" if key.startswith("incorrect") else ("explanation" if key.startswith("expl") else "solution")
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        parts.setdefault(key, text[m.end() : end].strip())
    step = None
    m = re.search(r"(?i)(?:step\s*)?(\d+)", parts.get("incorrect", ""))
    if m:
        step = int(m.group(1))
    return ParsedCorrection(step, parts.get("explanation", "").strip(" *"), parts.get("solution", "").strip())


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


def make_corrector(kind: str, **options) -> Corrector:
    if kind == "reference":
        return ReferenceCorrector()
    if kind in ("llm", "hybrid"):
        from .llm_corrector import LLMCorrector  # optional: needs an endpoint

        return LLMCorrector(hybrid=(kind == "hybrid"), **options)
    raise ValueError(f"unknown corrector {kind!r} (expected reference, llm or hybrid)")


def run_correct(input_path: str | Path, output_path: str | Path, quarantine_path: str | Path,
                corrector: Corrector, report_path: str | Path | None = None) -> StageReport:
    """Correct every wrong path in a JSONL file; unlocalised ones go to quarantine with the reason."""
    t0 = time.time()
    paths = list(iter_jsonl(input_path, WrongPath))
    outcomes = corrector.correct(paths)
    corrections, quarantined = [], []
    for wp, out in zip(paths, outcomes, strict=True):
        if out.correction is not None:
            corrections.append(out.correction)
        else:
            quarantined.append(Quarantined(stage="correct", reasons=[out.reason or "no correction"],
                                           record=wp.model_dump(), source=str(input_path)))
    write_jsonl(output_path, corrections)
    write_jsonl(quarantine_path, quarantined)
    reasons = Counter(q.reasons[0].split(":")[0] for q in quarantined)
    extra = corrector.report_details() if hasattr(corrector, "report_details") else {}
    report = StageReport(stage="correct", n_in=len(paths), n_out=len(corrections),
                         n_quarantined=len(quarantined), seconds=time.time() - t0,
                         details={"corrector": corrector.name, "unlocalised_reasons": dict(reasons),
                                  "incorrect_step_histogram": dict(Counter(c.incorrect_step for c in corrections)),
                                  **extra},
                         outputs={"corrections": str(output_path), "quarantine": str(quarantine_path)})
    if report_path:
        write_json(report_path, report)
    return report
