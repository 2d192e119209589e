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

from lema.config import Config
from lema.jsonl import read_jsonl, write_json, write_jsonl
from lema.records import Correction, Quarantined, SampledPath, StageReport
from lema.stages import BY_NAME, Instance, artifact_locations
from lema.stages.common import collect_problems, corrector_for, generator_backend, resolve_model, round_generators
from lema.stages.layout import paths

# Artifact name -> its location inside a run dir, from the stage declaration.
LOCATIONS = {name: (lambda p, rel=rel: p.root / rel) for name, rel in artifact_locations().items()}


def project_home() -> Path:
    """Where a task's relative config paths (bundled data, recipe files) resolve: the image's checkout copy
    (``LEMA_HOME=/opt/lema``, set in images/Dockerfile.*), else the working directory (subprocess tasks)."""
    return Path(os.environ.get("LEMA_HOME", "."))


def config_from_text(text: str, run_dir: str | Path) -> Config:
    """The Config a task runs with: the keys it was given (``lema.config.serialize``), defaults elsewhere
    (the stage reads none of those), its scratch run dir."""
    from lema.config import config_from_dict

    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"task config: expected a JSON object, got {type(data).__name__}")
    data["run_dir"] = str(run_dir)
    return config_from_dict(data, project_home(), where="<task config>")


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
              variant: str | None = None, shard: tuple[int, int] | None = None, generator: str = "",
              cache_root: str = "", rnd: int = 1) -> StageReport:
    """Run one stage in a scratch run dir wired to artifact paths.  `rnd` >= 2: artifact names are those of
    that round (``prev_<name>`` for round rnd-1's), laid out where the round's stage functions read them."""
    with tempfile.TemporaryDirectory(prefix=f"lema-{stage}-") as tmp:
        cfg = config_from_text(config_text, tmp)
        if cfg.data.source == "bundled" and not Path(cfg.data.dir).is_absolute():
            cfg.data.dir = str(project_home() / cfg.data.dir)
        p = paths(cfg)
        where = LOCATIONS if rnd == 1 else {n: (lambda p, rel=rel: p.root / rel)
                                            for n, rel in artifact_locations(rnd).items()}
        for name, path in inputs.items():
            _place(path, where[name](p))
        report = _dispatch(stage, cfg, variant, shard, generator, cache_root, rnd)
        for name, path in outputs.items():
            _export(where[name](p), path)
        return report


def _dispatch(stage: str, cfg: Config, variant: str | None, shard: tuple[int, int] | None,
              generator: str, cache_root: str = "", rnd: int = 1) -> StageReport:
    if stage == "collect" and (shard or generator):
        return collect_shard(cfg, *(shard or (0, 1)), generator=generator, rnd=rnd)
    if stage == "correct":
        return correct_shard(cfg, *(shard or (0, 1)), cache_root=cache_root)
    if stage not in BY_NAME:
        raise ValueError(f"unknown stage {stage!r}")
    st = BY_NAME[stage]
    if bool(st.variants) != bool(variant) or (variant and variant not in st.variants):
        raise ValueError(f"stage {stage!r}: variant {variant!r} not in {st.variants}")
    node = Instance(st, variant, rnd)
    report = node.run(cfg)
    write_json(cfg.run_path / node.report, report)
    return report


# ---- fan-out / fan-in ---------------------------------------------------------

def collect_shard(cfg: Config, index: int, count: int, generator: str = "", rnd: int = 1) -> StageReport:
    """Collect on every count-th training question, starting at index (one generator, or all)."""
    from lema.stages.collect.collect import run_collect

    problems = collect_problems(cfg, rnd)[index::count]
    gens = [g for g in round_generators(cfg, rnd) if generator in ("", g.name)]
    if not gens:
        raise ValueError(f"no generator named {generator!r} in the config")
    # seeds are per (generator, question), so any sharding samples the paths a local run samples
    return run_collect(problems, gens, generator_backend(cfg), lambda m: resolve_model(cfg, m),
                       paths(cfg, rnd).collect, seed=cfg.seed)


