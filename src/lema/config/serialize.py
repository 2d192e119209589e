"""The resolved config as data, text and hash: one serialisation shared by every engine, so a cache key, a run
dir name and what a Kubeflow task receives agree byte for byte."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


def resolved(cfg: BaseModel) -> dict[str, Any]:
    """The config as the stages read it: section aliases (`validate`, `register`), the recipe merged into
    `train` (the `train.recipe` file name itself is not read by any stage)."""
    data = cfg.model_dump(mode="json", by_alias=True)
    if isinstance(data.get("train"), dict):
        data["train"].pop("recipe", None)
    return data


def to_text(data: Any) -> str:
    """Canonical JSON: sorted keys, one line (KFP copies constants into header comments)."""
    return json.dumps(data, sort_keys=True)


def digest(data: Any, length: int = 16) -> str:
    return hashlib.sha256(to_text(data).encode()).hexdigest()[:length]


def pick(data: dict[str, Any], keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The nested subset of `data` named by dotted keys (`data.dir`, `generators`): what a stage reads, the
    same keys as its DVC params."""
    out: dict[str, Any] = {}
    for key in keys:
        src, dst = data, out
        *parents, leaf = key.split(".")
        for part in parents:
            if part not in src:
                raise KeyError(f"config has no key {key!r}")
            src, dst = src[part], dst.setdefault(part, {})
        if leaf not in src:
            raise KeyError(f"config has no key {key!r}")
        dst[leaf] = src[leaf]
    return out
