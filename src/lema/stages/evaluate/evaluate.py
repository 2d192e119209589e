"""Evaluate stage: greedy pass@1 (plus maj@k / pass@k on request) on every
configured set: GSM8K test, MATH500, SVAMP and users' own sets.

Every row is saved; outputs with no extractable answer are counted apart
from wrong answers, since they point at a format problem, not a math one.
LaTeX-answer rows are also graded by math-verify on its own; where the two
graders disagree the row is counted and saved for audit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from lema.grading.answers import answers_equal, extract_answer, math_verify_grade
from lema.grading.numbers import DEFAULT_MIN_PLACES, format_number, numbers_in
from lema.jsonl import write_json, write_jsonl
from lema.llm.backends import Backend, Sampling
from lema.prompts import cot_prompt
from lema.records import EvalRow, Problem, StageReport


def majority(answers: list[str | None], task: str) -> str | None:
    """Most common extracted answer (equivalent forms counted together); None when nothing was extracted."""
    from lema.grading.answers import normalize_math

    groups: dict[str, list[str]] = {}
    for a in answers:
        if a is None:
            continue
        nums = numbers_in(a) if task in ("gsm8k", "lab") else []
        key = normalize_math(a) if task == "math" else format_number(nums[0]) if nums else a  # "3.50" = "3.5"
        groups.setdefault(key, []).append(a)
    if not groups:
        return None
    return max(groups.values(), key=len)[0]


def evaluate(backend: Backend, model_name: str, sets: dict[str, list[Problem]], *, max_tokens: int,
             shots: int, stop: list[str], samples: int = 0, sample_temperature: float = 0.7,
             seed: int = 0, min_decimals: int | None = DEFAULT_MIN_PLACES) -> list[EvalRow]:
    rows: list[EvalRow] = []
    sampling = Sampling(n=1, temperature=0.0, max_tokens=max_tokens, stop=tuple(stop))
    sampled = Sampling(n=samples, temperature=sample_temperature, top_p=0.95, max_tokens=max_tokens,
                       stop=tuple(stop), seed=seed) if samples > 0 else None
    for set_name, problems in sets.items():
        if not problems:
            continue
        task = problems[0].task
        template = cot_prompt(task)
        prompts = [template.render(shots=shots, question=p.question) for p in problems]
        outs = backend.generate(prompts, sampling)
        extra = backend.generate(prompts, sampled) if sampled else [[] for _ in prompts]
        for p, comps, more in zip(problems, outs, extra, strict=True):
            text = comps[0].text
            pred = extract_answer(text, p.task)
            row = EvalRow(id=p.id, task=p.task, eval_set=set_name, model=model_name, question=p.question,
                          gold_answer=p.gold_answer, prediction=text, pred_answer=pred,
                          extracted=pred is not None, correct=answers_equal(pred, p.gold_answer, p.task, min_places=min_decimals),
                          level=p.level, subject=p.subject, prompt_hash=template.hash(shots))
            if p.task == "math":  # audit: math-verify grading the whole text on its own
                row.math_verify_correct = math_verify_grade(text, p.gold_answer)
                row.grader_disagreement = row.math_verify_correct != row.correct
            if more:
                answers = [extract_answer(c.text, p.task) for c in more]
                hits = [answers_equal(a, p.gold_answer, p.task, min_places=min_decimals) for a in answers]
                vote = majority(answers, p.task)
                row.samples = [c.text for c in more]
                row.sample_answers = answers
                row.maj_correct = answers_equal(vote, p.gold_answer, p.task, min_places=min_decimals)
                row.pass_k = any(hits)
                row.sample_accuracy = sum(hits) / len(hits)
            rows.append(row)
    return rows


def summarize(rows: list[EvalRow]) -> dict[str, dict]:
    by_set: dict[str, list[EvalRow]] = defaultdict(list)
    for r in rows:
        by_set[r.eval_set].append(r)
    out = {}
    for name, rs in by_set.items():
        n = len(rs)
        correct = sum(r.correct for r in rs)
        m = {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0,
             "no_answer": sum(not r.extracted for r in rs),
             "wrong_answer": sum(r.extracted and not r.correct for r in rs)}
        extra = [r.model_extra or {} for r in rs]
        if any(r.grader_disagreement is not None for r in rs):
            m["grader_disagreements"] = sum(bool(r.grader_disagreement) for r in rs)
        if n and all("maj_correct" in e for e in extra):
            k = len(extra[0]["sample_answers"])
            m[f"maj@{k}"] = sum(e["maj_correct"] for e in extra) / n
            m[f"pass@{k}"] = sum(e["pass_k"] for e in extra) / n
        for field in ("level", "subject"):
            groups: dict[str, list[EvalRow]] = defaultdict(list)
            for r in rs:
                if getattr(r, field):
                    groups[getattr(r, field)].append(r)
            if groups:
                m[f"by_{field}"] = {g: {"n": len(v), "correct": sum(x.correct for x in v),
                                        "accuracy": sum(x.correct for x in v) / len(v)}
                                    for g, v in sorted(groups.items())}
        out[name] = m
    return out


def run_evaluate(backend: Backend, model_name: str, sets: dict[str, list[Problem]], out_dir: str | Path, *,
                 max_tokens: int, shots: int, stop: list[str], samples: int = 0, sample_temperature: float = 0.7,
                 seed: int = 0, min_decimals: int | None = DEFAULT_MIN_PLACES,
                 skipped: dict[str, list] | None = None) -> StageReport:
    t0 = time.time()
    rows = evaluate(backend, model_name, sets, max_tokens=max_tokens, shots=shots, stop=stop, samples=samples,
                    sample_temperature=sample_temperature, seed=seed, min_decimals=min_decimals)
    out = Path(out_dir)
    write_jsonl(out / "rows.jsonl", rows)
    metrics = summarize(rows)
    write_json(out / "metrics.json", metrics)
    # Rows where lema's grading and math-verify's disagree, kept for a human to judge.
    write_jsonl(out / "disagreements.jsonl", [r for r in rows if r.grader_disagreement])
    n_skipped = sum(len(v) for v in (skipped or {}).values())
    report = StageReport(stage=f"evaluate:{model_name}", n_in=sum(len(v) for v in sets.values()) + n_skipped,
                         n_out=len(rows), n_quarantined=n_skipped,
                         seconds=time.time() - t0, details={"metrics": metrics, "skipped_invalid": {
                             name: {"count": len(v), "rows": [{"line": n, "why": why} for n, why in v]}
                             for name, v in (skipped or {}).items() if v}},
                         outputs={"rows": str(out / "rows.jsonl"), "metrics": str(out / "metrics.json"),
                                  "disagreements": str(out / "disagreements.jsonl")})
    write_json(out / "report.json", report)
    return report
