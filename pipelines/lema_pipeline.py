"""The LeMa pipeline for Kubeflow Pipelines v2.

collect fans out over (generator, shard) and correct over shards with ``dsl.ParallelFor``,
each merged with ``dsl.Collected``; registration is gated on evaluation with ``dsl.If``;
the corrector's API key is mounted from a Kubernetes secret, never passed as a parameter.
Compile: ``lema pipeline compile``; run locally: ``lema pipeline run --local``.
"""


import json
from pathlib import Path

import yaml
from kfp import dsl, kubernetes

from components import (base_model, build_sft, collect, correct, evaluate, gate, merge_collect, merge_correct,
                        register, report, train, validate)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "lema-corrector"  # kubectl create secret generic lema-corrector --from-literal=api_key=...


def _resources(task, cpu: str, memory: str, gpu: bool) -> None:
    task.set_cpu_request(cpu).set_memory_request(memory)
    if gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)


def build_pipeline(config_text: str, num_shards: int = 2, gpu: bool = False):
    """A pipeline whose fan-out (generators x shards) and defaults come from one lema config."""
    cfg = yaml.safe_load(config_text) or {}
    generators = [g["name"] for g in cfg.get("generators", [{"name": "base-t0.8"}])]
    work = [{"generator": g, "shard": s} for g in generators for s in range(num_shards)]
    metric = (cfg.get("register") or {}).get("primary_metric", "gsm8k/test")
    # One-line JSON (valid YAML): KFP writes defaults into header comments, where newlines break the file.
    default_config = json.dumps(cfg, sort_keys=True)

    @dsl.pipeline(name="lema", description="Learning from Mistakes: collect, correct, validate, fine-tune, "
                  "evaluate and register math reasoners.")
    def lema(config: str = default_config, min_accuracy: float = 0.0):
        base = base_model(config=config)
        _resources(base, "2", "8G", gpu)
        with dsl.ParallelFor(items=work, parallelism=8) as item:
            sampled = collect(config=config, model=base.outputs["model"], work=item, num_shards=num_shards)
            _resources(sampled, "2", "16G", gpu)
        paths = merge_collect(shards=dsl.Collected(sampled.outputs["paths"]))
        with dsl.ParallelFor(items=list(range(num_shards))) as shard:
            fixed = correct(config=config, paths=paths.outputs["paths"], shard=shard, num_shards=num_shards)
            fixed.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0)
            kubernetes.use_secret_as_env(fixed, secret_name=SECRET, secret_key_to_env={"api_key": "OPENAI_API_KEY"},
                                         optional=True)
        corrections = merge_correct(shards=dsl.Collected(fixed.outputs["corrections"]))
        valid = validate(config=config, corrections=corrections.outputs["corrections"])
        sft = build_sft(config=config, valid=valid.outputs["valid"], paths=paths.outputs["paths"])
        trained, evaluated = {}, {}
        for variant in ("cot", "lema"):
            t = train(config=config, variant=variant, sft=sft.outputs["sft"], base=base.outputs["model"])
            _resources(t.set_display_name(f"train-{variant}"), "2", "16G", gpu)
            e = evaluate(config=config, variant=variant, model=t.outputs["model"])
            _resources(e.set_display_name(f"evaluate-{variant}"), "2", "16G", gpu)
            trained[variant], evaluated[variant] = t, e
        inputs = dict(train_cot=trained["cot"].outputs["model"], train_lema=trained["lema"].outputs["model"],
                      eval_cot=evaluated["cot"].outputs["results"], eval_lema=evaluated["lema"].outputs["results"],
                      paths=paths.outputs["paths"], corrections=corrections.outputs["corrections"],
                      valid=valid.outputs["valid"])
        report(config=config, **inputs)
        ok = gate(eval_cot=inputs["eval_cot"], eval_lema=inputs["eval_lema"], metric=metric,
                  min_accuracy=min_accuracy)
        with dsl.If(ok.output == True, name="good-enough-to-register"):  # noqa: E712 (KFP condition syntax)
            register(config=config, **inputs).set_caching_options(False)

    return lema


def default_config_text() -> str:
    return (ROOT / "params.yaml").read_text()
