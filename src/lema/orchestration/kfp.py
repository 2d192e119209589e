"""The Kubeflow Pipelines v2 adapter: components and the pipeline, built from the stage declaration.

Each component is a lightweight Python component whose body only calls ``lema.orchestration.artifacts`` (the same stage
functions as ``lema run`` and ``dvc repro``); lightweight components also run under kfp.local's
SubprocessRunner.  The image already holds lema and the same kfp (one pin, ``KFP_VERSION``), so no task installs
anything at start.  Images and resources come from the declaration (``Stage.gpu``/``cpu``/``memory``, requests =
limits): with ``gpu=True`` the GPU stages (collect, train, evaluate) run the CUDA image with one GPU, the
tolerations and node selector of ``kubeflow:`` in the config.

Caching at DVC's granularity: a task's ``config`` input is only the config keys its stage reads
(``Stage.reads``, its DVC params), so a change reruns the same tasks here as in DVC.  ``register`` alone gets
the whole resolved config (it records it in MLflow, as ``lema run`` does) and is never cached.
collect fans out over (generator, shard), correct over shards (``dsl.ParallelFor`` + ``dsl.Collected``);
registration is gated on evaluation (``dsl.If``) with the threshold from the config.

``rounds: N`` unrolls at compile time: round r >= 2 sits inside round r-1's registration branch (its
``champion`` task takes round r-1's register output, then resolves ``models:/<name>@champion`` in the registry
that MLFLOW_TRACKING_URI names), collects with it, pools all rounds' data and trains on that.  The stage
bodies that do not depend on the round are reused as they are (they see one round's layout).
"""


import functools
from typing import List  # noqa: UP035 - KFP reads these annotations

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output, structures

from lema.config import Config
from lema.config.serialize import pick, resolved, to_text
from lema.orchestration.images import CPU_IMAGE, CUDA_IMAGE, DOCKERFILES  # noqa: F401 - image tags: one place
from lema.stages import BY_NAME

KFP_VERSION = "2.17.3"  # pyproject.toml's pin: the SDK that compiles and the one in both images


# ---- component bodies (sources are shipped to the container by KFP) ------------------------------------

def base_model(config: str, model: Output[Model]):
    """Build the embedded default model (tokenizer + from-scratch pretraining)."""
    from lema.orchestration.artifacts import run_stage

    run_stage("base-model", config, {}, {"base_model": model.path})


def collect(config: str, model: Input[Model], work: dict, num_shards: int, paths: Output[Dataset]):
    """Sample and grade CoT paths from one generator (work["generator"]) on one shard (work["shard"])."""
    from lema.orchestration.artifacts import run_stage

    run_stage("collect", config, {"base_model": model.path}, {"collect": paths.path},
              shard=(int(work["shard"]), num_shards), generator=work["generator"])


def merge_collect(shards: Input[List[Dataset]], paths: Output[Dataset], metrics: Output[Metrics]):
    """Fan-in: one collect artifact from every (generator, shard) task."""
    from lema.orchestration.artifacts import merge_collect as merge

    report = merge([s.path for s in shards], paths.path)
    for key in ("samples", "right", "wrong"):
        metrics.log_metric(f"collect/{key}", report.details[key])


def correct(config: str, paths: Input[Dataset], shard: int, num_shards: int, cache_root: str,
            corrections: Output[Dataset]):
    """Correct one shard; LLM responses and Batch ids are cached under `cache_root`, so a retry never pays twice."""
    from lema.orchestration.artifacts import run_stage

    run_stage("correct", config, {"collect": paths.path}, {"correct": corrections.path}, shard=(shard, num_shards),
              cache_root=cache_root)


def merge_correct(shards: Input[List[Dataset]], corrections: Output[Dataset], metrics: Output[Metrics]):
    """Fan-in of the correction shards; token and cost usage summed (register logs it to MLflow, as in lema run)."""
    from lema.orchestration.artifacts import merge_correct as merge
    from lema.orchestration.artifacts import usage_metrics

    report = merge([s.path for s in shards], corrections.path)
    metrics.log_metric("correct/corrected", report.n_out)
    metrics.log_metric("correct/unlocalised", report.n_quarantined)
    for key, value in usage_metrics(report).items():
        metrics.log_metric(key, value)


def validate(config: str, corrections: Input[Dataset], valid: Output[Dataset], metrics: Output[Metrics]):
    """Great Expectations suite over the corrections; failures go to quarantine."""
    from lema.orchestration.artifacts import run_stage

    report = run_stage("validate", config, {"correct": corrections.path}, {"validate": valid.path})
    metrics.log_metric("validate/pass_rate", report.details["pass_rate"])
    metrics.log_metric("validate/valid", report.n_out)


