"""Bridge between orchestrator artifacts (Kubeflow) and lema's run directory.

A Kubeflow component gets each input artifact at some path and must write each
output artifact at another.  ``run_stage`` lays the inputs out where the stage
functions expect them in a scratch run dir, runs the very same stage function
``lema run`` uses, and copies the outputs back.  Sharding (fan-out) and merging
(fan-in) of collect and correct live here too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from . import pipeline as pl
from .config import Config
from .jsonl import read_jsonl, write_json, write_jsonl
from .records import Correction, Quarantined, SampledPath, StageReport

# Artifact name -> its location inside a run dir.
LOCATIONS = {
    "base_model": lambda p: p.base_model,
    "collect": lambda p: p.collect,
    "correct": lambda p: p.correct,
    "validate": lambda p: p.validate,
    "sft": lambda p: p.sft,
    "train_cot": lambda p: p.train("cot"),
    "train_lema": lambda p: p.train("lema"),
    "eval_cot": lambda p: p.eval("cot"),
    "eval_lema": lambda p: p.eval("lema"),
    "register": lambda p: p.register,
    "report": lambda p: p.report,
}


def config_from_text(text: str, run_dir: str | Path) -> Config:
    from .config import config_from_dict

    data = yaml.safe_load(text) or {}
    data["run_dir"] = str(run_dir)
    return config_from_dict(data, Path(os.environ.get("LEMA_HOME", ".")))


def _place(src: str | Path, dst: Path) -> None:
    src = Path(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
    os.symlink(src.resolve(), dst, target_is_directory=src.is_dir())


def _export(src: Path, dst: str | Path) -> None:
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    shutil.copytree(src, dst, symlinks=False, ignore=shutil.ignore_patterns("checkpoints"))


def run_stage(stage: str, config_text: str, inputs: dict[str, str], outputs: dict[str, str],
              variant: str | None = None, shard: tuple[int, int] | None = None, generator: str = "") -> StageReport:
    """Run one stage in a scratch run dir wired to artifact paths."""
    with tempfile.TemporaryDirectory(prefix=f"lema-{stage}-") as tmp:
        cfg = config_from_text(config_text, tmp)
        if cfg.data.source == "bundled" and not Path(cfg.data.dir).is_absolute():
            cfg.data.dir = str(Path(os.environ.get("LEMA_HOME", ".")) / cfg.data.dir)
        p = pl.paths(cfg)
        for name, path in inputs.items():
            _place(path, LOCATIONS[name](p))
        report = _dispatch(stage, cfg, variant, shard, generator)
        for name, path in outputs.items():
            _export(LOCATIONS[name](p), path)
        return report


def _dispatch(stage: str, cfg: Config, variant: str | None, shard: tuple[int, int] | None,
              generator: str) -> StageReport:
    if stage == "collect" and (shard or generator):
        return collect_shard(cfg, *(shard or (0, 1)), generator=generator)
    if stage == "correct" and shard:
        return correct_shard(cfg, *shard)
    simple = {"base-model": pl.stage_base_model, "collect": pl.stage_collect, "correct": pl.stage_correct,
              "validate": pl.stage_validate, "build-sft": pl.stage_build_sft, "register": pl.stage_register,
              "report": pl.stage_report}
    if stage in simple:
        return simple[stage](cfg)
    if stage in ("train", "evaluate") and variant in pl.VARIANTS:
        return (pl.stage_train if stage == "train" else pl.stage_evaluate)(cfg, variant)
    raise ValueError(f"unknown stage {stage!r} (variant {variant!r})")


# ---- fan-out / fan-in ---------------------------------------------------------

def collect_shard(cfg: Config, index: int, count: int, generator: str = "") -> StageReport:
    """Collect on every count-th training question, starting at index (one generator, or all)."""
    from .collect import run_collect

    problems = pl.train_problems(cfg, cfg.data.train_limit)[index::count]
    gens = [g for g in cfg.generators if generator in ("", g.name)]
    if not gens:
        raise ValueError(f"no generator named {generator!r} in the config")
    return run_collect(problems, gens, pl.generator_backend(cfg), lambda m: pl.resolve_model(cfg, m),
                       pl.paths(cfg).collect, seed=cfg.seed + index)


def merge_collect(shard_dirs: list[str], out_dir: str | Path) -> StageReport:
    from .collect import write_collect

    paths: list[SampledPath] = []
    questions = 0
    for d in shard_dirs:
        paths += read_jsonl(Path(d) / "paths.jsonl", SampledPath)
        questions += json.loads((Path(d) / "report.json").read_text())["n_in"]
    return write_collect(paths, out_dir, questions)


def correct_shard(cfg: Config, index: int, count: int) -> StageReport:
    """Correct every count-th wrong path (the wrong paths come in as the collect artifact)."""
    from .correct import run_correct
    from .records import WrongPath

    p = pl.paths(cfg)
    rows = read_jsonl(p.collect / "wrong.jsonl", WrongPath)[index::count]
    shard_in = p.root / "shard-wrong.jsonl"
    write_jsonl(shard_in, rows)
    return run_correct(shard_in, p.correct / "corrections.jsonl", p.correct / "quarantine.jsonl",
                       pl.corrector_for(cfg, p.correct / "cache"), p.correct / "report.json")


def merge_correct(shard_dirs: list[str], out_dir: str | Path) -> StageReport:
    from collections import Counter

    corrections: list[Correction] = []
    quarantined: list[Quarantined] = []
    n_in = 0
    for d in shard_dirs:
        corrections += read_jsonl(Path(d) / "corrections.jsonl", Correction)
        quarantined += read_jsonl(Path(d) / "quarantine.jsonl", Quarantined)
        n_in += json.loads((Path(d) / "report.json").read_text())["n_in"]
    out = Path(out_dir)
    write_jsonl(out / "corrections.jsonl", corrections)
    write_jsonl(out / "quarantine.jsonl", quarantined)
    report = StageReport(stage="correct", n_in=n_in, n_out=len(corrections), n_quarantined=len(quarantined),
                         details={"shards": len(shard_dirs),
                                  "unlocalised_reasons": dict(Counter(q.reasons[0].split(":")[0] for q in quarantined)),
                                  "incorrect_step_histogram": dict(Counter(c.incorrect_step for c in corrections))},
                         outputs={"corrections": str(out / "corrections.jsonl")})
    write_json(out / "report.json", report)
    return report