def merge_collect(shard_dirs: list[str], out_dir: str | Path) -> StageReport:
    """Paths of every (generator, shard) task, in the order one local run writes them: generators in
    config order, questions in data order (shard i holds questions i, i+count, ...: interleaved back)."""
    from lema.stages.collect.collect import write_collect

    by_gen: dict[str, list[list[list[SampledPath]]]] = {}
    questions = 0
    for d in shard_dirs:
        rows = read_jsonl(Path(d) / "paths.jsonl", SampledPath)
        questions += json.loads((Path(d) / "report.json").read_text())["n_in"]
        groups: list[list[SampledPath]] = []
        for r in rows:
            if not groups or groups[-1][0].id != r.id:
                groups.append([])
            groups[-1].append(r)
        if rows:
            by_gen.setdefault(rows[0].generator, []).append(groups)
    paths: list[SampledPath] = []
    for shards in by_gen.values():
        for k in range(max(len(g) for g in shards)):
            for groups in shards:
                if k < len(groups):
                    paths += groups[k]
    return write_collect(paths, out_dir, questions // max(1, len(by_gen)))


def correct_shard(cfg: Config, index: int, count: int, cache_root: str = "") -> StageReport:
    """Correct every count-th wrong path (the wrong paths come in as the collect artifact).

    `cache_root` (the mounted PVC in a cluster, a directory under the pipeline root locally) holds the LLM
    corrector's response cache and Batch ids, so a retried or rerun task never pays for an answer twice."""
    from lema.records import WrongPath
    from lema.stages.correct.correct import run_correct

    if not cache_root:
        raise ValueError("correct task: cache_root is empty; the pipeline's corrector_cache parameter names the "
                         "persistent cache (by default the mount path of the kubeflow.cache_pvc volume)")
    p = paths(cfg)
    rows = read_jsonl(p.collect / "wrong.jsonl", WrongPath)[index::count]
    shard_in = p.root / "shard-wrong.jsonl"
    write_jsonl(shard_in, rows)
    # where each row sits in the unsharded input, so the merge restores the order a local run writes
    positions = [[index + k * count, r.id, r.generator, r.path] for k, r in enumerate(rows)]
    write_json(p.correct / "positions.json", {"positions": positions})
    return run_correct(shard_in, p.correct / "corrections.jsonl", p.correct / "quarantine.jsonl",
                       corrector_for(cfg, Path(cache_root) / "correct"),
                       p.correct / "report.json")


def merge_correct(shard_dirs: list[str], out_dir: str | Path) -> StageReport:
    from collections import Counter

    corrections: list[Correction] = []
    quarantined: list[Quarantined] = []
    n_in = 0
    usage: dict = {}
    order: dict[tuple, list[int]] = {}
    for d in shard_dirs:
        corrections += read_jsonl(Path(d) / "corrections.jsonl", Correction)
        quarantined += read_jsonl(Path(d) / "quarantine.jsonl", Quarantined)
        pos_file = Path(d) / "positions.json"
        for pos, *key in json.loads(pos_file.read_text())["positions"] if pos_file.exists() else []:
            order.setdefault(tuple(key), []).append(pos)
        shard = json.loads((Path(d) / "report.json").read_text())
        n_in += shard["n_in"]
        usage = _add(usage, shard["details"].get("usage") or {})
    if order:  # back to the unsharded order (a stable sort; equal keys are equal inputs)
        taken = {k: iter(sorted(v)) for k, v in order.items()}
        pos = lambda r: next(taken[(r["id"], r["generator"], r["path"])])  # noqa: E731
        placed = [(pos(c.model_dump()), 0, c) for c in corrections] + [(pos(q.record), 1, q) for q in quarantined]
        corrections = [c for _, kind, c in sorted(placed, key=lambda t: t[0]) if kind == 0]
        quarantined = [q for _, kind, q in sorted(placed, key=lambda t: t[0]) if kind == 1]
    out = Path(out_dir)
    write_jsonl(out / "corrections.jsonl", corrections)
    write_jsonl(out / "quarantine.jsonl", quarantined)
    report = StageReport(stage="correct", n_in=n_in, n_out=len(corrections), n_quarantined=len(quarantined),
                         details={"shards": len(shard_dirs), "usage": usage,
                                  "unlocalised_reasons": dict(Counter(q.reasons[0].split(":")[0] for q in quarantined)),
                                  "incorrect_step_histogram": dict(Counter(c.incorrect_step for c in corrections))},
                         outputs={"corrections": str(out / "corrections.jsonl")})
    write_json(out / "report.json", report)
    return report


def _add(total: dict, more: dict) -> dict:
    """Sum of two usage records (numbers summed, nested counters merged)."""
    out = dict(total)
    for k, v in more.items():
        if isinstance(v, dict):
            out[k] = _add(out.get(k) or {}, v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = out.get(k, 0) + v
        else:
            out.setdefault(k, v)
    return out


def usage_metrics(report: StageReport) -> dict[str, float]:
    """Merged corrector usage as flat metrics (the KFP UI; register logs the same numbers to MLflow)."""
    return {f"correct.{k}": float(v) for k, v in (report.details.get("usage") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
