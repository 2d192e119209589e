"""vLLM vs transformers generation throughput on the same model and prompts.

    .venv/bin/python bench/generation.py [--model DIR] [--prompts 64] [--n 4] [--max-tokens 128]

Without --model it builds a small model first (1 minute of pretraining, same architecture
as the embedded default). Prints tokens/s of each backend and the ratio, as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def measure(backend, prompts, sampling) -> dict:
    t0 = time.perf_counter()
    outs = backend.generate(prompts, sampling)
    dt = time.perf_counter() - t0
    tokens = sum(c.n_tokens for cs in outs for c in cs)
    return {"seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt}


def main() -> None:
    from lema.base_model import build_base_model
    from lema.config import BaseModelConfig
    from lema.data import load_split
    from lema.generate import Sampling, TransformersBackend, VLLMBackend
    from lema.prompts import cot_prompt

    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = tempfile.mkdtemp(prefix="lema-bench-")
        build_base_model(BaseModelConfig(pretrain_steps=100), model, data_dir=str(Path(__file__).parents[1] / "data"))
    problems = load_split("gsm8k/test", data_dir=str(Path(__file__).parents[1] / "data"), limit=args.prompts)
    prompts = [cot_prompt("gsm8k").render(question=p.question) for p in problems]
    # min_tokens is not portable across backends; a fixed budget with no stop string keeps the work equal.
    sampling = Sampling(n=args.n, temperature=1.0, max_tokens=args.max_tokens)
    v = VLLMBackend(model, seed=0, dtype="float32")
    measure(v, prompts[:4], sampling)  # warm-up
    vllm = measure(v, prompts, sampling)
    v.close()
    hf = TransformersBackend(model, batch_size=16)
    measure(hf, prompts[:4], Sampling(n=1, max_tokens=8))
    tf = measure(hf, prompts, sampling)
    print(json.dumps({"model": model, "prompts": len(prompts), "n": args.n, "max_tokens": args.max_tokens,
                      "vllm": vllm, "transformers": tf, "ratio_tokens_per_s": vllm["tokens_per_s"] / tf["tokens_per_s"]},
                     indent=1))


if __name__ == "__main__":
    main()