def build_sft(config: str, valid: Input[Dataset], paths: Input[Dataset], sft: Output[Dataset]):
    """CoT-only and LeMa prompt/completion sets."""
    from lema.orchestration.artifacts import run_stage

    run_stage("build-sft", config, {"validate": valid.path, "collect": paths.path}, {"build_sft": sft.path})


def train(config: str, variant: str, sft: Input[Dataset], base: Input[Model], model: Output[Model]):
    """Fine-tune one variant (cot or lema) with TRL."""
    from lema.orchestration.artifacts import run_stage

    run_stage("train", config, {"build_sft": sft.path, "base_model": base.path}, {f"train_{variant}": model.path},
              variant=variant)


def evaluate(config: str, variant: str, model: Input[Model], results: Output[Dataset], metrics: Output[Metrics]):
    """Greedy pass@1 of one fine-tuned model; accuracies appear in the KFP UI."""
    from lema.orchestration.artifacts import run_stage

    report = run_stage("evaluate", config, {f"train_{variant}": model.path}, {f"evaluate_{variant}": results.path},
                       variant=variant)
    for eval_set, m in report.details["metrics"].items():
        metrics.log_metric(f"{eval_set}/accuracy", m["accuracy"])


def gate(eval_cot: Input[Dataset], eval_lema: Input[Dataset], metric: str, min_accuracy: float) -> bool:
    """True when the better model reaches `min_accuracy` on `metric`: registration is gated on this."""
    import json
    from pathlib import Path

    best = max(json.loads((Path(e.path) / "metrics.json").read_text()).get(metric, {}).get("accuracy", 0.0)
               for e in (eval_cot, eval_lema))
    return best >= min_accuracy


def register(config: str, train_cot: Input[Model], train_lema: Input[Model], eval_cot: Input[Dataset],
             eval_lema: Input[Dataset], paths: Input[Dataset], corrections: Input[Dataset], valid: Input[Dataset],
             sft: Input[Dataset], registry: Output[Dataset]):
    """Log both models to MLflow (MLFLOW_TRACKING_URI), with their dataset inputs, and set the aliases; `config`
    is the whole run config (recorded as the run's params, as lema run does)."""
    from lema.orchestration.artifacts import run_stage

    run_stage("register", config, {"train_cot": train_cot.path, "train_lema": train_lema.path,
                                   "evaluate_cot": eval_cot.path, "evaluate_lema": eval_lema.path,
                                   "collect": paths.path, "correct": corrections.path, "validate": valid.path,
                                   "build_sft": sft.path},
              {"register": registry.path})


def report(config: str, train_cot: Input[Model], train_lema: Input[Model], eval_cot: Input[Dataset],
           eval_lema: Input[Dataset], paths: Input[Dataset], corrections: Input[Dataset], valid: Input[Dataset],
           files: Output[Dataset], summary: Output[Markdown], registry: Input[Dataset] = None):
    """The run report (plots + Markdown, with the registration result when there is one)."""
    from pathlib import Path

    from lema.orchestration.artifacts import run_stage

    inputs = {"train_cot": train_cot.path, "train_lema": train_lema.path, "evaluate_cot": eval_cot.path,
              "evaluate_lema": eval_lema.path, "collect": paths.path, "correct": corrections.path,
              "validate": valid.path}
    if registry is not None:
        inputs["register"] = registry.path
    run_stage("report", config, inputs, {"report": files.path})
    Path(summary.path).write_text((Path(files.path) / "report.md").read_text())


def champion(config: str, rnd: int, registry: Input[Dataset], model: Output[Model]):
    """Round rnd's generator: the registry champion after round rnd-1 (`registry` orders it after that round)."""
    from lema.orchestration.artifacts import run_stage

    run_stage("champion", config, {"prev_register": registry.path}, {"champion": model.path}, rnd=rnd)


def collect_round(config: str, rnd: int, model: Input[Model], work: dict, num_shards: int, paths: Output[Dataset]):
    """Collect in round rnd >= 2: the champion samples round rnd's fresh training questions."""
    from lema.orchestration.artifacts import run_stage

    run_stage("collect", config, {"champion": model.path}, {"collect": paths.path},
              shard=(int(work["shard"]), num_shards), generator=work["generator"], rnd=rnd)


def pool(config: str, rnd: int, prev_valid: Input[Dataset], prev_paths: Input[Dataset], valid: Input[Dataset],
         paths: Input[Dataset], pool: Output[Dataset]):
    """All rounds' validated corrections and right paths so far (round 2's previous pool is round 1's data)."""
    from lema.orchestration.artifacts import run_stage

    prev = ({"prev_validate": prev_valid.path, "prev_collect": prev_paths.path} if rnd == 2
            else {"prev_pool": prev_valid.path})
    run_stage("pool", config, prev | {"validate": valid.path, "collect": paths.path}, {"pool": pool.path}, rnd=rnd)


