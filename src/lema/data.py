"""Benchmark data -> one typed ``Problem`` record.

Bundled copies (``data/``) are the default because this machine has no hub;
``source: hub`` loads the same sets with ``datasets.load_dataset`` for users
with a network.  MATH: train on the 4,500 test problems outside MATH500,
evaluate on MATH500 (the PRM800K split), never the reverse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from .answers import gsm8k_gold, last_boxed
from .jsonl import DataError, iter_jsonl
from .records import Problem


class _GSM8KRow(BaseModel):
    question: str
    answer: str


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

SPLITS = ("gsm8k/train", "gsm8k/test", "math/train", "math500/test", "math/test")


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
    problems = load_hub(split) if source == "hub" else load_bundled(split, data_dir)
    return problems[:limit] if limit is not None else problems
