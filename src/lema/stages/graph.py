"""The one declaration of the LeMa stage graph.

Every orchestrator is generated from ``STAGES``: ``dvc.yaml`` (``lema dvc generate``), the local runner
(``lema run``, through DVC's engine), the CLI stage subcommands and the Kubeflow pipeline.  A stage says
which config keys it reads (DVC params, so a change reruns exactly that stage and its descendants), what it
reads and writes under the run dir, its metrics and plots, and where it runs (CPU/GPU).

Paths are relative to the run dir and may contain ``{variant}``; a stage with ``variants`` is expanded
once per variant (DVC ``foreach``, one KFP task each).

Rounds (``rounds: N``): ``instances`` expands every stage once per round.  Round 1 is the plain graph (its
paths and names unchanged); round r >= 2 lives under ``rounds/<r>/`` and its nodes are named ``collect-r2``,
``train-r2@cot`` (DVC reserves ``@`` for foreach members, so the round goes into the stage key).  A round's
paths are relative to its own directory; ``{prev}/x`` names round r-1's ``x`` and ``{pool-1}/x`` round r-1's
cumulative pool (round 1: its own validated corrections and right paths).  Two stages exist only from round
2 on: ``champion`` (the previous round's registry champion, by alias) and ``pool`` (all rounds' data so far).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lema.config import Config
from lema.config.schema import CPU_PATTERN, MEMORY_PATTERN
from lema.records import StageReport
from lema.stages.layout import BASE_DIR, VARIANTS, pool_file, round_dir


@dataclass(frozen=True)
class Plot:
    path: str
    x: str
    y: str
    template: str | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    package: str                      # lema.stages.<package>: its folder holds the stage's shell and logic
    reads: tuple[str, ...]            # dotted config keys: DVC params
    artifact: str                     # the directory it owns (the KFP output artifact)
    deps: tuple[str, ...] = ()        # run-dir paths produced by other stages
    outs: tuple[str, ...] = ()        # cached outputs
    metrics: tuple[str, ...] = ()     # uncached JSON (the stage report first, unless report_file names it)
    report_file: str = ""             # the stage report when it is not a metric (metrics then hold numbers only)
    plots: tuple[Plot, ...] = ()
    variants: tuple[str, ...] = ()
    data: bool = False                # reads the bundled data directory
    recipes: bool = False             # reads training recipes (the `train.recipe` file)
    gpu: bool = False
    cpu: str = "2"
    memory: str = "8G"
    needs_base: bool = False          # depends on the embedded base model when a model is "base"
    when: Callable[[Config], bool] = field(default=lambda cfg: True)
    rounds: str = "all"               # "all", "first" (round 1 only) or "later" (rounds >= 2 only)
    later_deps: tuple[str, ...] | None = None  # deps in rounds >= 2 when they differ from round 1's
    base_later: bool = True           # rounds >= 2 still need the base model (collect does not: the champion)
    keeps: tuple[str, ...] = ()       # run-dir paths kept across reruns on purpose: not outputs (DVC deletes those)

    def __post_init__(self):
        # the compiled pipeline writes these as they are (lema.orchestration.kfp._place)
        if not re.match(CPU_PATTERN, self.cpu) or not re.match(MEMORY_PATTERN, self.memory):
            raise ValueError(f"stage {self.name}: cpu {self.cpu!r} / memory {self.memory!r} is not a Kubernetes "
                             "quantity")

    @property
    def report(self) -> str:
        return self.report_file or self.metrics[0]

    @property
    def fn(self) -> Callable[..., StageReport]:
        """The stage's entry point, ``lema.stages.<package>.stage.run`` (imported on use: declaring the graph
        imports no stage code)."""
        return importlib.import_module(f"lema.stages.{self.package}.stage").run


def base_needed(cfg: Config) -> bool:
    return any(g.model == "base" for g in cfg.generators) or cfg.train.model == "base"


_REGISTER_DEPS = (tuple(f"eval/{v}/{f}" for v in VARIANTS for f in ("metrics.json", "rows.jsonl"))
                  + tuple(f"train/{v}/model" for v in VARIANTS)
                  + ("collect/report.json", "correct/report.json", "validate/report.json", "validate/ge_result.json")
                  + tuple(f"sft/{v}.jsonl" for v in VARIANTS) + ("collect/wrong.jsonl", "validate/valid.jsonl"))

STAGES: tuple[Stage, ...] = (
    Stage("base-model", "base_model", ("seed", "data.source", "data.dir", "base_model"),
          artifact=BASE_DIR, outs=(BASE_DIR,), metrics=("models/base_report.json",), data=True,
          when=base_needed, rounds="first"),
    Stage("champion", "champion", ("register",), artifact="generator",
          deps=("{prev}/register/report.json",), outs=("generator/model",), metrics=("generator/report.json",),
          rounds="later"),
    Stage("collect", "collect",  # evaluate.backend: round r >= 2 serves an API generator's champion with it
          ("seed", "data.source", "data.dir", "data.train_tasks", "data.train_limit", "generators", "vllm",
           "evaluate.backend"),
          artifact="collect", outs=("collect/paths.jsonl", "collect/wrong.jsonl", "collect/right.jsonl"),
          metrics=("collect/report.json",), data=True, gpu=True, memory="16G", needs_base=True,
          later_deps=("generator/model",), base_later=False),
    Stage("correct", "correct", ("corrector",), artifact="correct",
          deps=("collect/wrong.jsonl",), outs=("correct/corrections.jsonl", "correct/quarantine.jsonl"),
          metrics=("correct/report.json",), keeps=("correct/cache",)),  # LLM responses: a rerun never pays twice
    Stage("validate", "validate",
          ("validate", "data.source", "data.dir", "data.eval_sets"), artifact="validate",
          deps=("correct/corrections.jsonl",),
          outs=("validate/valid.jsonl", "validate/quarantine.jsonl", "validate/ge_result.json",
                "validate/data_docs"),
          metrics=("validate/report.json",), data=True),
    Stage("pool", "pool", (), artifact="pool",
          deps=("{pool-1}/valid.jsonl", "{pool-1}/right.jsonl", "validate/valid.jsonl", "collect/right.jsonl"),
          outs=("pool/valid.jsonl", "pool/right.jsonl"), metrics=("pool/report.json",), rounds="later"),
    Stage("build-sft", "sft", ("seed", "data.source", "data.dir", "data.train_tasks", "sft"),
          artifact="sft", deps=("validate/valid.jsonl", "collect/right.jsonl"), outs=("sft/cot.jsonl", "sft/lema.jsonl"),
          metrics=("sft/report.json",), data=True, later_deps=("pool/valid.jsonl", "pool/right.jsonl")),
    Stage("train", "train", ("seed", "train"), artifact="train/{variant}",
          deps=("sft/{variant}.jsonl",), outs=("train/{variant}/model",), metrics=("train/{variant}/report.json",),
          plots=(Plot("train/{variant}/loss.json", "step", "loss"),), variants=VARIANTS, recipes=True, gpu=True,
          memory="16G", needs_base=True),
    Stage("evaluate", "evaluate",
          ("seed", "data.source", "data.dir", "data.eval_sets", "evaluate", "vllm"), artifact="eval/{variant}",
          deps=("train/{variant}/model",), outs=("eval/{variant}/rows.jsonl", "eval/{variant}/disagreements.jsonl"),
          metrics=("eval/{variant}/report.json", "eval/{variant}/metrics.json"), variants=VARIANTS, data=True,
          gpu=True, memory="16G"),
    Stage("register", "register",
          ("seed", "data.source", "data.dir", "data.eval_sets", "evaluate", "register"), artifact="register",
          deps=_REGISTER_DEPS, report_file="register/report.json", metrics=("register/promotion.json",), data=True,
          later_deps=_REGISTER_DEPS + ("generator/report.json",)),  # the parent champion, for lineage tags
    Stage("report", "report", ("seed", "data.eval_sets"), artifact="report",
          deps=("register/report.json", "validate/valid.jsonl")
          + tuple(f"train/{v}/loss.json" for v in VARIANTS),
          outs=("report/report.md", "report/figures", "summary.json"),
          metrics=("report/stage.json",),
          plots=(Plot("report/funnel.json", "rows", "step", "bar_horizontal"),
                 Plot("report/accuracy.json", "model", "accuracy", "bar_horizontal_sorted"))),
)

BY_NAME = {s.name: s for s in STAGES}
# Every run-dir path some stage declares (unformatted): the vocabulary ``Paths.file`` accepts.
DECLARED = frozenset(p for s in STAGES for p in (*s.outs, *s.metrics, *s.deps, *(s.later_deps or ()), *s.keeps,
                                                 *(x.path for x in s.plots), *((s.report_file,) if s.report_file
                                                                               else ())))




@dataclass(frozen=True)
class Instance:
    """One runnable node: a stage, expanded for one variant and one round."""

    stage: Stage
    variant: str | None = None
    round: int = 1

    @property
    def name(self) -> str:
        """The DVC stage name (``train@cot``, ``train-r2@cot``) and the display name."""
        return self.group + (f"@{self.variant}" if self.variant else "")

    @property
    def group(self) -> str:
        """The DVC stage key (a foreach group for a stage with variants)."""
        return self.stage.name + (f"-r{self.round}" if self.round > 1 else "")

    def fmt(self, path: str) -> str:
        if path.startswith("{prev}/"):
            return round_dir(self.round - 1) + path.removeprefix("{prev}/")
        if path.startswith("{pool-1}/"):
            return pool_file(self.round - 1, path.removeprefix("{pool-1}/"))
        return round_dir(self.round) + (path.format(variant=self.variant) if self.variant else path)

    @property
    def artifact(self) -> str:
        return self.fmt(self.stage.artifact)

    @property
    def report(self) -> str:
        return self.fmt(self.stage.report)

    @property
    def outputs(self) -> list[str]:
        own = (self.stage.report_file,) if self.stage.report_file else ()
        return [self.fmt(p) for p in (*self.stage.outs, *own, *self.stage.metrics)] + [self.fmt(p.path)
                                                                                  for p in self.stage.plots]

    @property
    def kept(self) -> list[str]:
        return [self.fmt(p) for p in self.stage.keeps]

    def deps(self, cfg: Config) -> list[str]:
        later = self.round > 1
        src = self.stage.later_deps if later and self.stage.later_deps is not None else self.stage.deps
        d = [self.fmt(p) for p in src]
        if self.stage.needs_base and base_needed(cfg) and (self.stage.base_later or not later):
            d.append(BASE_DIR)
        return d

    def run(self, cfg: Config) -> StageReport:
        kw = {"rnd": self.round} if self.stage.rounds != "first" else {}
        return self.stage.fn(cfg, self.variant, **kw) if self.variant else self.stage.fn(cfg, **kw)


def in_round(st: Stage, rnd: int) -> bool:
    return {"all": True, "first": rnd == 1, "later": rnd > 1}[st.rounds]


def instances(cfg: Config) -> list[Instance]:
    """Every node of the graph for this config, in a valid execution order."""
    out = []
    for rnd in range(1, cfg.rounds + 1):
        for st in STAGES:
            if st.when(cfg) and in_round(st, rnd):
                out += [Instance(st, v, rnd) for v in st.variants] if st.variants else [Instance(st, None, rnd)]
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


def artifact_locations(rnd: int = 1) -> dict[str, str]:
    """KFP artifact name (``train_cot``) -> directory inside a run dir, for the stages of round `rnd`; in a
    later round ``prev_<name>`` is round r-1's artifact and ``base_model`` stays the shared one."""
    out = {}
    for r, prefix in ((rnd - 1, "prev_"), (rnd, "")) if rnd > 1 else ((1, ""),):
        for st in STAGES:
            if in_round(st, r) or st.rounds == "first":
                for v in st.variants or (None,):
                    inst = Instance(st, v, r if in_round(st, r) else 1)
                    out[prefix + artifact_name(inst)] = inst.artifact
    return out


def artifact_name(node: Instance) -> str:
    return node.stage.name.replace("-", "_") + (f"_{node.variant}" if node.variant else "")
