"""``lema pipeline run --local --runner docker``: kfp.local's DockerRunner set up to run tasks as the cluster does.

Every task runs in the image the compiled pipeline names (lema.orchestration.images), as a non-root user, on a
read-only root filesystem (the bundled data in the image included) with tmpfs for /tmp and the caches; only the
pipeline root is mounted (read-write, at the same path) and is the tasks' working directory.  Tasks share the host's network, so a tracking or
OpenAI URL that works here (http://127.0.0.1:5000) works in the task too.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_DATA_DIR = "/opt/lema/data"  # images/Dockerfile.cpu: the bundled data, read-only
IMAGE_UID = 1000
# Passed through to tasks when set here (the cluster gets them from the lema-pipeline config map / secrets).
PASS_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def require_image(image: str) -> None:
    """A clear error before any task starts when the image is not built here (DockerRunner would try a pull)."""
    import docker

    try:
        client = docker.from_env()
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SystemExit(f"image {image} is not built here: run `make images` (tags: lema.orchestration.images)")
    except docker.errors.DockerException as e:
        raise SystemExit(f"no Docker daemon reachable for --runner docker: {e}")


def task_user(pipeline_root: Path) -> str:
    """uid:gid the tasks run as: the image's user 1000 when we are root (the pipeline root is handed to it),
    else the caller's own ids, so the outputs stay theirs.  Never root."""
    pipeline_root.mkdir(parents=True, exist_ok=True)
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    for p in [pipeline_root, *pipeline_root.rglob("*")]:
        os.chown(p, IMAGE_UID, IMAGE_UID)
    return f"{IMAGE_UID}:{IMAGE_UID}"


def docker_runner(pipeline_root: Path):
    """The DockerRunner: non-root, read-only root filesystem, host network, selected environment."""
    from kfp import local

    env = {k: os.environ[k] for k in PASS_ENV if os.environ.get(k)}
    # working_dir: the (writable) pipeline root, where a file-based tracking store puts ./mlruns; /opt/lema is read-only.
    return local.DockerRunner(user=task_user(pipeline_root), read_only=True, network_mode="host",
                              working_dir=str(pipeline_root),
                              tmpfs={"/tmp": "rw,exec,mode=1777", "/home/lema": "rw,exec,mode=1777"},
                              environment=env)