def register_round(config: str, rnd: int, champion: Input[Model], train_cot: Input[Model], train_lema: Input[Model],
                   eval_cot: Input[Dataset], eval_lema: Input[Dataset], paths: Input[Dataset],
                   corrections: Input[Dataset], valid: Input[Dataset], sft: Input[Dataset],
                   registry: Output[Dataset]):
    """Register round rnd's models with their lineage (lema.round, lema.parent_version)."""
    from lema.orchestration.artifacts import run_stage

    run_stage("register", config, {"champion": champion.path, "train_cot": train_cot.path,
                                   "train_lema": train_lema.path, "evaluate_cot": eval_cot.path,
                                   "evaluate_lema": eval_lema.path, "collect": paths.path,
                                   "correct": corrections.path, "validate": valid.path, "build_sft": sft.path},
              {"register": registry.path}, rnd=rnd)


BODIES = {"base-model": base_model, "collect": collect, "merge-collect": merge_collect, "correct": correct,
          "merge-correct": merge_correct, "validate": validate, "build-sft": build_sft, "train": train,
          "evaluate": evaluate, "gate": gate, "register": register, "report": report,
          "champion": champion, "collect-round": collect_round, "pool": pool, "register-round": register_round}
STAGE_OF = {"collect-round": "collect", "register-round": "register"}  # round-r bodies of a declared stage


@functools.cache
def components(gpu: bool = False) -> dict:
    """One KFP component per body; a declared GPU stage runs the CUDA image when `gpu`."""
    def image(name: str) -> str:
        st = BY_NAME.get(STAGE_OF.get(name, name))
        return CUDA_IMAGE if gpu and st is not None and st.gpu else CPU_IMAGE

    return {name: dsl.component(base_image=image(name), install_kfp_package=False)(fn) for name, fn in BODIES.items()}


def stage_config(cfg: Config, stage: str) -> str:
    """What a task of `stage` receives as `config`: the keys the stage reads (its DVC params), canonical JSON."""
    return to_text(pick(resolved(cfg), BY_NAME[stage].reads))


def _place(task, stage: str, cfg: Config, gpu: bool):
    """Resources from the declaration (requests = limits; merge and gate tasks small), GPU placement from the
    config, the MLflow tracking URI and OpenAI base URL from the config map infra/ defines."""
    kf = cfg.kubeflow
    st = BY_NAME.get(stage)
    cpu, memory = (st.cpu, st.memory) if st is not None else (kf.small_cpu, kf.small_memory)
    on_gpu = gpu and st is not None and st.gpu
    # What set_cpu_request/.../set_accelerator_limit write, in one step: each of those calls inspect.stack() (for
    # its name in an error message), whose cost grows with the modules the process has imported; next to torch
    # and transformers (a notebook, the test suite) 16 builds took 112 s instead of 6 s.  The values are
    # validated by the config schema and the stage declaration; tests/test_orchestration.py checks the compiled
    # pipeline.
    task.container_spec.resources = structures.ResourceSpec(
        cpu_request=cpu, cpu_limit=cpu, memory_request=memory, memory_limit=memory,
        accelerator_type="nvidia.com/gpu" if on_gpu else None, accelerator_count="1" if on_gpu else None)
    if on_gpu:
        for tol in kf.gpu_tolerations:
            kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect)
        for label, value in kf.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=label, label_value=value)
    kubernetes.use_config_map_as_env(task, config_map_name=kf.config_map,
                                     config_map_key_to_env={"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
                                                             "OPENAI_BASE_URL": "OPENAI_BASE_URL"})
    return task


