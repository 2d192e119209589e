"""Typed records for every JSONL artifact the pipeline reads or writes.

One pydantic model per schema, so a malformed row fails with the field named
instead of surfacing later as a KeyError deep inside a stage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["gsm8k", "math", "lab", "time", "text"]  # time/text: users' eval sets only


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(Record):
    """A question with its reference solution, whatever benchmark it came from."""

    id: str
    task: Task
    question: str
    gold_solution: str
    gold_answer: str
    level: str | None = None
    subject: str | None = None


class WrongPath(Record):
    """The input the corrector needs: a reasoning path whose final answer is wrong."""

    id: str
    task: Task
    question: str
    gold_solution: str
    gold_answer: str
    path: str
    generator: str


class SampledPath(WrongPath):
    """One sampled chain of thought with provenance and its grade."""

    model: str
    prompt_hash: str
    sampling: dict[str, Any]
    sample_index: int
    pred_answer: str | None
    correct: bool


class Correction(WrongPath):
    """A wrong path with its three-part correction (paper: LeMa, Sec. 2.1)."""

    incorrect_step: int
    explanation: str
    corrected_solution: str
    final_answer: str
    correction: str
    corrector: str
    correction_prompt_hash: str | None = None


class SFTExample(Record):
    """Prompt/completion pair in the form TRL's SFTTrainer takes for completion-only loss."""

    id: str
    task: Task
    kind: Literal["cot", "correction"]
    prompt: str
    completion: str
    prompt_hash: str | None = None


class EvalRow(Record):
    """One graded greedy answer on an evaluation question."""

    id: str
    task: Task
    eval_set: str
    model: str
    question: str
    gold_answer: str
    prediction: str
    pred_answer: str | None
    extracted: bool
    correct: bool
    level: str | None = None
    subject: str | None = None
    prompt_hash: str | None = None
    math_verify_correct: bool | None = None  # LaTeX sets: math-verify's verdict on the whole text (audit)
    grader_disagreement: bool | None = None  # it differs from `correct`; such rows go to disagreements.jsonl


class Quarantined(Record):
    """A rejected input row, kept with the reasons it was rejected."""

    stage: str
    reasons: list[str]
    record: dict[str, Any]
    source: str | None = None


class StageReport(BaseModel):
    """Counts in and out of a stage, written next to its outputs and printed."""

    stage: str
    n_in: int
    n_out: int
    n_quarantined: int = 0
    details: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0
