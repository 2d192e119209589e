"""A content-addressed response cache: a paid response is never bought twice, even after a crash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lema.jsonl import write_text


class ResponseCache:
    """One JSON file per successful response, named by the hash of what was asked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(payload: dict) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self._path(key)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # a torn write cannot happen (atomic rename), but never trust a file blindly
            return None

    def put(self, key: str, value: dict) -> None:
        # A killed process leaves either the whole entry or none (a lost entry is only re-bought).
        write_text(self._path(key), json.dumps(value, ensure_ascii=False))