def build_pipeline(cfg: Config, num_shards: int = 2, gpu: bool = False, cache_root: str | None = None):
    """A pipeline whose fan-out (generators x shards), gate threshold and task configs come from one resolved
    lema config (the object ``load_config`` returns; its ``data.dir`` as the tasks should see it).

    `cache_root`: where the correct tasks keep the corrector's response cache and Batch ids; default: the
    mount path of the PVC ``kubeflow.cache_pvc`` (mounted into every correct task), so a retry never pays twice."""
    work = [{"generator": g.name, "shard": s} for g in cfg.generators for s in range(num_shards)]
    reg = cfg.register_
    rounds = cfg.rounds
    conf = {name: stage_config(cfg, name) for name in BY_NAME}
    conf["register"] = to_text(resolved(cfg))
    kf = cfg.kubeflow
    c = components(gpu)

    def place(task, stage: str):
        return _place(task, stage, cfg, gpu)

    @dsl.pipeline(name="lema", description="Learning from Mistakes: collect, correct, validate, fine-tune, "
                  "evaluate and register math reasoners.")
    def lema(min_accuracy: float = float(reg.min_accuracy), corrector_cache: str = cache_root or kf.cache_mount):
        base = place(c["base-model"](config=conf["base-model"]), "base-model")

        def one_round(rnd: int, prev: dict | None):
            """Round rnd's tasks; round rnd+1 goes inside its registration branch (it samples with the new
            champion).  prev: round rnd-1's register output and cumulative data."""
            sfx = f"-r{rnd}" if rnd > 1 else ""
            if prev is None:
                with dsl.ParallelFor(items=work, parallelism=8) as item:
                    sampled = place(c["collect"](config=conf["collect"], model=base.outputs["model"], work=item,
                                                 num_shards=num_shards), "collect")
            else:
                gen = c["champion"](config=conf["champion"], rnd=rnd, registry=prev["registry"])
                place(gen.set_display_name(f"champion{sfx}").set_caching_options(False), "champion")
                with dsl.ParallelFor(items=work, parallelism=8) as item:
                    sampled = c["collect-round"](config=conf["collect"], rnd=rnd, model=gen.outputs["model"],
                                                 work=item, num_shards=num_shards)
                    place(sampled.set_display_name(f"collect{sfx}"), "collect")
            paths = place(c["merge-collect"](shards=dsl.Collected(sampled.outputs["paths"])), "")
            with dsl.ParallelFor(items=list(range(num_shards))) as shard:
                fixed = place(c["correct"](config=conf["correct"], paths=paths.outputs["paths"], shard=shard,
                                           num_shards=num_shards, cache_root=corrector_cache), "correct")
                fixed.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0)
                kubernetes.use_secret_as_env(fixed, secret_name=kf.secret,
                                             secret_key_to_env={"api_key": "OPENAI_API_KEY"})
                kubernetes.mount_pvc(fixed, pvc_name=kf.cache_pvc, mount_path=kf.cache_mount)
            corrections = place(c["merge-correct"](shards=dsl.Collected(fixed.outputs["corrections"])), "")
            valid = place(c["validate"](config=conf["validate"], corrections=corrections.outputs["corrections"]),
                          "validate")
            data = {"valid": valid.outputs["valid"], "paths": paths.outputs["paths"]}
            if prev is not None:  # build-sft reads valid.jsonl and right.jsonl: the pool holds both
                pooled = place(c["pool"](config=conf["pool"], rnd=rnd, prev_valid=prev["valid"],
                                         prev_paths=prev["paths"], **data).set_display_name(f"pool{sfx}"), "pool")
                data = {"valid": pooled.outputs["pool"], "paths": pooled.outputs["pool"]}
            sft = place(c["build-sft"](config=conf["build-sft"], **data), "build-sft")
            trained, evaluated = {}, {}
            for variant in ("cot", "lema"):
                t = c["train"](config=conf["train"], variant=variant, sft=sft.outputs["sft"],
                               base=base.outputs["model"])
                place(t.set_display_name(f"train{sfx}-{variant}"), "train")
                e = c["evaluate"](config=conf["evaluate"], variant=variant, model=t.outputs["model"])
                place(e.set_display_name(f"evaluate{sfx}-{variant}"), "evaluate")
                trained[variant], evaluated[variant] = t, e
            inputs = dict(train_cot=trained["cot"].outputs["model"], train_lema=trained["lema"].outputs["model"],
                          eval_cot=evaluated["cot"].outputs["results"],
                          eval_lema=evaluated["lema"].outputs["results"], paths=paths.outputs["paths"],
                          corrections=corrections.outputs["corrections"], valid=valid.outputs["valid"])
            ok = place(c["gate"](eval_cot=inputs["eval_cot"], eval_lema=inputs["eval_lema"],
                                 metric=reg.primary_metric, min_accuracy=min_accuracy), "")
            with dsl.If(ok.output == True, name="good-enough-to-register" + sfx):  # noqa: E712 (KFP syntax)
                if prev is None:
                    registered = c["register"](config=conf["register"], sft=sft.outputs["sft"], **inputs)
                else:
                    registered = c["register-round"](config=conf["register"], rnd=rnd, champion=gen.outputs["model"],
                                                     sft=sft.outputs["sft"], **inputs)
                    registered.set_display_name(f"register{sfx}")
                place(registered.set_caching_options(False), "register")
                place(c["report"](config=conf["report"], registry=registered.outputs["registry"], **inputs),
                      "report")
                if rnd < rounds:
                    one_round(rnd + 1, {"registry": registered.outputs["registry"], **data})
            with dsl.Else(name="not-registered" + sfx):
                place(c["report"](config=conf["report"], **inputs), "report")

        one_round(1, None)

    return lema
