"""The one place that names the container images: each tag is derived from the image's inputs (lock + sources).

`make images` tags what it builds with these names and the compiled pipeline's components use the same ones, so
a component can only run in an image built from the code and the lock it was compiled with.  Stdlib only: the
Makefile runs this file as a script (``python3 src/lema/orchestration/images.py tags``) before any venv exists.
Outside a source tree (an installed package) the tags come from LEMA_CPU_IMAGE / LEMA_CUDA_IMAGE, else VERSION.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REGISTRY = os.environ.get("LEMA_IMAGE_REGISTRY", "ghcr.io/lema-mlops")
VERSION = "0.1.0"
ROOT = Path(__file__).resolve().parents[3]
BASE_SCRIPT = "images/base-image.sh"
SOURCES = ("pyproject.toml", "images/locks/tools.lock", "src", "data", "configs")  # what the lema images copy in
# image -> (lock, Dockerfile, other inputs); lema-s3 (moto) and lema-postgres (Debian's postgresql-15, pinned by
# its Dockerfile) are services of the compose stack (infra/compose).
IMAGES = {"lema-cpu": ("requirements.lock", "images/Dockerfile.cpu", SOURCES),
          "lema-cuda": ("requirements-cuda.lock", "images/Dockerfile.cuda", SOURCES),
          "lema-s3": ("images/locks/s3.lock", "images/Dockerfile.s3", ("images/locks/tools.lock",)),
          "lema-postgres": ("images/Dockerfile.postgres", "images/Dockerfile.postgres", ("images/postgres-entrypoint.sh",))}
_SKIP = ("__pycache__", ".egg-info", ".pyc")


def _files(path: Path):
    if path.is_file():
        yield path
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and not any(s in part for part in p.relative_to(ROOT).parts for s in _SKIP):
                yield p


def digest(paths) -> str:
    """sha256 over relative path names and contents (the same bytes the build context carries)."""
    h = hashlib.sha256()
    for rel in paths:
        for f in _files(ROOT / rel):
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def in_source_tree() -> bool:
    return all((ROOT / lock).is_file() for lock, *_ in IMAGES.values())


def base_tag() -> str:
    """The offline-bootstrapped Debian base (images/base-image.sh): named after the script that makes it."""
    return f"lema-base:bookworm-{digest([BASE_SCRIPT])[:12]}"


def tag(name: str) -> str:
    """Full image reference: REGISTRY/name:VERSION-<lock hash>-<source hash>."""
    lock, dockerfile, sources = IMAGES[name]
    env = os.environ.get(f"LEMA_{name.removeprefix('lema-').upper()}_IMAGE")
    if env:
        return env
    if not in_source_tree():
        return f"{REGISTRY}/{name}:{VERSION}"
    return f"{REGISTRY}/{name}:{VERSION}-{digest([lock])[:10]}-{digest([dockerfile, BASE_SCRIPT, *sources])[:10]}"


CPU_IMAGE = tag("lema-cpu")
CUDA_IMAGE = tag("lema-cuda")
DOCKERFILES = {CPU_IMAGE: IMAGES["lema-cpu"][1], CUDA_IMAGE: IMAGES["lema-cuda"][1]}  # the components' images


if __name__ == "__main__":  # `python3 images.py NAME` prints one tag; no argument: `name=tag` lines for make
    if len(sys.argv) > 1:
        print(base_tag() if sys.argv[1] == "lema-base" else tag(sys.argv[1]))
    else:
        print("\n".join([f"lema-base={base_tag()}"] + [f"{n}={tag(n)}" for n in IMAGES]))
