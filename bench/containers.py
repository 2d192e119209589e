"""Containers, measured side by side in one invocation: the Kubeflow pipeline on the tiny config under kfp.local's
SubprocessRunner and DockerRunner (alternated, so both see the same machine load), the images' build times (cached:
with the build cache; cold: `docker build --no-cache`, none of that image's build cache used) and their sizes.

    .venv/bin/python bench/containers.py [--repeats 1] [--shards 2] [--build lema-cpu lema-cuda] [--cold lema-cpu]

--build: images built with the build cache first (default lema-cpu, which the docker runner needs); --cold: images
built with --no-cache after the runs (tens of minutes each); --no-runs: builds and sizes only.  Needs a Docker
daemon and the base image (`make base-image`).  Prints one JSON object; each number also goes to stderr as soon
as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]
# The runs import lema from this tree (an editable install elsewhere must not answer for it).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return round(time.perf_counter() - start, 1)


def note(what: str, seconds: float) -> float:
    """Each number as soon as it is measured (stderr), so a run cut short still leaves what it measured."""
    print(f"{what}: {seconds} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return seconds


def image_size(name: str) -> str | None:
    from lema.orchestration.images import tag

    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag(name)], capture_output=True,
                         text=True)
    return f"{int(out.stdout) / 1e9:.2f} GB" if out.returncode == 0 else None


def main() -> None:
    from lema.orchestration.images import IMAGES

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--build", nargs="*", default=["lema-cpu"], choices=list(IMAGES))
    ap.add_argument("--cold", nargs="*", default=[], choices=list(IMAGES))
    ap.add_argument("--no-runs", action="store_true")
    args = ap.parse_args()
    result: dict = {"load_avg_start": os.getloadavg()[0], "build_s": {n: {} for n in args.build}}
    build = str(ROOT / "images" / "build.sh")
    for name in args.build:  # with the build cache (also makes sure the docker runner's lema-cpu is there)
        result["build_s"][name]["cached"] = note(f"{name} cached build", timed([build, name]))
    if not args.no_runs:
        runs: dict[str, list[float]] = {"subprocess": [], "docker": []}
        for _ in range(args.repeats):
            for runner in runs:  # alternate, so both see the same machine load
                with tempfile.TemporaryDirectory() as d:
                    runs[runner].append(note(f"{runner} run", timed(
                        [sys.executable, "-m", "lema", "pipeline", "run", "--local", "--runner", runner, "--config",
                         "configs/tiny.yaml", "--shards", str(args.shards), "--pipeline-root", d])))
        result["pipeline_wall_s"] = runs
        result["docker_over_subprocess"] = round(min(runs["docker"]) / min(runs["subprocess"]), 2)
    for name in args.cold:  # last: the longest part, and it does not disturb the runs above
        result["build_s"].setdefault(name, {})["cold"] = note(f"{name} cold build",
                                                              timed([build, name, "--no-cache"]))
    result["image_sizes"] = {name: size for name in IMAGES if (size := image_size(name))}
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
