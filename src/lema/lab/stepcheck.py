"""The production step checker, measured where the true first wrong step is known.

The lab's programs give the true first wrong step of every sampled path (`task.first_mistake`); the
production checker (`lema.grading.step_check`) re-derives it from text alone, as it must on GSM8K.  Its
precision (of the steps it names, how many are the true one) and recall (of the true wrong paths, how many
it localises correctly) on the generator's real mistakes go in the report.
"""

from __future__ import annotations

import importlib.util

from lema.lab import task

CHECKER_MODULE = "lema.grading.step_check"


def checker_available() -> bool:
    """Whether this build has the production step checker (it lives on the grading side, not in the lab)."""
    try:
        return importlib.util.find_spec(CHECKER_MODULE) is not None
    except ModuleNotFoundError:
        return False


def checker_first_wrong_step(problem: task.LabProblem, path: str) -> int | None:
    """Adapter: the production checker's first wrong step of `path` (1-based), None when it finds none or
    calls the path undecidable.  The reference solution it checks against is the program's gold CoT."""
    from lema.grading.step_check import first_wrong_step

    return first_wrong_step(problem.question, problem.cot(), str(problem.answer), path, "lab").step


def path_records(problems: list[task.LabProblem], paths: list[str]) -> list[dict]:
    """The sampled paths with their true first wrong step (None when right), kept for scoring any checker."""
    out = []
    for p, path in zip(problems, paths):
        m = task.first_mistake(path.strip(), p)
        out.append({"question": p.question, "path": path.strip(), "true_step": m.step if m else None,
                    "kind": m.kind if m else None})
    return out


def score_checker(records: list[dict], problems: dict[str, task.LabProblem]) -> dict:
    """Precision and recall of the production checker against the true first wrong step.

    precision = correct localisations / paths where it names a step (right paths included); recall = correct localisations / wrong
    paths; false alarms = right paths where it names a step.  Per error type: recall."""
    if not checker_available():
        return {"available": False, "reason": f"{CHECKER_MODULE} is not in this build"}
    named = correct = wrong = alarms = rights = 0
    by_kind: dict[str, list[int]] = {}
    for r in records:
        step = checker_first_wrong_step(problems[r["question"]], r["path"])
        if r["true_step"] is None:
            rights += 1
            alarms += step is not None
            continue
        wrong += 1
        named += step is not None
        hit = step == r["true_step"]
        correct += hit
        k = by_kind.setdefault(r["kind"], [0, 0])
        k[0] += hit
        k[1] += 1
    return {"available": True, "wrong_paths": wrong, "named": named, "correct": correct,
            "precision": correct / (named + alarms) if named + alarms else float("nan"),
            "recall": correct / wrong if wrong else float("nan"),
            "right_paths": rights, "false_alarms": alarms,
            "recall_by_kind": {k: v[0] / v[1] for k, v in sorted(by_kind.items())},
            "wrong_by_kind": {k: v[1] for k, v in sorted(by_kind.items())}}
