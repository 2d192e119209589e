"""Training throughput of the tiny recipe: padded batches vs packing (wrapped) vs padding-free packing (bfd).

    .venv/bin/python bench/training.py [--model DIR] [--examples 480]

Same model, same examples, same seed; reports completion-loss training tokens/s
(real tokens, padding excluded) for both and the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from transformers import AutoTokenizer

    from lema.config import BaseModelConfig, TrainConfig
    from lema.data import load_split
    from lema.jsonl import write_jsonl
    from lema.stages.base_model.build import build_base_model
    from lema.stages.sft.build import cot_examples
    from lema.stages.train.train import train

    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--examples", type=int, default=480)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lema-bench-train-"))
    model = args.model
    if model is None:
        model = str(work / "base")
        build_base_model(BaseModelConfig(pretrain_steps=60), model, data_dir=str(ROOT / "data"))
    examples = cot_examples(load_split("gsm8k/train", data_dir=str(ROOT / "data"), limit=args.examples))
    data = work / "sft.jsonl"
    write_jsonl(data, examples)
    tok = AutoTokenizer.from_pretrained(model)
    real_tokens = sum(len(tok(e.prompt + e.completion)["input_ids"]) + 1 for e in examples)
    out = {"examples": len(examples), "real_tokens": real_tokens}
    variants = {"padded": {}, "packed-wrapped": {"packing": True, "packing_strategy": "wrapped"},
                "packed-bfd-padding-free": {"packing": True, "packing_strategy": "bfd"}}
    for name, extra in variants.items():
        cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=5e-4, max_length=512, logging_steps=10, **extra)
        t0 = time.perf_counter()
        rep = train(model, data, work / f"run-{name}", cfg, seed=0, name="cot")
        dt = time.perf_counter() - t0
        out[name] = {"seconds": round(dt, 1), "steps": rep.details["steps"], "tokens_per_s": round(real_tokens / dt, 1),
                     "final_loss": rep.details["final_loss"]}
    for name in list(variants)[1:]:
        out[f"ratio_{name}_vs_padded"] = round(out[name]["tokens_per_s"] / out["padded"]["tokens_per_s"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
