"""The serving contract of a registered model: question in, answer out, generated the way ``lema evaluate``
generates (the same prompt template and shots, greedy by default, the same stop strings and token budget),
with ``max_new_tokens``, ``temperature``, ``top_p`` and ``stop`` as request parameters.

The model is an MLflow pyfunc: the fine-tuned Hugging Face directory is its artifact ``hf_model``, the prompt
templates and defaults its ``model_config``, and lema's own package travels in ``code/`` so that
``mlflow models serve`` needs only torch and transformers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mlflow

EXAMPLE_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                    "How many clips did Natalia sell altogether in April and May?")


class Answerer(mlflow.pyfunc.PythonModel):
    """Rows with ``question`` (and optionally ``task``: ``math`` for the MATH prompt, else the GSM8K one) -> the
    generated answer text only."""

    def load_context(self, context) -> None:
        from lema.llm.backends import TransformersBackend

        cfg = context.model_config
        self.prompts, self.defaults = cfg["prompts"], cfg["defaults"]
        self.backend = TransformersBackend(context.artifacts["hf_model"], seed=int(cfg.get("seed", 0)))

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
        from lema.llm.backends import Sampling
        from lema.prompts import fill

        frame = model_input if hasattr(model_input, "to_dict") else _frame(model_input)
        rows = frame.to_dict("records")
        p = {**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
        sampling = Sampling(n=1, temperature=float(p["temperature"]), top_p=float(p["top_p"]),
                            max_tokens=int(p["max_new_tokens"]), stop=tuple(p["stop"] or ()))
        prompts = []
        for r in rows:
            t = self.prompts["math" if r.get("task") == "math" else "gsm8k"]  # as lema.prompts.cot_prompt picks
            prompts.append(t["prefix"] + fill(t["template"], question=str(r["question"])))
        return [c[0].text for c in self.backend.generate(prompts, sampling)]


def _frame(data):
    import pandas as pd

    if isinstance(data, str):
        data = [data]
    if isinstance(data, dict):
        data = [data]
    return pd.DataFrame([{"question": d} if isinstance(d, str) else d for d in data])


def contract(max_tokens: int, stop: list[str], shots: int, seed: int = 0) -> dict[str, Any]:
    """The model_config: each task's prompt (the evaluation prompt, rendered with `shots` exemplars) and the
    evaluation's generation settings as the parameter defaults."""
    from lema.prompts import cot_prompt

    prompts = {task: {"name": t.name, "version": t.version, "hash": t.hash(shots), "prefix": t.prefix(shots),
                      "template": t.template}
               for task, t in (("gsm8k", cot_prompt("gsm8k")), ("math", cot_prompt("math")))}
    return {"prompts": prompts, "seed": seed,
            "defaults": {"max_new_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "stop": list(stop)}}


def signature(config: dict[str, Any]):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    d = config["defaults"]
    return ModelSignature(
        inputs=Schema([ColSpec("string", "question"), ColSpec("string", "task", required=False)]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", d["max_new_tokens"]),
                            ParamSpec("temperature", "double", d["temperature"]),
                            ParamSpec("top_p", "double", d["top_p"]),
                            ParamSpec("stop", "string", d["stop"], shape=(-1,))]))


def save(model_dir: str | Path, out: str | Path, config: dict[str, Any], pip_requirements: list[str]) -> Path:
    """Write the pyfunc model to `out` (a directory that must not exist yet)."""
    import lema

    out = Path(out)
    code = out.parent / f"{out.name}-code"
    shutil.copytree(Path(lema.__file__).parent, code / "lema", ignore=shutil.ignore_patterns("__pycache__"))
    try:
        mlflow.pyfunc.save_model(path=str(out), python_model=Answerer(), artifacts={"hf_model": str(model_dir)},
                                 code_paths=[str(code / "lema")], model_config=config, signature=signature(config),
                                 input_example=({"question": [EXAMPLE_QUESTION], "task": ["gsm8k"]},
                                                {"max_new_tokens": config["defaults"]["max_new_tokens"]}),
                                 pip_requirements=pip_requirements)
    finally:
        shutil.rmtree(code, ignore_errors=True)
    return out
