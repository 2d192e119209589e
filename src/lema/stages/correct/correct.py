"""Correct stage: wrong reasoning path -> (first wrong step, why, corrected solution).

The stage only reads wrong paths, hands them to a ``Corrector`` and writes
corrections, quarantine and a report.  What is asked and how an answer is judged
lives in ``lema.stages.correct.task``; the offline default in ``lema.stages.correct.reference``;
the LLM corrector (``lema.stages.correct.llm``) sends the task through the shared
OpenAI transport (``lema.llm.transport``, ``lema.llm.batch``).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from lema.jsonl import iter_jsonl, write_json, write_jsonl
from lema.records import Quarantined, StageReport, WrongPath
from lema.stages.correct.reference import ReferenceCorrector
from lema.stages.correct.task import Corrector, Outcome, ParsedCorrection, parse_correction, render_correction

__all__ = ["Corrector", "Outcome", "ParsedCorrection", "ReferenceCorrector", "make_corrector", "parse_correction",
           "render_correction", "run_correct"]


def error_type_counts(corrections) -> dict[str, dict[str, int]]:
    """{generator: {error type: corrections}}; a correction without a type counts as "(none)"."""
    out: dict[str, Counter] = {}
    for c in corrections:
        out.setdefault(c.generator, Counter())[c.error_type or "(none)"] += 1
    return {g: dict(sorted(n.items())) for g, n in sorted(out.items())}


def make_corrector(kind: str, **options) -> Corrector:
    if kind == "reference":
        return ReferenceCorrector()
    if kind in ("llm", "hybrid"):
        from lema.stages.correct.llm import (
            LLMCorrector,  # imported here only to keep the openai SDK off the default path
        )

        return LLMCorrector(hybrid=(kind == "hybrid"), **options)
    raise ValueError(f"unknown corrector {kind!r} (expected reference, llm or hybrid)")


def run_correct(input_path: str | Path, output_path: str | Path, quarantine_path: str | Path,
                corrector: Corrector, report_path: str | Path | None = None) -> StageReport:
    """Correct every wrong path in a JSONL file; unlocalised ones go to quarantine with the reason."""
    t0 = time.time()
    paths = list(iter_jsonl(input_path, WrongPath))
    outcomes = corrector.correct(paths)
    corrections, quarantined = [], []
    for wp, out in zip(paths, outcomes, strict=True):
        if out.correction is not None:
            corrections.append(out.correction)
        else:
            quarantined.append(Quarantined(stage="correct", reasons=[out.reason or "no correction"],
                                           record=wp.model_dump(), source=str(input_path)))
    write_jsonl(output_path, corrections)
    write_jsonl(quarantine_path, quarantined)
    reasons = Counter(q.reasons[0].split(":")[0] for q in quarantined)
    extra = corrector.report_details() if hasattr(corrector, "report_details") else {}
    report = StageReport(stage="correct", n_in=len(paths), n_out=len(corrections),
                         n_quarantined=len(quarantined), seconds=time.time() - t0,
                         details={"corrector": corrector.name, "unlocalised_reasons": dict(reasons),
                                  "incorrect_step_histogram": dict(Counter(c.incorrect_step for c in corrections)),
                                  "error_types": error_type_counts(corrections),
                                  **extra},
                         outputs={"corrections": str(output_path), "quarantine": str(quarantine_path)})
    if report_path:
        write_json(report_path, report)
    return report
