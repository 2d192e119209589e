"""The Kubeflow pipeline on the tiny config under kfp.local's SubprocessRunner and DockerRunner, side by side in one
run (same machine, same moment), plus the images' sizes and a cached rebuild of lema-cpu.

    .venv/bin/python bench/containers.py [--repeats 1] [--shards 2]

Needs a Docker daemon and the images (`make images`).  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    from lema.orchestration.images import IMAGES, tag

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    sizes = {}
    for name in IMAGES:
        out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag(name)], capture_output=True,
                             text=True)
        if out.returncode == 0:
            sizes[name] = f"{int(out.stdout) / 2**30:.2f} GiB"
    cached = timed([str(ROOT / "images" / "build.sh"), "lema-cpu"], cwd=ROOT)
    runs: dict[str, list[float]] = {"subprocess": [], "docker": []}
    for _ in range(args.repeats):
        for runner in runs:  # alternate, so both see the same machine load
            with tempfile.TemporaryDirectory() as d:
                runs[runner].append(timed([sys.executable, "-m", "lema", "pipeline", "run", "--local", "--runner",
                                           runner, "--config", "configs/tiny.yaml", "--shards", str(args.shards),
                                           "--pipeline-root", d], cwd=ROOT))
    print(json.dumps({"image_sizes": sizes, "cached_rebuild_s": cached, "pipeline_wall_s": runs,
                      "docker_over_subprocess": round(min(runs["docker"]) / min(runs["subprocess"]), 2)}, indent=1))


if __name__ == "__main__":
    main()
