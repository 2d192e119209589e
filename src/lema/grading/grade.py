"""``lema grade``: accuracy of any JSONL file of model outputs against gold answers."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from lema.grading.answers import answers_equal, extract_answer, gsm8k_gold, last_boxed
from lema.jsonl import iter_jsonl, write_jsonl


class GradeRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    prediction: str
    answer: str

    @field_validator("answer", mode="before")
    @classmethod
    def _numbers_ok(cls, v):
        return str(v) if isinstance(v, (int, float)) else v


def grade_file(path: str | Path, task: str, out: str | Path | None = None) -> dict:
    graded = []
    correct = 0
    for row in iter_jsonl(path, GradeRow):
        pred = extract_answer(row.prediction, task)
        ok = answers_equal(pred, gold_of(row.answer, task), task)
        correct += ok
        graded.append(row.model_dump() | {"pred_answer": pred, "correct": ok})
    if out:
        write_jsonl(out, graded)
    n = len(graded)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}


def gold_of(answer: str, task: str) -> str:
    """Accept a bare gold answer or a whole reference solution ("... #### 72", "... \\boxed{7}")."""
    if task in ("gsm8k", "lab") and "####" in answer:
        return gsm8k_gold(answer)
    if task == "math" and "\\boxed" in answer:
        return last_boxed(answer) or answer
    return answer
