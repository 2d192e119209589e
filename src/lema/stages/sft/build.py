"""Build-SFT stage: CoT data and correction data as prompt/completion pairs.

Two sets come out, so the comparison the paper makes is one config away:
``cot.jsonl`` (the CoT-only baseline) and ``lema.jsonl`` (the same CoT data
plus corrections; input = question + wrong path, output = the correction).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from lema.grading.steps import format_steps, split_steps
from lema.jsonl import iter_jsonl, write_json, write_jsonl
from lema.prompts import cot_prompt, load_prompt
from lema.records import Correction, Problem, SampledPath, SFTExample, StageReport
from lema.stages.base_model.build import cot_text


def cot_examples(problems: list[Problem], repeats: int = 1) -> list[SFTExample]:
    out = []
    for p in problems:
        prompt, completion = cot_text(p)
        out.extend(SFTExample(id=p.id, task=p.task, kind="cot", prompt=prompt, completion=completion,
                              prompt_hash=cot_prompt(p.task).hash(0)) for _ in range(repeats))
    return out


def right_path_examples(paths: list[SampledPath]) -> list[SFTExample]:
    """Correct sampled paths as extra CoT data, one per distinct (question, text)."""
    seen, out = set(), []
    for p in paths:
        key = (p.id, p.path)
        if p.correct and key not in seen:
            seen.add(key)
            steps = split_steps(p.path)
            out.append(SFTExample(id=p.id, task=p.task, kind="cot",
                                  prompt=cot_prompt(p.task).render(shots=0, question=p.question),
                                  completion=format_steps(steps) if steps else p.path,
                                  prompt_hash=cot_prompt(p.task).hash(0)))
    return out


def correction_example(c: Correction, explanations: bool = True) -> SFTExample:
    template = load_prompt("correction")
    completion = c.correction
    if not explanations:
        completion = "\n".join(line for line in completion.split("\n") if not line.startswith("Explanation:"))
    return SFTExample(id=c.id, task=c.task, kind="correction",
                      prompt=template.render_sft(question=c.question, path=c.path), completion=completion,
                      prompt_hash=template.hash(0))


def build_sft(problems: list[Problem], corrections: list[Correction], right_paths: list[SampledPath],
              *, include_right_paths: bool, correction_fraction: float, cot_repeats: int,
              explanations: bool, seed: int) -> tuple[list[SFTExample], list[SFTExample]]:
    """(CoT-only set, LeMa set); both share the same CoT examples."""
    if not 0.0 <= correction_fraction <= 1.0:
        raise ValueError(f"sft.correction_fraction must be within [0, 1], got {correction_fraction}")
    rng = random.Random(seed)
    cot = cot_examples(problems, cot_repeats)
    if include_right_paths:
        cot += right_path_examples(right_paths)
    picked = list(corrections)
    rng.shuffle(picked)
    picked = picked[: round(len(picked) * correction_fraction)]
    lema = cot + [correction_example(c, explanations) for c in picked]
    rng.shuffle(lema)
    cot_only = list(cot)
    rng.shuffle(cot_only)
    return cot_only, lema


def run_build_sft(problems: list[Problem], corrections_path: str | Path, right_path: str | Path | None,
                  out_dir: str | Path, *, include_right_paths: bool = False, correction_fraction: float = 1.0,
                  cot_repeats: int = 1, explanations: bool = True, seed: int = 0) -> StageReport:
    t0 = time.time()
    corrections = list(iter_jsonl(corrections_path, Correction))
    right = list(iter_jsonl(right_path, SampledPath)) if include_right_paths and right_path else []
    cot, lema = build_sft(problems, corrections, right, include_right_paths=include_right_paths,
                          correction_fraction=correction_fraction, cot_repeats=cot_repeats,
                          explanations=explanations, seed=seed)
    out = Path(out_dir)
    write_jsonl(out / "cot.jsonl", cot)
    write_jsonl(out / "lema.jsonl", lema)
    report = StageReport(stage="build-sft", n_in=len(problems) + len(corrections), n_out=len(lema),
                         seconds=time.time() - t0,
                         details={"cot_examples": len(cot), "lema_examples": len(lema),
                                  "correction_examples": sum(e.kind == "correction" for e in lema),
                                  "right_path_examples": len(right)},
                         outputs={"cot": str(out / "cot.jsonl"), "lema": str(out / "lema.jsonl")})
    write_json(out / "report.json", report)
    return report
