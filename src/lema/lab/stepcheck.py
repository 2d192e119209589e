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


def checker_check(problem: task.LabProblem, path: str):
    """Adapter: the production checker's verdict on `path` (its step is 1-based, None when it finds none or
    calls the path undecidable).  The reference solution it checks against is the program's gold CoT."""
    from lema.grading.step_check import first_wrong_step

    return first_wrong_step(problem.question, problem.cot(), str(problem.answer), path, "lab")


def path_records(problems: list[task.LabProblem], paths: list[str]) -> list[dict]:
    """The sampled paths with their true first wrong step (None when right), kept for scoring any checker."""
    out = []
    for p, path in zip(problems, paths):
        m = task.first_mistake(path.strip(), p)
        out.append({"question": p.question, "path": path.strip(), "true_step": m.step if m else None,
                    "kind": m.kind if m else None})
    return out


def score_checker(records: list[dict], problems: dict[str, task.LabProblem]) -> dict:
    """The production checker against the true first wrong step, scored by `lema.grading.step_check.score`:
    precision = correct localisations / wrong paths where it names a step, recall = correct localisations /
    wrong paths (overall and per error type); false alarms = right paths where it names a step."""
    if not checker_available():
        return {"available": False, "reason": f"{CHECKER_MODULE} is not in this build"}
    from lema.grading.step_check import score

    checks = [checker_check(problems[r["question"]], r["path"]) for r in records]
    wrong = [(r, c) for r, c in zip(records, checks) if r["true_step"] is not None]
    alarms = sum(c.decided for r, c in zip(records, checks) if r["true_step"] is None)
    overall = score([r["true_step"] for r, _ in wrong], [c for _, c in wrong])
    kinds = sorted({r["kind"] for r, _ in wrong})
    by_kind = {k: score([r["true_step"] for r, _ in wrong if r["kind"] == k],
                        [c for r, c in wrong if r["kind"] == k]) for k in kinds}
    return {"available": True, "wrong_paths": overall["n"], "named": overall["decided"],
            "correct": overall["right"], "precision": overall["precision"], "recall": overall["recall"],
            "right_paths": len(records) - len(wrong), "false_alarms": alarms,
            "recall_by_kind": {k: v["recall"] for k, v in by_kind.items()},
            "wrong_by_kind": {k: v["n"] for k, v in by_kind.items()}}
