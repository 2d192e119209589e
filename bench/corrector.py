"""Corrections per second at several concurrency levels against a loopback
OpenAI-protocol server with a fixed 200 ms latency (the stand-in in tests/).

    .venv/bin/python bench/corrector.py [--latency 0.2] [--levels 1 8 32 128]

Ideal rate at concurrency c is c / latency; the goal is >= 80% of it at c = 32.
The corrector goes through lema.llm.transport (the client the OpenAI generation
backend shares); no budget caps are set, so reservation costs only bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This checkout's source first (the installed package may be an editable install of another checkout).
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    from lema.config import CorrectorConfig
    from lema.records import WrongPath
    from lema.stages.correct.llm import LLMCorrector
    from tests.test_llm_corrector import wrong_paths

    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 128])
    args = ap.parse_args()
    # The server runs in its own process so that it does not share the client's interpreter.
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_fault_server.py"), "--port", str(port),
                               "--latency", str(args.latency), "--seconds", "600"], stdout=subprocess.PIPE, text=True)
    server.stdout.readline()  # "listening on ..."
    url = f"http://127.0.0.1:{port}/v1"
    results = []
    try:
        # Warm-up (imports, SSL context, first connections), not timed.
        warm = CorrectorConfig(kind="llm", model="bench", base_url=url, n=1, concurrency=8, timeout_s=30)
        with tempfile.TemporaryDirectory() as cache:
            LLMCorrector(warm, cache).correct([WrongPath(**r) for r in wrong_paths(16)])
        for c in args.levels:
            rows = [WrongPath(**r) for r in wrong_paths(max(40, 10 * c))]
            cfg = CorrectorConfig(kind="llm", model="bench", base_url=url, n=1, concurrency=c, timeout_s=30)
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
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
