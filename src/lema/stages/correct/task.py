"""The correction task: what a corrector is asked and how its answer is judged.

Pure functions and data, no I/O beyond loading the versioned prompt once: the
task renders a prompt from a wrong path, parses the answer (incorrect step, error
type, explanation, corrected solution) and checks it (step in range, error type
one of ``ERROR_TYPES``, parts present, final answer equal to gold).  Who produces the
answer (the reference corrector, an LLM behind ``lema.llm.transport``) is passed in
from outside, the way distilabel separates a task from its LLM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Protocol

from lema.grading.answers import answers_equal, extract_answer
from lema.grading.step_check import ERROR_TYPES
from lema.grading.steps import format_steps, split_steps
from lema.prompts import PromptTemplate, load_prompt
from lema.records import Correction, WrongPath


@dataclass
class Outcome:
    correction: Correction | None
    reason: str | None = None
    kind: str | None = None  # reference corrector: "arithmetic", "quantity" or "answer"


class Corrector(Protocol):
    name: str

    def correct(self, paths: list[WrongPath]) -> list[Outcome]: ...


def render_correction(step: int, explanation: str, corrected_solution: str, error_type: str | None = None) -> str:
    """The correction text; the stored (SFT) form has no error type, the corrector's answer does."""
    kind = f"Error Type: {error_type}\n" if error_type else ""
    return f"Incorrect Step: Step {step}.\n{kind}Explanation: {explanation}\nCorrect Solution:\n{corrected_solution}"


_PART = re.compile(r"(?im)^[\s>#*_]*(incorrect\s*step|error\s*type|explanation|correct(?:ed)?\s*solution)"
                   r"[\s*_]*[:：]?[\s*_]*")


@dataclass
class ParsedCorrection:
    incorrect_step: int | None
    explanation: str
    corrected_solution: str
    error_type: str | None = None  # as written, normalised (lowercase, no markup); None when absent


def normalise_error_type(text: str) -> str | None:
    """'**Wrong Operation.**' -> 'wrong operation'; None for an empty part."""
    t = re.sub(r"[*_`\"'.]+", " ", text.split("\n")[0]).strip(" -–:").lower()
    t = re.sub(r"\s+", " ", t.replace("readout", "read-out").replace("read out", "read-out"))
    return t or None


def parse_correction(text: str) -> ParsedCorrection:
    """Three parts of a correction, tolerant of case, spacing, markdown and "Step 2" vs "step 2:"."""
    parts: dict[str, str] = {}
    marks = list(_PART.finditer(text))
    for i, m in enumerate(marks):
        key = re.sub(r"\s+", " ", m.group(1).lower())
        key = ("incorrect" if key.startswith("incorrect") else "error" if key.startswith("error")
               else "explanation" if key.startswith("expl") else "solution")
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        parts.setdefault(key, text[m.end() : end].strip())
    step = None
    m = re.search(r"(?i)(?:step\s*)?(\d+)", parts.get("incorrect", ""))
    if m:
        step = int(m.group(1))
    return ParsedCorrection(step, parts.get("explanation", "").strip(" *"), parts.get("solution", "").strip(),
                            normalise_error_type(parts.get("error", "")))


def check_correction(text: str, wp: WrongPath, corrector: str = "llm",
                     prompt_hash: str | None = None) -> tuple[Correction | None, list[str]]:
    """Parse an answer; return the correction or the reasons it is unusable."""
    parsed = parse_correction(text)
    n_steps = len(split_steps(wp.path))
    reasons = []
    if parsed.incorrect_step is None:
        reasons.append("no 'Incorrect Step' part")
    elif not 1 <= parsed.incorrect_step <= max(n_steps, 1):
        reasons.append(f"incorrect step {parsed.incorrect_step} outside the path's {n_steps} steps")
    if parsed.error_type is None:
        reasons.append("no 'Error Type' part")
    elif parsed.error_type not in ERROR_TYPES:
        reasons.append(f"error type {parsed.error_type!r} is not one of {', '.join(ERROR_TYPES)}")
    if not parsed.explanation:
        reasons.append("no 'Explanation' part")
    if not parsed.corrected_solution:
        reasons.append("no 'Correct Solution' part")
    pred = extract_answer(parsed.corrected_solution, wp.task) if parsed.corrected_solution else None
    if parsed.corrected_solution and not answers_equal(pred, wp.gold_answer, wp.task):
        reasons.append(f"final answer {pred!r} does not equal gold {wp.gold_answer!r}")
    if reasons:
        return None, reasons
    return Correction(**wp.model_dump(), incorrect_step=parsed.incorrect_step, explanation=parsed.explanation,
                      corrected_solution=parsed.corrected_solution, final_answer=wp.gold_answer,
                      correction=render_correction(parsed.incorrect_step, parsed.explanation,
                                                   parsed.corrected_solution),
                      corrector=corrector, correction_prompt_hash=prompt_hash, error_type=parsed.error_type), []


class CorrectionTask:
    """Wrong path in, correction out: the prompt side and the judging side of one LLM call."""

    inputs: ClassVar[tuple[str, ...]] = ("question", "gold_answer", "path")
    outputs: ClassVar[tuple[str, ...]] = ("incorrect_step", "error_type", "explanation", "corrected_solution")

    def __init__(self, shots: int = 2, prompt: PromptTemplate | None = None):
        self.prompt = prompt or load_prompt("correction")
        self.shots = shots
        self.prompt_hash = self.prompt.hash(shots)

    def render(self, wp: WrongPath) -> str:
        steps = split_steps(wp.path)
        path = format_steps(steps) if steps else wp.path
        return self.prompt.render(shots=self.shots, question=wp.question, gold_answer=wp.gold_answer, path=path)

    def check(self, text: str, wp: WrongPath, corrector: str) -> tuple[Correction | None, list[str]]:
        return check_correction(text, wp, corrector=corrector, prompt_hash=self.prompt_hash)
