"""Corrections per second at several concurrency levels against a loopback
OpenAI-protocol server with a fixed 200 ms latency (the stand-in in tests/).

    .venv/bin/python bench/corrector.py [--latency 0.2] [--levels 1 8 32 128]

Ideal rate at concurrency c is c / latency; the goal is >= 80% of it at c = 32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from lema.config import CorrectorConfig
    from lema.llm_corrector import LLMCorrector
    from lema.records import WrongPath
    from tests.openai_fault_server import FaultServer
    from tests.test_llm_corrector import wrong_paths

    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 128])
    args = ap.parse_args()
    server = FaultServer(latency=args.latency).start()
    results = []
    try:
        for c in args.levels:
            rows = [WrongPath(**r) for r in wrong_paths(max(40, 6 * c))]
            cfg = CorrectorConfig(kind="llm", model="bench", base_url=server.url, n=1, concurrency=c, timeout_s=30)
            with tempfile.TemporaryDirectory() as cache:
                corrector = LLMCorrector(cfg, cache)
                t0 = time.perf_counter()
                outs = corrector.correct(rows)
                dt = time.perf_counter() - t0
            ok = sum(o.correction is not None for o in outs)
            rate = len(rows) / dt
            ideal = c / args.latency
            results.append({"concurrency": c, "paths": len(rows), "corrected": ok, "seconds": round(dt, 2),
                            "per_second": round(rate, 1), "ideal_per_second": round(ideal, 1),
                            "efficiency": round(rate / ideal, 3)})
            print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
