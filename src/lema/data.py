"""Benchmark data -> one typed ``Problem`` record.

Bundled copies (``data/``) are the default because this machine has no hub;
``source: hub`` loads the same sets with ``datasets.load_dataset`` for users
with a network.  MATH: train on the 4,500 test problems outside MATH500,
evaluate on MATH500 (the PRM800K split), never the reverse.  SVAMP is a bundled
out-of-distribution evaluation set (never training data).  Users' own sets
(``EvalSetConfig``: a JSONL file or hub dataset with a declared field mapping)
become the same ``Problem`` records, numeric ones graded like GSM8K, LaTeX ones
like MATH.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lema.config import EvalFields, EvalSetConfig
from lema.grading.answers import format_time, gsm8k_gold, last_boxed, normalize_text, read_time
from lema.grading.numbers import format_number, read_gold
from lema.jsonl import DataError, iter_jsonl, iter_objects
from lema.records import Problem


class _GSM8KRow(BaseModel):
    question: str
    answer: str


class _SvampRow(BaseModel):
    ID: str
    Body: str
    Question: str
    Equation: str
    Answer: float
    Type: str | None = None


class _MathRow(BaseModel):
    problem: str
    solution: str
    level: str | int | None = None
    type: str | None = None
    subject: str | None = None
    answer: str | None = None
    unique_id: str | None = None
    idx: int | None = None


# Hub ids for users with a network (same content as the bundled copies).
HUB = {
    "gsm8k": ("openai/gsm8k", "main"),
    "math": ("EleutherAI/hendrycks_math", None),
    "math500": ("HuggingFaceH4/MATH-500", None),
}

SPLITS = ("gsm8k/train", "gsm8k/test", "math/train", "math500/test", "math/test", "svamp/test")


def _qid(task: str, text: str) -> str:
    return f"{task}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _gsm8k(rows, where: str) -> list[Problem]:
    out = []
    for i, r in rows:
        try:
            gold = gsm8k_gold(r.answer)
        except ValueError as e:
            raise DataError(f"{where}:{i}: field 'answer': {e}") from None
        out.append(Problem(id=_qid("gsm8k", r.question), task="gsm8k", question=r.question,
                           gold_solution=r.answer, gold_answer=gold))
    return out


def _math(rows, where: str) -> list[Problem]:
    out = []
    for i, r in rows:
        gold = r.answer if r.answer is not None else last_boxed(r.solution)
        if gold is None:
            raise DataError(f"{where}:{i}: field 'solution': no \\boxed{{}} final answer")
        level = r.level if r.level is None or isinstance(r.level, str) else f"Level {r.level}"
        out.append(Problem(id=_qid("math", r.problem), task="math", question=r.problem,
                           gold_solution=r.solution, gold_answer=gold.strip(), level=level,
                           subject=r.subject or r.type))
    return out


def _enumerate_file(path: Path, model):
    return enumerate(iter_jsonl(path, model), start=1)


def load_bundled(split: str, data_dir: str | Path = "data") -> list[Problem]:
    """One of SPLITS from the bundled files; 'math/train' is MATH test minus MATH500."""
    d = Path(data_dir)
    if split == "gsm8k/train" or split == "gsm8k/test":
        path = d / f"{split}.jsonl"
        return _gsm8k(_enumerate_file(path, _GSM8KRow), str(path))
    if split == "math500/test":
        path = d / "math500/test.jsonl"
        return _math(_enumerate_file(path, _MathRow), str(path))
    if split == "svamp/test":
        path = d / "svamp/test.jsonl"
        return [Problem(id=f"svamp-{r.ID}", task="gsm8k", question=f"{r.Body.strip()} {r.Question.strip()}",
                        gold_solution=f"{r.Equation} = {r.Answer}", gold_answer=numeric_gold(r.Answer), subject=r.Type)
                for r in iter_jsonl(path, _SvampRow)]
    if split in ("math/test", "math/train"):
        path = d / "math/test.jsonl"
        problems = _math(_enumerate_file(path, _MathRow), str(path))
        if split == "math/test":
            return problems
        held_out = {p.question for p in load_bundled("math500/test", d)}
        return [p for p in problems if p.question not in held_out]
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def load_hub(split: str) -> list[Problem]:  # pragma: no cover - needs a network
    """Same splits from the Hugging Face hub."""
    from datasets import concatenate_datasets, get_dataset_config_names, load_dataset

    task, part = split.split("/")
    if task == "gsm8k":
        ds = load_dataset(*HUB["gsm8k"], split=part)
        return _gsm8k(((i, _GSM8KRow(**r)) for i, r in enumerate(ds, 1)), f"hub:{HUB['gsm8k'][0]}")
    if task == "math500":
        ds = load_dataset(HUB["math500"][0], split="test")
        return _math(((i, _MathRow(**r)) for i, r in enumerate(ds, 1)), f"hub:{HUB['math500'][0]}")
    name = HUB["math"][0]
    ds = concatenate_datasets([load_dataset(name, c, split=part if part == "train" else "test")
                               for c in get_dataset_config_names(name)])
    return _math(((i, _MathRow(**r)) for i, r in enumerate(ds, 1)), f"hub:{name}")


def load_split(split: str, source: str = "bundled", data_dir: str | Path = "data",
               limit: int | None = None) -> list[Problem]:
    # SVAMP has no hub copy with the same content: it is always read from the bundled file.
    problems = load_hub(split) if source == "hub" and split in HUB_SPLITS else load_bundled(split, data_dir)
    return problems[:limit] if limit is not None else problems


HUB_SPLITS = ("gsm8k/train", "gsm8k/test", "math/train", "math500/test", "math/test")


def numeric_gold(value: Any) -> str:
    """Exact canonical text of a numeric gold: 145.0 -> "145", "1,200" -> "1200", "#### 72" -> "72",
    3244047.0999999996 -> "3244047.1"; a gold that is not one number as a whole raises ValueError."""
    return format_number(read_gold(value))


_TASK = {"numeric": "gsm8k", "latex": "math", "time": "time", "text": "text"}


def gold_for(raw: Any, answer_type: str) -> str:
    """The canonical gold of one row for its answer type; ValueError says why a value is unusable."""
    if answer_type == "numeric":
        return numeric_gold(raw)
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool) or not str(raw).strip():
        raise ValueError(f"expected a non-empty answer, got {raw!r}"[:200])
    raw = str(raw)
    if answer_type == "time":
        value = read_time(gsm8k_gold(raw) if "####" in raw else raw, whole=True)
        if value is None:
            raise ValueError(f"not a time of day: {raw.strip()[:60]!r} (expected e.g. 5:45, 3:30 p.m., noon)")
        return format_time(value)
    if answer_type == "text":
        text = gsm8k_gold(raw) if "####" in raw else raw
        if not normalize_text(text):
            raise ValueError(f"empty after normalisation: {raw[:60]!r}")
        return text.strip()
    return (last_boxed(raw) or raw).strip() if "\\boxed" in raw else raw.strip()


def _field(row: dict, name: str, where: str, role: str) -> Any:
    if name not in row:
        raise DataError(f"{where}: field '{name}': missing (declared as the {role} field)")
    return row[name]


Skipped = list[tuple[int, str]]  # (line, why) of rows dropped by `on_invalid: skip`


def problems_from_rows(rows: Iterable[tuple[int, dict]], name: str, spec: EvalSetConfig, where: str,
                       skipped: Skipped | None = None, limit: int | None = None,
                       lenient_after: int | None = None) -> list[Problem]:
    """User rows -> Problems through the declared field mapping; errors name file, line and field.

    Reading stops after `limit` problems (the rest of the file is never read).  A gold that is unusable for
    the answer type is an error, or with `on_invalid: skip` a row appended to `skipped`; after
    `lenient_after` problems (rows only the leakage check reads, never graded) it is kept as written."""
    f: EvalFields = spec.fields
    task = _TASK[spec.answer_type]
    q_fields = [f.question] if isinstance(f.question, str) else f.question
    out, seen = [], set()
    for lineno, row in rows:
        if limit is not None and len(out) >= limit:
            break
        at = f"{where}:{lineno}"
        parts = []
        for q in q_fields:
            v = _field(row, q, at, "question")
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{at}: field '{q}': expected non-empty text, got {v!r}"[:300])
            parts.append(v.strip())
        raw = _field(row, f.answer, at, "answer")
        try:
            gold = gold_for(raw, spec.answer_type)
        except ValueError as e:
            if lenient_after is not None and len(out) >= lenient_after:
                gold = str(raw)
            elif spec.on_invalid == "skip":
                if skipped is not None:
                    skipped.append((lineno, f"field '{f.answer}': {e}"))
                continue
            else:
                raise DataError(f"{at}: field '{f.answer}': {e} (answer_type: {spec.answer_type}; "
                                "on_invalid: skip drops such rows)") from None
        ident = str(_field(row, f.id, at, "id")) if f.id else None
        question = " ".join(parts)
        qid = f"{name}-{ident}" if ident else _qid(name, question)
        if qid in seen:
            raise DataError(f"{at}: field '{f.id or f.question}': duplicate question id {qid!r}")
        seen.add(qid)
        level = _field(row, f.level, at, "level") if f.level else None
        subject = _field(row, f.subject, at, "subject") if f.subject else None
        out.append(Problem(id=qid, task=task, question=question, gold_solution=str(raw), gold_answer=gold,
                           level=None if level is None else str(level), subject=None if subject is None else str(subject)))
    return out


def _raw_rows(path: Path) -> Iterable[tuple[int, dict]]:
    return iter_objects(path)


def load_custom(name: str, spec: EvalSetConfig, full: bool = False, skipped: Skipped | None = None
                ) -> list[Problem]:
    """A user's evaluation set from its JSONL file (or the hub): its first `spec.limit` usable rows, reading
    no further; `full` reads every row (for the leakage check), grading-checked up to the limit."""
    limit = None if full else spec.limit
    lenient = spec.limit if full else None
    if spec.path is not None:
        problems = problems_from_rows(_raw_rows(Path(spec.path)), name, spec, spec.path, skipped, limit, lenient)
    else:  # pragma: no cover - needs a network
        from datasets import load_dataset

        ds = load_dataset(spec.hub, spec.hub_config, split=spec.split)
        problems = problems_from_rows(((i, dict(r)) for i, r in enumerate(ds, 1)), name, spec,
                                      f"hub:{spec.hub}/{spec.split}", skipped, limit, lenient)
    if not problems:
        raise DataError(f"{spec.path or spec.hub}: evaluation set {name!r} has no usable rows")
    return problems


def load_eval_set(name: str, spec: int | None | EvalSetConfig, source: str = "bundled",
                  data_dir: str | Path = "data", full: bool = False, skipped: Skipped | None = None
                  ) -> list[Problem]:
    """One entry of `data.eval_sets`: a bundled split with a subset size, or a user's declared set."""
    if isinstance(spec, EvalSetConfig):
        return load_custom(name, spec, full, skipped)
    if name not in SPLITS:
        raise DataError(f"data.eval_sets: unknown bundled evaluation set {name!r}; bundled sets are "
                        f"{', '.join(SPLITS)} (or declare your own with path: or hub:)")
    return load_split(name, source, data_dir, None if full else spec)


def eval_set_file(name: str, spec: int | None | EvalSetConfig, data_dir: str | Path = "data") -> Path | None:
    """The local file an evaluation set is read from (for data hashes); None for hub sets."""
    if isinstance(spec, EvalSetConfig):
        return Path(spec.path) if spec.path else None
    return Path(data_dir) / f"{name}.jsonl"
