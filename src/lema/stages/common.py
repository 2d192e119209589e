"""What several stages share: which questions a round uses, model names, backends and correctors, and the
run's funnel and paired comparison (read by register and report)."""

from __future__ import annotations

import json
from pathlib import Path

from lema.config import Config, GeneratorConfig
from lema.jsonl import read_jsonl
from lema.records import EvalRow
from lema.stages.layout import VARIANTS, Paths, paths


def resolve_model(cfg: Config, name: str) -> str:
    """'base' is the embedded default; anything else is a HF id or a local path."""
    return str(paths(cfg).base_model) if name == "base" else name


def backend_for(cfg: Config, kind: str, model: str, base_url: str | None = None):
    from lema.llm.backends import make_backend

    return make_backend(kind, model, seed=cfg.seed, base_url=base_url, vllm_options=cfg.vllm.model_dump())


def generator_backend(cfg: Config):
    """Factory: one backend per generator config (model names resolved)."""
    def make(g: GeneratorConfig):
        return backend_for(cfg, g.backend, resolve_model(cfg, g.model), g.base_url)

    return make


def corrector_for(cfg: Config, cache_dir: Path, kind: str | None = None):
    """The configured corrector; LLM-backed ones keep their response cache in `cache_dir`."""
    from lema.stages.correct.correct import make_corrector

    kind = kind or cfg.corrector.kind
    return make_corrector(kind) if kind == "reference" else make_corrector(kind, cfg=cfg.corrector,
                                                                           cache_dir=cache_dir)


def train_problems(cfg: Config, limit: int | None, offset: int = 0):
    from lema.data import load_split

    return [p for t in cfg.data.train_tasks
            for p in load_split(f"{t}/train", cfg.data.source, cfg.data.dir,
                                None if limit is None else offset + limit)[offset:]]


def collect_problems(cfg: Config, rnd: int = 1):
    """Round r's fresh questions: the r-th slice of data.train_limit questions of each training task."""
    limit = cfg.data.train_limit
    if rnd == 1:
        return train_problems(cfg, limit)
    if limit is None:
        raise ValueError("rounds > 1 needs data.train_limit (each round collects on the next slice)")
    problems = train_problems(cfg, limit, offset=(rnd - 1) * limit)
    if len(problems) < limit * len(cfg.data.train_tasks):
        raise ValueError(f"round {rnd} needs training questions {(rnd - 1) * limit}..{rnd * limit - 1} of each of "
                         f"{cfg.data.train_tasks}, only {len(problems)} are left: lower data.train_limit or rounds")
    return problems


def round_generators(cfg: Config, rnd: int = 1) -> list[GeneratorConfig]:
    """Round 1 samples with the configured generators; round r >= 2 with the same sampling settings on the
    previous round's champion (downloaded by the champion stage), served by the evaluation backend when the
    configured one is a remote API."""
    if rnd == 1:
        return cfg.generators
    model = str(paths(cfg, rnd).generator / "model")
    return [g.model_copy(update={"model": model, "base_url": None,
                                 "backend": cfg.evaluate.backend if g.backend == "openai" else g.backend})
            for g in cfg.generators]


def eval_sets(cfg: Config, full: bool = False, skipped: dict[str, list] | None = None):
    """Evaluation problems per set; `full` ignores the configured subset sizes (for leakage checks);
    rows dropped by a set's `on_invalid: skip` are listed in `skipped[name]` as (line, why)."""
    from lema.data import load_eval_set

    skipped = {} if skipped is None else skipped
    return {name: load_eval_set(name, spec, cfg.data.source, cfg.data.dir, full, skipped.setdefault(name, []))
            for name, spec in cfg.data.eval_sets.items()}


def comparison(cfg: Config, rnd: int = 1) -> dict:
    """LeMa vs CoT-only on the same questions, per evaluation set."""
    from lema.stats import compare_paired

    p = paths(cfg, rnd)
    rows = {v: read_jsonl(p.eval(v) / "rows.jsonl", EvalRow) for v in VARIANTS}
    out = {}
    for s in cfg.data.eval_sets:
        a = {r.id: r.correct for r in rows["cot"] if r.eval_set == s}
        b = {r.id: r.correct for r in rows["lema"] if r.eval_set == s}
        ids = sorted(a.keys() & b.keys())
        out[s] = compare_paired([a[i] for i in ids], [b[i] for i in ids], seed=cfg.seed)
    return out


def funnel_counts(cfg: Config, rnd: int = 1) -> dict[str, int]:
    p = paths(cfg, rnd)
    collect = json.loads((p.collect / "report.json").read_text())
    correct = json.loads((p.correct / "report.json").read_text())
    validate = json.loads((p.validate / "report.json").read_text())
    return {"sampled paths": collect["details"]["samples"], "wrong paths": collect["n_out"],
            "corrected": correct["n_out"], "validated": validate["n_out"]}


def collect_reports(p: Paths) -> list[Path]:
    files = [p.base_model.parent / "base_report.json", p.collect / "report.json", p.correct / "report.json",
             p.validate / "report.json", p.sft / "report.json"]
    files += [p.train(v) / "report.json" for v in VARIANTS] + [p.eval(v) / "report.json" for v in VARIANTS]
    files += [p.register / "report.json"]
    return [f for f in files if f.exists()]
