"""DVC time of a no-op `lema run`: one `dvc status` over the graph, then reproduce only what is stale (now),
against asking `Repo.reproduce` about every node one by one (before), on the same finished run dir.

    .venv/bin/python bench/dvc_noop.py RUN_DIR [--repeat 3]

RUN_DIR is the run dir of a finished `lema run` (its own DVC project), e.g. after
`lema run --config configs/tiny.yaml --set run_dir=runs/bench`.  Prints seconds per no-op and the ratio, as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    from dvc.repo import Repo

    from lema.config import load_config
    from lema.orchestration.local import _stale_and_after
    from lema.stages import instances

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = args.run_dir.resolve()
    with contextlib.chdir(root):
        cfg = load_config("params.yaml")
        nodes = instances(cfg)

        def per_node() -> int:  # before: every node through Repo.reproduce
            with Repo(str(root)) as repo:
                return sum(bool(repo.reproduce(f"dvc.yaml:{n.name}", single_item=True)) for n in nodes)

        def status_once() -> int:  # now: one status, then only what is stale
            with Repo(str(root)) as repo:
                todo = _stale_and_after(repo, cfg)
                return sum(bool(repo.reproduce(f"dvc.yaml:{n.name}", single_item=True)) for n in nodes
                           if n.name in todo)

        times: dict[str, list[float]] = {"per_node": [], "status_once": []}
        for _ in range(args.repeat):
            for name, fn in (("per_node", per_node), ("status_once", status_once)):
                t0 = time.perf_counter()
                ran = fn()
                times[name].append(time.perf_counter() - t0)
                assert ran == 0, f"{name}: {ran} stages ran; the run dir is not up to date"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"nodes": len(nodes), "seconds": times, "median": med,
                      "ratio": med["per_node"] / med["status_once"]}, indent=1))


if __name__ == "__main__":
    main()
