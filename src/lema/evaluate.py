"""Evaluate stage: greedy pass@1 on GSM8K test and MATH500 (subsets by config).

Every row is saved; outputs with no extractable answer are counted apart
from wrong answers, since they point at a format problem, not a math one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from .answers import answers_equal, extract_answer
from .generate import Backend, Sampling
from .jsonl import write_json, write_jsonl
from .prompts import cot_prompt
from .records import EvalRow, Problem, StageReport


def evaluate(backend: Backend, model_name: str, sets: dict[str, list[Problem]], *, max_tokens: int,
             shots: int, stop: list[str]) -> list[EvalRow]:
    rows: list[EvalRow] = []
    sampling = Sampling(n=1, temperature=0.0, max_tokens=max_tokens, stop=tuple(stop))
    for set_name, problems in sets.items():
        if not problems:
            continue
        task = problems[0].task
        prompts = [cot_prompt(task).render(shots=shots, question=p.question) for p in problems]
        outs = backend.generate(prompts, sampling)
        for p, comps in zip(problems, outs, strict=True):
            text = comps[0].text
            pred = extract_answer(text, p.task)
            rows.append(EvalRow(id=p.id, task=p.task, eval_set=set_name, model=model_name, question=p.question,
                                gold_answer=p.gold_answer, prediction=text, pred_answer=pred,
                                extracted=pred is not None, correct=answers_equal(pred, p.gold_answer, p.task),
                                level=p.level, subject=p.subject))
    return rows


def summarize(rows: list[EvalRow]) -> dict[str, dict]:
    by_set: dict[str, list[EvalRow]] = defaultdict(list)
    for r in rows:
        by_set[r.eval_set].append(r)
    out = {}
    for name, rs in by_set.items():
        n = len(rs)
        correct = sum(r.correct for r in rs)
        out[name] = {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0,
                     "no_answer": sum(not r.extracted for r in rs),
                     "wrong_answer": sum(r.extracted and not r.correct for r in rs)}
    return out


def run_evaluate(backend: Backend, model_name: str, sets: dict[str, list[Problem]], out_dir: str | Path, *,
                 max_tokens: int, shots: int, stop: list[str]) -> StageReport:
    t0 = time.time()
    rows = evaluate(backend, model_name, sets, max_tokens=max_tokens, shots=shots, stop=stop)
    out = Path(out_dir)
    write_jsonl(out / "rows.jsonl", rows)
    metrics = summarize(rows)
    write_json(out / "metrics.json", metrics)
    report = StageReport(stage=f"evaluate:{model_name}", n_in=sum(len(v) for v in sets.values()), n_out=len(rows),
                         seconds=time.time() - t0, details={"metrics": metrics},
                         outputs={"rows": str(out / "rows.jsonl"), "metrics": str(out / "metrics.json")})
    write_json(out / "report.json", report)
    return report
