"""A content-addressed response cache: a paid response is never bought twice, even after a crash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class ResponseCache:
    """One JSON file per successful response, named by the hash of what was asked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._dirs: set[str] = set()

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
        p = self._path(key)
        if key[:2] not in self._dirs:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(key[:2])
        # Write-then-rename: a killed process leaves either the whole entry or none.  (No fsync: that
        # would guard against power loss at a large cost per response; a lost entry is only re-bought.)
        tmp = p.with_name(f".{key}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, p)
