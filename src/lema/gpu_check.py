"""GPU check: the production path (base model, sampling, full/LoRA/QLoRA training with the repo's
recipes, merging, evaluation) at a few dozen steps, one step per process (`scripts/gpu_check.sh`).

Only torch, transformers, peft, accelerate, trl, datasets, pydantic and (for QLoRA) bitsandbytes are
needed: nothing here imports mlflow, kfp, dvc or Great Expectations, and vLLM only where installed.
Settings come from the environment (GPU_CHECK_*), so the shell driver stays a loop.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from lema.config import TrainConfig, deep_merge, load_recipe

STEPS = ("env", "base-model", "collect", "train-full", "train-lora", "train-qlora", "evaluate")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"GPU_CHECK_{name}", default)


def settings() -> dict:
    return {"work": Path(_env("WORK", "runs/gpu-check")), "data": _env("DATA", "data"),
            "pretrain_steps": int(_env("PRETRAIN_STEPS", "300")), "train_steps": int(_env("STEPS", "30")),
            "questions": int(_env("QUESTIONS", "64")), "eval_questions": int(_env("EVAL", "100")),
            "backend": _env("BACKEND", "auto"), "model": _env("MODEL", ""),
            "recipes": Path(_env("RECIPES", "recipes")), "allow_cpu": _env("ALLOW_CPU", "0") == "1",
            "corpus_limit": int(_env("CORPUS_LIMIT", "0")) or None, "small": _env("SMALL", "0") == "1"}


def backend_kind(s: dict) -> str:
    if s["backend"] != "auto":
        return s["backend"]
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def _base(s: dict) -> str:
    return s["model"] or str(s["work"] / "models" / "base")


def _make_backend(s: dict, model: str):
    from lema.llm.backends import make_backend

    return make_backend(backend_kind(s), model, seed=0, vllm_options={
        "gpu_memory_utilization": 0.3, "kv_cache_gib": None, "dtype": "bfloat16", "enforce_eager": True})


def step_env(s: dict) -> dict:
    import torch

    if not torch.cuda.is_available() and not s["allow_cpu"]:
        raise RuntimeError("no CUDA device (set GPU_CHECK_ALLOW_CPU=1 for the CPU smoke run)")
    missing = [m for m in ("trl", "datasets", "pyarrow", "pandas", "pydantic", "math_verify", "peft", "accelerate")
               if importlib.util.find_spec(m) is None]
    if missing:  # scripts/gpu_check_wheels.sh fetches them (EXTRA= for pyarrow/pandas)
        raise RuntimeError(f"missing packages: {missing}")
    import peft
    import transformers
    import trl

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "peft": peft.__version__, "cuda": torch.cuda.is_available(), "backend": backend_kind(s)}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        try:
            import bitsandbytes

            info["bitsandbytes"] = bitsandbytes.__version__
        except ImportError as e:
            info["bitsandbytes"] = f"missing ({e})"
    return info


def step_base_model(s: dict) -> dict:
    from lema.config import BaseModelConfig
    from lema.stages.base_model.build import build_base_model

    small = dict(vocab_size=512, hidden_size=64, num_layers=2, num_heads=1, intermediate_size=128) if s["small"] else {}
    cfg = BaseModelConfig(pretrain_steps=s["pretrain_steps"], max_length=256, **small)
    rep = build_base_model(cfg, s["work"] / "models" / "base", data_dir=s["data"], seed=0, limit=s["corpus_limit"])
    return {k: rep.details[k] for k in ("steps", "final_loss", "params", "device")}


def step_collect(s: dict) -> dict:
    """Sample the base model on training questions and write the CoT SFT set the training steps use."""
    from lema.config import GeneratorConfig
    from lema.data import load_bundled
    from lema.jsonl import write_jsonl
    from lema.stages.collect.collect import collect
    from lema.stages.sft.build import cot_examples

    problems = load_bundled("gsm8k/train", s["data"])
    write_jsonl(s["work"] / "sft" / "cot.jsonl", cot_examples(problems[:512]))
    gen = GeneratorConfig(name="check", backend=backend_kind(s), n=2, temperature=0.8, max_tokens=128)
    resolve = lambda m: _base(s) if m == "base" else m  # noqa: E731
    paths = collect(problems[: s["questions"]], [gen], lambda g: _make_backend(s, resolve(g.model)), resolve)
    write_jsonl(s["work"] / "collect" / "paths.jsonl", paths)
    return {"paths": len(paths), "correct": sum(p.correct for p in paths)}


def _train(s: dict, recipe: str, variant: str, **update) -> dict:
    from lema.stages.train.train import train

    cfg = TrainConfig.model_validate(deep_merge(load_recipe(s["recipes"] / f"{recipe}.yaml"), update))
    cfg = cfg.model_copy(update={"max_steps": s["train_steps"], "save_steps": max(1, s["train_steps"] // 2),
                                 "logging_steps": 5})
    rep = train(_base(s), s["work"] / "sft" / "cot.jsonl", s["work"] / "train" / variant, cfg, seed=0, name="cot")
    return {k: rep.details[k] for k in ("steps", "final_loss", "learning_rate", "lora", "quantization")}


def step_train_full(s: dict) -> dict:
    return _train(s, "full-small", "full", model="base", learning_rate=1e-4)


def step_train_lora(s: dict) -> dict:
    return _train(s, "tiny-cpu", "lora", lora={"enabled": True, "r": 16, "alpha": 32}, bf16=True,
                  gradient_checkpointing=True, learning_rate=1e-3)


def step_train_qlora(s: dict) -> dict:
    """The paper's recipe as published (global batch 96, NF4, r=64), on the check's base model."""
    return _train(s, "qlora-paper-gsm8k", "qlora")


def step_evaluate(s: dict) -> dict:
    from lema.data import load_bundled
    from lema.stages.evaluate.evaluate import run_evaluate

    out = {}
    for variant in ("full", "lora", "qlora"):
        model = s["work"] / "train" / variant / "model"
        if not model.exists():
            continue
        backend = _make_backend(s, str(model))
        try:
            rep = run_evaluate(backend, variant, {"gsm8k/test": load_bundled("gsm8k/test", s["data"])[
                : s["eval_questions"]]}, s["work"] / "eval" / variant, max_tokens=128, shots=0,
                stop=["\nQuestion:"], seed=0)
        finally:
            backend.close()
        out[variant] = rep.details["metrics"]["gsm8k/test"]["accuracy"]
    if not out:
        raise RuntimeError("no trained model to evaluate")
    return out


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: python -m lema.gpu_check {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    s = settings()
    s["work"].mkdir(parents=True, exist_ok=True)
    result = globals()[f"step_{args[0].replace('-', '_')}"](s)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
