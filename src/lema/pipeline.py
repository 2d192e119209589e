"""The LeMa loop as named stages over a run directory.

Each stage reads and writes fixed paths under ``run_dir`` (``Paths``), so the
CLI, DVC and Kubeflow call the same functions and get the same artifacts.
Which stages run, in what order and when they are skipped is declared in
``lema.stages`` and executed by DVC (``lema.orchestration``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config, GeneratorConfig
from .jsonl import read_jsonl, write_json
from .records import Correction, EvalRow, StageReport

VARIANTS = ("cot", "lema")


@dataclass(frozen=True)
class Paths:
    """A round's artifact locations: round 1 in the run dir itself, round r under ``rounds/<r>/``."""

    root: Path
    round: int = 1

    @property
    def dir(self) -> Path: return self.root if self.round == 1 else self.root / "rounds" / str(self.round)
    @property
    def base_model(self) -> Path: return self.root / "models" / "base"
    @property
    def generator(self) -> Path: return self.dir / "generator"
    @property
    def collect(self) -> Path: return self.dir / "collect"
    @property
    def correct(self) -> Path: return self.dir / "correct"
    @property
    def validate(self) -> Path: return self.dir / "validate"
    @property
    def pool(self) -> Path: return self.dir / "pool"
    @property
    def sft(self) -> Path: return self.dir / "sft"
    def train(self, variant: str) -> Path: return self.dir / "train" / variant
    def model(self, variant: str) -> Path: return self.train(variant) / "model"
    def eval(self, variant: str) -> Path: return self.dir / "eval" / variant
    @property
    def register(self) -> Path: return self.dir / "register"
    @property
    def report(self) -> Path: return self.dir / "report"

    def cumulative(self) -> tuple[Path, Path]:
        """(validated corrections, right paths) of every round up to this one."""
        if self.round == 1:
            return self.validate / "valid.jsonl", self.collect / "right.jsonl"
        return self.pool / "valid.jsonl", self.pool / "right.jsonl"


def paths(cfg: Config, rnd: int = 1) -> Paths:
    return Paths(cfg.run_path, rnd)


def resolve_model(cfg: Config, name: str) -> str:
    """'base' is the embedded default; anything else is a HF id or a local path."""
    return str(paths(cfg).base_model) if name == "base" else name


def _vllm_options(cfg: Config) -> dict:
    return cfg.vllm.model_dump()


def backend_for(cfg: Config, kind: str, model: str, base_url: str | None = None):
    from .generate import make_backend

    return make_backend(kind, model, seed=cfg.seed, base_url=base_url, vllm_options=_vllm_options(cfg))


def train_problems(cfg: Config, limit: int | None, offset: int = 0):
    from .data import load_split

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


def eval_sets(cfg: Config, full: bool = False):
    """Evaluation problems per set; `full` ignores the configured subset sizes (for leakage checks)."""
    from .data import load_eval_set

    return {name: load_eval_set(name, spec, cfg.data.source, cfg.data.dir, full)
            for name, spec in cfg.data.eval_sets.items()}


# ---- stages -----------------------------------------------------------------

def stage_base_model(cfg: Config) -> StageReport:
    from .base_model import build_base_model

    report = build_base_model(cfg.base_model, paths(cfg).base_model, data_source=cfg.data.source,
                              data_dir=cfg.data.dir, seed=cfg.seed)
    write_json(paths(cfg).base_model.parent / "base_report.json", report)
    return report


def generator_backend(cfg: Config):
    """Factory: one backend per generator config (model names resolved)."""
    def make(g: GeneratorConfig):
        return backend_for(cfg, g.backend, resolve_model(cfg, g.model), g.base_url)

    return make


def corrector_for(cfg: Config, cache_dir: Path, kind: str | None = None):
    """The configured corrector; LLM-backed ones keep their response cache in `cache_dir`."""
    from .correct import make_corrector

    kind = kind or cfg.corrector.kind
    return make_corrector(kind) if kind == "reference" else make_corrector(kind, cfg=cfg.corrector,
                                                                           cache_dir=cache_dir)


def stage_champion(cfg: Config, rnd: int) -> StageReport:
    """Round `rnd`'s generator: the registry champion after round rnd-1, resolved by alias and downloaded."""
    from .register import download_champion, tracking_uri

    p = paths(cfg, rnd)
    details = download_champion(tracking_uri(cfg.register_.tracking_uri, cfg.run_dir), cfg.register_.model_name,
                                p.generator / "model")
    report = StageReport(stage="champion", n_in=1, n_out=1, details={"round": rnd, **details},
                         outputs={"model": str(p.generator / "model")})
    write_json(p.generator / "report.json", report)
    return report


def stage_collect(cfg: Config, rnd: int = 1) -> StageReport:
    from .collect import run_collect

    return run_collect(collect_problems(cfg, rnd), round_generators(cfg, rnd), generator_backend(cfg),
                       lambda m: resolve_model(cfg, m), paths(cfg, rnd).collect, seed=cfg.seed)


