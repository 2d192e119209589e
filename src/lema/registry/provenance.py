"""Provenance recorded on every registered version: the code (git commit), the data (a content hash of what
the model was trained and evaluated on) and the round lineage."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from lema.config import Config
from lema.stages.layout import Paths, paths


def git_commit(cwd: str | Path = ".") -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if sha.returncode != 0:
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def lineage_tags(p: Paths) -> dict[str, str]:
    """``lema.round`` always; ``lema.parent_version`` (the champion that generated this round's mistakes) from
    round 2 on."""
    tags = {"lema.round": str(p.round)}
    if p.round > 1:
        tags["lema.parent_version"] = str(json.loads((p.generator / "report.json").read_text())["details"]["version"])
    return tags


def data_version(cfg: Config, rnd: int = 1) -> str:
    """Content hash of the training and evaluation data a model saw (the DVC md5s where dvc.lock has them)."""
    from lema.data import eval_set_file

    p = paths(cfg, rnd)
    h = hashlib.sha256()
    lock = Path("dvc.lock")
    if lock.exists():
        h.update(lock.read_bytes())
    for f in (p.sft / "cot.jsonl", p.sft / "lema.jsonl"):
        _file_digest(f, h)
    for name, spec in cfg.data.eval_sets.items():
        f = eval_set_file(name, spec, cfg.data.dir)
        if f is not None:
            _file_digest(f, h)
    return h.hexdigest()[:16]


def _file_digest(path: Path, h) -> None:
    if path.is_dir():
        for f in sorted(x for x in path.rglob("*") if x.is_file() and "checkpoints" not in x.parts):
            h.update(str(f.relative_to(path)).encode())
            _file_digest(f, h)
    elif path.exists():
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
