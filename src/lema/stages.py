"""The one declaration of the LeMa stage graph.

Every orchestrator is generated from ``STAGES``: ``dvc.yaml`` (``lema dvc generate``), the local runner
(``lema run``, through DVC's engine), the CLI stage subcommands and the Kubeflow pipeline.  A stage says
which config keys it reads (DVC params, so a change reruns exactly that stage and its descendants), what it
reads and writes under the run dir, its metrics and plots, and where it runs (CPU/GPU).

Paths are relative to the run dir and may contain ``{variant}``; a stage with ``variants`` is expanded
once per variant (DVC ``foreach``, one KFP task each).  A future ``{round}`` placeholder is threaded the same
way: ``instances`` expands it, nothing else needs to know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import pipeline as pl
from .config import Config
from .records import StageReport

VARIANTS = pl.VARIANTS


@dataclass(frozen=True)
class Plot:
    path: str
    x: str
    y: str
    template: str | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[..., StageReport]
    module: str                       # library module holding its logic (a code dependency)
    reads: tuple[str, ...]            # dotted config keys: DVC params
    artifact: str                     # the directory it owns (the KFP output artifact)
    deps: tuple[str, ...] = ()        # run-dir paths produced by other stages
    outs: tuple[str, ...] = ()        # cached outputs
    metrics: tuple[str, ...] = ()     # uncached JSON (the stage report first)
    plots: tuple[Plot, ...] = ()
    variants: tuple[str, ...] = ()
    data: bool = False                # reads the bundled data directory
    recipes: bool = False             # reads training recipes (the `train.recipe` file)
    gpu: bool = False
    cpu: str = "2"
    memory: str = "8G"
    needs_base: bool = False          # depends on the embedded base model when a model is "base"
    when: Callable[[Config], bool] = field(default=lambda cfg: True)

    @property
    def report(self) -> str:
        return self.metrics[0]


def base_needed(cfg: Config) -> bool:
    return any(g.model == "base" for g in cfg.generators) or cfg.train.model == "base"


BASE_DIR = "models/base"

STAGES: tuple[Stage, ...] = (
    Stage("base-model", pl.stage_base_model, "base_model", ("seed", "data.source", "data.dir", "base_model"),
          artifact=BASE_DIR, outs=(BASE_DIR,), metrics=("models/base_report.json",), data=True,
          when=base_needed),
    Stage("collect", pl.stage_collect, "collect",
          ("seed", "data.source", "data.dir", "data.train_tasks", "data.train_limit", "generators", "vllm"),
          artifact="collect", outs=("collect/paths.jsonl", "collect/wrong.jsonl", "collect/right.jsonl"),
          metrics=("collect/report.json",), data=True, gpu=True, memory="16G", needs_base=True),
    Stage("correct", pl.stage_correct, "correct", ("corrector",), artifact="correct",
          deps=("collect/wrong.jsonl",), outs=("correct/corrections.jsonl", "correct/quarantine.jsonl"),
          metrics=("correct/report.json",)),
    Stage("validate", pl.stage_validate, "validate",
          ("validate", "data.source", "data.dir", "data.eval_sets"), artifact="validate",
          deps=("correct/corrections.jsonl",),
          outs=("validate/valid.jsonl", "validate/quarantine.jsonl", "validate/ge_result.json",
                "validate/data_docs"),
          metrics=("validate/report.json",), data=True),
    Stage("build-sft", pl.stage_build_sft, "sft", ("seed", "data.source", "data.dir", "data.train_tasks", "sft"),
          artifact="sft", deps=("validate/valid.jsonl", "collect/right.jsonl"), outs=("sft/cot.jsonl", "sft/lema.jsonl"),
          metrics=("sft/report.json",), data=True),
    Stage("train", pl.stage_train, "train", ("seed", "train"), artifact="train/{variant}",
          deps=("sft/{variant}.jsonl",), outs=("train/{variant}/model",), metrics=("train/{variant}/report.json",),
          plots=(Plot("train/{variant}/loss.json", "step", "loss"),), variants=VARIANTS, recipes=True, gpu=True,
          memory="16G", needs_base=True),
    Stage("evaluate", pl.stage_evaluate, "evaluate",
          ("seed", "data.source", "data.dir", "data.eval_sets", "evaluate", "vllm"), artifact="eval/{variant}",
          deps=("train/{variant}/model",), outs=("eval/{variant}/rows.jsonl",),
          metrics=("eval/{variant}/report.json", "eval/{variant}/metrics.json"), variants=VARIANTS, data=True,
          gpu=True, memory="16G"),
    Stage("register", pl.stage_register, "register",
          ("seed", "data.source", "data.dir", "data.eval_sets", "register"), artifact="register",
          deps=tuple(f"eval/{v}/{f}" for v in VARIANTS for f in ("metrics.json", "rows.jsonl"))
          + tuple(f"train/{v}/model" for v in VARIANTS)
          + ("collect/report.json", "correct/report.json", "validate/report.json", "validate/ge_result.json"),
          metrics=("register/report.json",), data=True),
    Stage("report", pl.stage_report, "report", ("seed", "data.eval_sets"), artifact="report",
          deps=("register/report.json", "validate/valid.jsonl")
          + tuple(f"train/{v}/loss.json" for v in VARIANTS),
          outs=("report/report.md", "report/funnel.png", "report/accuracy.png"),
          metrics=("report/stage.json",),
          plots=(Plot("report/funnel.json", "rows", "step", "bar_horizontal"),
                 Plot("report/accuracy.json", "model", "accuracy", "bar_horizontal_sorted"))),
)

BY_NAME = {s.name: s for s in STAGES}


@dataclass(frozen=True)
class Instance:
    """One runnable node: a stage, expanded for one variant (and later one round)."""

    stage: Stage
    variant: str | None = None

    @property
    def name(self) -> str:
        """The DVC stage name (``train@cot``) and the display name."""
        return self.stage.name + (f"@{self.variant}" if self.variant else "")

    def fmt(self, path: str) -> str:
        return path.format(variant=self.variant) if self.variant else path

    @property
    def artifact(self) -> str:
        return self.fmt(self.stage.artifact)

    @property
    def report(self) -> str:
        return self.fmt(self.stage.report)

    @property
    def outputs(self) -> list[str]:
        return [self.fmt(p) for p in (*self.stage.outs, *self.stage.metrics)] + [self.fmt(p.path)
                                                                                  for p in self.stage.plots]

    def deps(self, cfg: Config) -> list[str]:
        d = [self.fmt(p) for p in self.stage.deps]
        if self.stage.needs_base and base_needed(cfg):
            d.append(BASE_DIR)
        return d

    def run(self, cfg: Config) -> StageReport:
        return self.stage.fn(cfg, self.variant) if self.variant else self.stage.fn(cfg)


def instances(cfg: Config) -> list[Instance]:
    """Every node of the graph for this config, in a valid execution order."""
    out = []
    for st in STAGES:
        if st.when(cfg):
            out += [Instance(st, v) for v in st.variants] if st.variants else [Instance(st)]
    return out


def producer(path: str, nodes: list[Instance]) -> Instance:
    """The node whose artifact directory holds `path`."""
    for n in nodes:
        if path == n.artifact or path.startswith(n.artifact + "/"):
            return n
    raise ValueError(f"no stage produces {path!r}")


def upstream(node: Instance, cfg: Config) -> list[Instance]:
    """Direct parents of a node (derived from its deps)."""
    nodes = instances(cfg)
    seen: dict[str, Instance] = {}
    for d in node.deps(cfg):
        p = producer(d, nodes)
        seen.setdefault(p.name, p)
    return list(seen.values())


def descendants(name: str, cfg: Config) -> set[str]:
    """A node and every node downstream of it."""
    nodes = instances(cfg)
    out = {name}
    for n in nodes:  # topological order: parents come first
        if any(p.name in out for p in upstream(n, cfg)):
            out.add(n.name)
    return out


def readers(key: str, cfg: Config) -> set[str]:
    """Nodes that read config key `key` directly (a key or any of its parents)."""
    return {n.name for n in instances(cfg)
            if any(key == r or key.startswith(r + ".") for r in n.stage.reads)}


def artifact_locations() -> dict[str, str]:
    """KFP artifact name (``train_cot``) -> directory inside a run dir."""
    out = {}
    for st in STAGES:
        for v in st.variants or (None,):
            inst = Instance(st, v)
            out[artifact_name(inst)] = inst.artifact
    return out


def artifact_name(node: Instance) -> str:
    return node.stage.name.replace("-", "_") + (f"_{node.variant}" if node.variant else "")
