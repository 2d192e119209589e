"""Provenance recorded on every registered version: the code (git commit), the data (a content hash of what
the model was trained and evaluated on) and the round lineage."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from lema.stages.layout import Paths


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


def data_version(records) -> str:
    """Content hash of the data a model was trained and evaluated on: the digests of its training set and its
    evaluation sets (``lema.registry.datasets``), nothing else, so code or parameter changes that leave those
    bytes alone keep it, and any changed row changes it."""
    from lema.registry.datasets import EVALUATION, TRAINING

    h = hashlib.sha256()
    for rec in sorted((r for r in records if r.context in (TRAINING, EVALUATION)), key=lambda r: (r.context, r.name)):
        h.update(f"{rec.context}\t{rec.name}\t{rec.digest}\n".encode())
    return h.hexdigest()[:16]