def stage_pool(cfg: Config, rnd: int) -> StageReport:
    """Every round's validated corrections and right paths so far: what round `rnd` trains on."""
    from .jsonl import write_jsonl
    from .records import SampledPath

    prev, p = paths(cfg, rnd - 1), paths(cfg, rnd)
    prev_valid, prev_right = prev.cumulative()
    earlier = read_jsonl(prev_valid, Correction)
    valid = earlier + read_jsonl(p.validate / "valid.jsonl", Correction)
    right = read_jsonl(prev_right, SampledPath) + read_jsonl(p.collect / "right.jsonl", SampledPath)
    write_jsonl(p.pool / "valid.jsonl", valid)
    write_jsonl(p.pool / "right.jsonl", right)
    report = StageReport(stage="pool", n_in=len(valid) + len(right), n_out=len(valid),
                         details={"round": rnd, "corrections": len(valid), "right_paths": len(right),
                                  "new_corrections": len(valid) - len(earlier)},
                         outputs={"valid": str(p.pool / "valid.jsonl"), "right": str(p.pool / "right.jsonl")})
    write_json(p.pool / "report.json", report)
    return report


def stage_correct(cfg: Config, rnd: int = 1) -> StageReport:
    from .correct import run_correct

    p = paths(cfg, rnd)
    return run_correct(p.collect / "wrong.jsonl", p.correct / "corrections.jsonl", p.correct / "quarantine.jsonl",
                       corrector_for(cfg, p.correct / "cache"), p.correct / "report.json")


def stage_validate(cfg: Config, rnd: int = 1) -> StageReport:
    from .validate import run_validate

    p = paths(cfg, rnd)
    v = cfg.validate_
    eval_questions = [q.question for problems in eval_sets(cfg, full=True).values() for q in problems]
    report = run_validate(p.correct / "corrections.jsonl", p.validate / "valid.jsonl",
                          p.validate / "quarantine.jsonl", p.validate / "ge_result.json", v.min_pass_rate,
                          eval_questions=eval_questions, leakage_ngram=v.leakage_ngram,
                          leakage_threshold=v.leakage_threshold,
                          docs_dir=p.validate / "data_docs" if v.data_docs else None)
    write_json(p.validate / "report.json", report)
    return report


def stage_build_sft(cfg: Config, rnd: int = 1) -> StageReport:
    from .sft import run_build_sft

    p = paths(cfg, rnd)
    s = cfg.sft
    valid, right = p.cumulative()
    return run_build_sft(train_problems(cfg, s.cot_limit), valid, right, p.sft,
                         include_right_paths=s.include_right_paths,
                         correction_fraction=s.correction_fraction, cot_repeats=s.cot_repeats,
                         explanations=s.explanations, seed=cfg.seed)


def stage_train(cfg: Config, variant: str, rnd: int = 1) -> StageReport:
    from .train import train

    p = paths(cfg, rnd)
    return train(resolve_model(cfg, cfg.train.model), p.sft / f"{variant}.jsonl", p.train(variant), cfg.train,
                 seed=cfg.seed, name=variant)


def stage_evaluate(cfg: Config, variant: str, rnd: int = 1) -> StageReport:
    from .evaluate import run_evaluate

    p = paths(cfg, rnd)
    backend = backend_for(cfg, cfg.evaluate.backend, str(p.model(variant)))
    try:
        e = cfg.evaluate
        return run_evaluate(backend, variant, eval_sets(cfg), p.eval(variant), max_tokens=e.max_tokens,
                            shots=e.shots, stop=e.stop, samples=e.samples, sample_temperature=e.sample_temperature,
                            seed=cfg.seed)
    finally:
        backend.close()


def comparison(cfg: Config, rnd: int = 1) -> dict:
    """LeMa vs CoT-only on the same questions, per evaluation set."""
    from .stats import compare_paired

    p = paths(cfg, rnd)
    rows = {v: read_jsonl(p.eval(v) / "rows.jsonl", EvalRow) for v in VARIANTS}
    out = {}
    for s in cfg.data.eval_sets:
        a = {r.id: r.correct for r in rows["cot"] if r.eval_set == s}
        b = {r.id: r.correct for r in rows["lema"] if r.eval_set == s}
        ids = sorted(a.keys() & b.keys())
        out[s] = compare_paired([a[i] for i in ids], [b[i] for i in ids], seed=cfg.seed)
    return out


