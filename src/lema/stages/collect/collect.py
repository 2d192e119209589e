"""Collect stage: sample k chains of thought per training question from each
generator, grade them, and keep the wrong ones (LeMa's raw material).

Generators that share a model and backend share one engine, so "one model at
several temperatures" costs one engine start.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from lema.config import GeneratorConfig
from lema.grading.answers import answers_equal, extract_answer
from lema.jsonl import write_json, write_jsonl
from lema.llm.backends import Backend, Sampling
from lema.prompts import cot_prompt
from lema.records import Problem, SampledPath, StageReport

BackendFactory = Callable[[GeneratorConfig], Backend]


def grade_samples(problem: Problem, texts: list[str], gen: GeneratorConfig, model: str, sampling: Sampling,
                  prompt_hash: str) -> list[SampledPath]:
    out = []
    for i, text in enumerate(texts):
        pred = extract_answer(text, problem.task)
        out.append(SampledPath(
            id=problem.id, task=problem.task, question=problem.question, gold_solution=problem.gold_solution,
            gold_answer=problem.gold_answer, path=text.strip(), generator=gen.name, model=model,
            prompt_hash=prompt_hash, sampling=sampling.as_dict(), sample_index=i, pred_answer=pred,
            correct=answers_equal(pred, problem.gold_answer, problem.task)))
    return out


def question_seed(seed: int, generator: str, question_id: str) -> int:
    """Sampling seed of one (generator, question): independent of batching and sharding, so 1, 2 or 4
    Kubeflow shards sample exactly the paths one local run samples."""
    digest = hashlib.sha256(f"{seed}:{generator}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def collect(problems: list[Problem], generators: list[GeneratorConfig], make_backend: BackendFactory,
            resolve_model: Callable[[str], str], seed: int = 0) -> list[SampledPath]:
    groups: dict[tuple[str, str, str | None], list[GeneratorConfig]] = defaultdict(list)
    for g in generators:
        groups[(g.backend, resolve_model(g.model), g.base_url)].append(g)
    by_task: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        by_task[p.task].append(p)
    paths: list[SampledPath] = []
    for (_kind, model, _url), gens in groups.items():
        backend = make_backend(gens[0])
        try:
            for gen in gens:
                sampling = Sampling(n=gen.n, temperature=gen.temperature, top_p=gen.top_p,
                                    max_tokens=gen.max_tokens, stop=tuple(gen.stop), seed=seed)
                for task, items in by_task.items():
                    template = cot_prompt(task)
                    prompts = [template.render(shots=gen.shots, question=p.question) for p in items]
                    seeds = [question_seed(seed, gen.name, p.id) for p in items]
                    outs = backend.generate(prompts, sampling, seeds=seeds)
                    for p, comps in zip(items, outs, strict=True):
                        paths.extend(grade_samples(p, [c.text for c in comps], gen, model, sampling,
                                                   template.hash(gen.shots)))
        finally:
            backend.close()
    return paths


def generator_stats(paths: list[SampledPath]) -> dict[str, dict]:
    stats: dict[str, dict] = {}
    for name in sorted({p.generator for p in paths}):
        mine = [p for p in paths if p.generator == name]
        right = sum(p.correct for p in mine)
        no_answer = sum(p.pred_answer is None for p in mine)
        questions = {p.id for p in mine}
        solved = {p.id for p in mine if p.correct}
        stats[name] = {"samples": len(mine), "right": right, "wrong": len(mine) - right,
                       "no_answer": no_answer, "accuracy": right / len(mine) if mine else 0.0,
                       "questions": len(questions), "questions_solved": len(solved)}
    return stats


def write_collect(paths: list[SampledPath], out_dir: str | Path, n_questions: int) -> StageReport:
    out = Path(out_dir)
    wrong = [p for p in paths if not p.correct]
    right = [p for p in paths if p.correct]
    write_jsonl(out / "paths.jsonl", paths)
    write_jsonl(out / "wrong.jsonl", wrong)
    write_jsonl(out / "right.jsonl", right)
    report = StageReport(stage="collect", n_in=n_questions, n_out=len(wrong),
                         details={"samples": len(paths), "right": len(right), "wrong": len(wrong),
                                  "generators": generator_stats(paths)},
                         outputs={"wrong": str(out / "wrong.jsonl"), "right": str(out / "right.jsonl"),
                                  "all": str(out / "paths.jsonl")})
    write_json(out / "report.json", report)
    return report


def run_collect(problems: list[Problem], generators: list[GeneratorConfig], make_backend: BackendFactory,
                resolve_model: Callable[[str], str], out_dir: str | Path, seed: int = 0) -> StageReport:
    t0 = time.time()
    paths = collect(problems, generators, make_backend, resolve_model, seed)
    report = write_collect(paths, out_dir, len(problems))
    report.seconds = time.time() - t0
    write_json(Path(out_dir) / "report.json", report)
    return report
