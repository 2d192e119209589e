"""``lema grade``: accuracy of any JSONL file of model outputs against gold answers."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from lema.grading.answers import answers_equal, extract_answer, format_time, gsm8k_gold, last_boxed, read_time
from lema.grading.numbers import DEFAULT_MIN_PLACES, NotANumber, format_number, read_gold
from lema.jsonl import DataError, iter_numbered, write_jsonl


class GradeRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    prediction: str
    answer: str

    @field_validator("answer", mode="before")
    @classmethod
    def _numbers_ok(cls, v):
        return repr(v) if isinstance(v, float) else str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def usable_gold(answer: str, task: str) -> str:
    """The gold of one row for `task`, or ValueError when it cannot be graded (never cut to a first number)."""
    gold = gold_of(answer, task)
    if task in ("gsm8k", "lab"):
        return format_number(read_gold(gold))
    if task == "time":
        value = read_time(gold, whole=True)
        if value is None:
            raise ValueError(f"not a time of day: {gold.strip()[:60]!r}")
        return format_time(value)
    if not gold.strip():
        raise ValueError("empty answer")
    return gold


def grade_file(path: str | Path, task: str, out: str | Path | None = None,
               min_places: int | None = DEFAULT_MIN_PLACES) -> dict:
    """Grade every row; an unusable gold or an empty file is a DataError naming file, line and field."""
    graded = []
    correct = 0
    for lineno, row in iter_numbered(path, GradeRow):
        try:
            gold = usable_gold(row.answer, task)
        except (NotANumber, ValueError) as e:
            raise DataError(f"{path}:{lineno}: field 'answer': {e} (task {task})") from None
        pred = extract_answer(row.prediction, task)
        ok = answers_equal(pred, gold, task, min_places=min_places)
        correct += ok
        graded.append(row.model_dump() | {"pred_answer": pred, "correct": ok})
    if not graded:
        raise DataError(f"{path}: no rows to grade (expected JSON lines with 'prediction' and 'answer')")
    if out:
        write_jsonl(out, graded)
    n = len(graded)
    return {"n": n, "correct": correct, "accuracy": correct / n}


def gold_of(answer: str, task: str) -> str:
    """Accept a bare gold answer or a whole reference solution ("... #### 72", "... \\boxed{7}")."""
    if task in ("gsm8k", "lab", "time", "text") and "####" in answer:
        return gsm8k_gold(answer)
    if task == "math" and "\\boxed" in answer:
        return last_boxed(answer) or answer
    return answer