def stage_register(cfg: Config, rnd: int = 1) -> StageReport:
    from .register import git_commit, register_models, tracking_uri

    p = paths(cfg, rnd)
    candidates = []
    for v in VARIANTS:
        metrics = json.loads((p.eval(v) / "metrics.json").read_text())
        loss_file = p.train(v) / "loss.json"
        candidates.append({"name": v, "model_dir": p.model(v), "metrics": metrics, "rows": p.eval(v) / "rows.jsonl",
                           "loss_history": json.loads(loss_file.read_text()) if loss_file.exists() else [],
                           "artifacts": [p.eval(v) / "metrics.json"]})
    funnel = funnel_counts(cfg, rnd)
    stage_metrics = {f"funnel.{k.replace(' ', '_')}": v for k, v in funnel.items()}
    usage = json.loads((p.correct / "report.json").read_text())["details"].get("usage", {})
    stage_metrics |= {f"correct.{k}": v for k, v in usage.items() if isinstance(v, (int, float))}
    report = register_models(
        candidates, uri=tracking_uri(cfg.register_.tracking_uri, cfg.run_dir), experiment=cfg.register_.experiment,
        model_name=cfg.register_.model_name, primary_metric=cfg.register_.primary_metric,
        params=cfg.model_dump(mode="json", by_alias=True),
        run_artifacts=[p.validate / "ge_result.json", p.validate / "data_docs", p.correct / "report.json",
                       p.collect / "report.json"],
        stage_metrics=stage_metrics,
        tags={"config_hash": cfg.section_hash(*cfg.model_dump(by_alias=True).keys()),
              "git_commit": git_commit(os.environ.get("LEMA_HOME", ".")),
              "data_version": data_version(cfg, rnd)} | lineage_tags(p),
        alpha=cfg.register_.alpha, min_questions=cfg.register_.min_questions, seed=cfg.seed)
    write_json(p.register / "report.json", report)
    return report


def lineage_tags(p: Paths) -> dict[str, str]:
    """``lema.round`` always; ``lema.parent_version`` (the champion that generated this round's mistakes) from
    round 2 on."""
    tags = {"lema.round": str(p.round)}
    if p.round > 1:
        tags["lema.parent_version"] = str(json.loads((p.generator / "report.json").read_text())["details"]["version"])
    return tags


def data_version(cfg: Config, rnd: int = 1) -> str:
    """Content hash of the training and evaluation data a model saw (the DVC md5s where dvc.lock has them)."""
    p = paths(cfg, rnd)
    h = hashlib.sha256()
    lock = Path("dvc.lock")
    if lock.exists():
        h.update(lock.read_bytes())
    for f in (p.sft / "cot.jsonl", p.sft / "lema.jsonl"):
        _file_digest(f, h)
    from .data import eval_set_file

    for name, spec in cfg.data.eval_sets.items():
        f = eval_set_file(name, spec, cfg.data.dir)
        if f is not None:
            _file_digest(f, h)
    return h.hexdigest()[:16]


def funnel_counts(cfg: Config, rnd: int = 1) -> dict[str, int]:
    p = paths(cfg, rnd)
    collect = json.loads((p.collect / "report.json").read_text())
    correct = json.loads((p.correct / "report.json").read_text())
    validate = json.loads((p.validate / "report.json").read_text())
    return {"sampled paths": collect["details"]["samples"], "wrong paths": collect["n_out"],
            "corrected": correct["n_out"], "validated": validate["n_out"]}


def stage_report(cfg: Config, rnd: int = 1) -> StageReport:
    from .report import write_report

    p = paths(cfg, rnd)
    metrics = {v: json.loads((p.eval(v) / "metrics.json").read_text()) for v in VARIANTS}
    losses = {v: json.loads((p.train(v) / "loss.json").read_text()) for v in VARIANTS
              if (p.train(v) / "loss.json").exists()}
    corrections = read_jsonl(p.validate / "valid.jsonl", Correction)
    from .report import step_histogram

    stages = [json.loads(f.read_text()) for f in collect_reports(p)]
    registry_file = p.register / "report.json"
    registry = json.loads(registry_file.read_text())["details"] if registry_file.exists() else None
    cmp = comparison(cfg, rnd)
    path = write_report(p.report, funnel=funnel_counts(cfg, rnd), metrics=metrics,
                        step_histogram=step_histogram(corrections), losses=losses, stages=stages,
                        registry=registry, comparison=cmp)
    # Tabular copies for `dvc plots show`.
    funnel = funnel_counts(cfg, rnd)
    write_json(p.report / "funnel.json", {"funnel": [{"step": k, "rows": v} for k, v in funnel.items()]})
    write_json(p.report / "accuracy.json", {"accuracy": [
        {"model": f"{v}:{s}", "accuracy": m["accuracy"]} for v, sets in metrics.items() for s, m in sets.items()]})
    summary = {"funnel": funnel_counts(cfg, rnd), "metrics": metrics, "comparison": cmp, "registry": registry,
               "report": str(path)}
    write_json(p.dir / "summary.json", summary)
    if registry:
        from .register import log_report

        log_report(registry, p.report)
    return StageReport(stage="report", n_in=len(stages), n_out=1, outputs={"report": str(path)})


def collect_reports(p: Paths) -> list[Path]:
    files = [p.base_model.parent / "base_report.json", p.collect / "report.json", p.correct / "report.json",
             p.validate / "report.json", p.sft / "report.json"]
    files += [p.train(v) / "report.json" for v in VARIANTS] + [p.eval(v) / "report.json" for v in VARIANTS]
    files += [p.register / "report.json"]
    return [f for f in files if f.exists()]


def _file_digest(path: Path, h) -> None:
    if path.is_dir():
        for f in sorted(x for x in path.rglob("*") if x.is_file() and "checkpoints" not in x.parts):
            h.update(str(f.relative_to(path)).encode())
            _file_digest(f, h)
    elif path.exists():
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
