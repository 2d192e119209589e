"""vLLM vs transformers on the same model and prompts: sampling tokens/s (collect) and greedy
evaluation questions/s (evaluate).

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
    from lema.config import BaseModelConfig
    from lema.data import load_split
    from lema.llm.backends import Sampling, TransformersBackend, VLLMBackend
    from lema.prompts import cot_prompt
    from lema.stages.base_model.build import build_base_model

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
    # Evaluation shape: greedy, one answer per question, stop at the next question.
    greedy = Sampling(n=1, temperature=0.0, max_tokens=args.max_tokens, stop=("\nQuestion:",))
    v = VLLMBackend(model, seed=0, dtype="float32")
    measure(v, prompts[:4], sampling)  # warm-up
    vllm = measure(v, prompts, sampling)
    vllm_eval = measure(v, prompts, greedy)
    v.close()
    hf = TransformersBackend(model, batch_size=16)
    measure(hf, prompts[:4], Sampling(n=1, max_tokens=8))
    tf = measure(hf, prompts, sampling)
    tf_eval = measure(hf, prompts, greedy)
    q = len(prompts)
    print(json.dumps({"model": model, "prompts": q, "n": args.n, "max_tokens": args.max_tokens,
                      "sampling": {"vllm": vllm, "transformers": tf,
                                   "ratio_tokens_per_s": vllm["tokens_per_s"] / tf["tokens_per_s"]},
                      "evaluation": {"vllm_questions_per_s": q / vllm_eval["seconds"],
                                     "transformers_questions_per_s": q / tf_eval["seconds"],
                                     "ratio": tf_eval["seconds"] / vllm_eval["seconds"]}}, indent=1))


if __name__ == "__main__":
    main()
