"""The data behind a registered model, as MLflow dataset inputs: what it was trained on, evaluated on, and the
wrong paths and corrections its LeMa data came from, each with a content digest and its source."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lema.config import Config
from lema.jsonl import read_raw
from lema.stages.layout import paths

# Dataset contexts (MLflow's `mlflow.data.context` input tag).
TRAINING, EVALUATION, WRONG_PATHS, CORRECTIONS = "training", "evaluation", "wrong-paths", "corrections"
EVAL_FIELDS = ("id", "task", "question", "gold_answer", "level", "subject")


@dataclass(frozen=True)
class DataRecord:
    """One dataset input: `digest` is the md5 of the file (DVC's own) or of the rows used, `source` where it
    was read from (a path, or ``hf://<id>`` for a hub dataset)."""

    name: str
    context: str
    source: str
    digest: str
    rows: tuple[dict[str, Any], ...]


def file_record(path: str | Path, name: str, context: str) -> DataRecord:
    """A JSONL file as it is: its md5 is the digest (the same as DVC's for that file)."""
    path = Path(path)
    return DataRecord(name, context, str(path.resolve()), hashlib.md5(path.read_bytes()).hexdigest(),
                      tuple(read_raw(path)))


def eval_records(rows_file: str | Path, cfg: Config) -> list[DataRecord]:
    """Each evaluation set as the questions and gold answers the model was graded on (from its eval rows,
    so a subset or a limit is exactly what was used), digested row by row."""
    by_set: dict[str, list[dict]] = {}
    for r in read_raw(rows_file):
        by_set.setdefault(r["eval_set"], []).append({k: r.get(k) for k in EVAL_FIELDS})
    out = []
    for name, rows in by_set.items():
        canon = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
        out.append(DataRecord(name, EVALUATION, eval_source(name, cfg), hashlib.md5(canon.encode()).hexdigest(),
                              tuple(rows)))
    return out


def eval_source(name: str, cfg: Config) -> str:
    """Where an evaluation set is read from: its local file, or ``hf://<dataset id>`` for a hub set."""
    from lema.config.schema import EvalSetConfig
    from lema.data import HUB, HUB_SPLITS, eval_set_file

    spec = cfg.data.eval_sets.get(name)
    if isinstance(spec, EvalSetConfig) and spec.hub:
        return f"hf://{spec.hub}"
    if not isinstance(spec, EvalSetConfig) and cfg.data.source == "hub" and name in HUB_SPLITS:
        return f"hf://{HUB[name.split('/')[0]][0]}"
    f = eval_set_file(name, spec, cfg.data.dir)
    return str(Path(f).resolve()) if f is not None else name


def variant_records(cfg: Config, variant: str, rnd: int = 1) -> list[DataRecord]:
    """Every dataset input of one fine-tuned variant: its SFT set, the evaluation sets, and for LeMa this round's
    wrong paths and validated corrections (its SFT set holds those of every round so far)."""
    p = paths(cfg, rnd)
    recs = [file_record(p.sft / f"{variant}.jsonl", f"sft/{variant}", TRAINING)]
    recs += eval_records(p.eval(variant) / "rows.jsonl", cfg)
    if variant == "lema":
        recs.append(file_record(p.collect / "wrong.jsonl", "wrong-paths", WRONG_PATHS))
        recs.append(file_record(p.validate / "valid.jsonl", "corrections", CORRECTIONS))
    return recs


def log_records(records: list[DataRecord]) -> None:
    """``mlflow.log_input`` for each record on the active run (pandas datasets: schema and profile in MLflow,
    the rows themselves stay in the run dir)."""
    import pandas as pd

    import mlflow

    for rec in records:
        frame = pd.DataFrame([{k: _scalar(v) for k, v in r.items()} for r in rec.rows])
        ds = mlflow.data.from_pandas(frame, source=_source(rec.source), name=rec.name, digest=rec.digest)
        mlflow.log_input(ds, context=rec.context)


def _scalar(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _source(source: str):
    if source.startswith("hf://"):
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(path=source.removeprefix("hf://"))
    return source
