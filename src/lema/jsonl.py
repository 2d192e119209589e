"""JSONL reading and writing with errors that name the file, line and field; the one atomic write."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Bad input data; the message names file, line and field."""


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "<row>"
        parts.append(f"field '{field}': {e['msg'].lower()}")
    return "; ".join(parts)


def iter_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; broken lines fail naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: broken JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def iter_numbered(path: str | os.PathLike, model: type[M]) -> Iterator[tuple[int, M]]:
    """(line number, validated row) for each non-blank line."""
    path = Path(path)
    for lineno, obj in iter_objects(path):
        try:
            yield lineno, model.model_validate(obj)
        except ValidationError as e:
            raise DataError(f"{path}:{lineno}: {_describe(e)}") from None


def iter_jsonl(path: str | os.PathLike, model: type[M]) -> Iterator[M]:
    return (row for _, row in iter_numbered(path, model))


def read_jsonl(path: str | os.PathLike, model: type[M]) -> list[M]:
    return list(iter_jsonl(path, model))


def read_raw(path: str | os.PathLike) -> list[dict]:
    """Rows as plain dicts, still with file:line errors for broken JSON."""
    return [obj for _, obj in iter_objects(path)]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator:
    """A text file that appears at `path` whole or not at all: written to a unique temp file beside it, then
    renamed over it (a killed process or a concurrent writer never leaves half a file).  No fsync: a crash of
    the machine may lose the newest file, never tear one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """`text` at `path`, atomically (`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(text)


def write_jsonl(path: str | os.PathLike, rows: Iterable[BaseModel | dict]) -> int:
    """One JSON object per line, atomically, so a crash never leaves half a file."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, data: BaseModel | dict, indent: int | None = 2) -> None:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    write_text(path, json.dumps(payload, indent=indent, ensure_ascii=False) + "\n")
