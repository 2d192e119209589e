"""The arms' training sets, and matching extra data to LeMa's correction tokens.

Every arm shares the CoT set; they differ only in what is added to it.  Token matching
counts trained (completion) tokens with the lab's own tokenizer, and a matched arm that
misses the +/- tolerance is an error, not a footnote.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lema.lab import task
from lema.lab.engine import Example, completion_tokens
from lema.lab.tokenizer import WordTokenizer

ARMS = ("cot", "lema", "cot_extra_tokens", "cot_extra_examples", "lema_no_expl", "lema_informative")
TITLES = {"base": "base model (pretrained on a related distribution)", "cot": "CoT only (the generator)",
          "lema": "LeMa: CoT + corrections", "cot_extra_tokens": "CoT + extra CoT, matched in tokens",
          "cot_extra_examples": "CoT + extra CoT, matched in examples",
          "lema_no_expl": "LeMa without explanations", "lema_informative": "LeMa, informative explanations",
          "self_train": "self-training on own right answers", "cot_extra": "CoT + extra CoT (matched tokens)"}
STYLE = {"lema": "templated", "lema_no_expl": "none", "lema_informative": "informative"}


def wrong_step_arm(rate: float) -> str:
    """The arm whose corrector names a wrong step for `rate` of the mistakes, e.g. lema_wrong_step_25."""
    return f"lema_wrong_step_{round(100 * rate)}"


def title(arm: str) -> str:
    if arm.startswith("lema_wrong_step_"):
        return f"LeMa, corrector names a wrong step in {arm.rsplit('_', 1)[1]}%"
    return TITLES.get(arm, arm)


@dataclass(frozen=True)
class Wrong:
    """A sampled wrong path and where (and how) it first goes wrong."""
    problem: task.LabProblem
    path: str
    mistake: task.Mistake


def misname_steps(wrongs: list[Wrong], rate: float, seed: int) -> tuple[list[Wrong], list[int]]:
    """A corrector of controlled quality: for exactly round(rate * n) of the mistakes (a random subset) it
    names another step than the true first wrong one (uniform over the path's other steps, the read-out
    included); the corrected continuation then starts at the step it named.  Returns the corrections'
    mistakes and the indices it misnamed."""
    if not 0 <= rate <= 1:
        raise ValueError(f"wrong-step rate must be in [0, 1], got {rate}")
    rng = random.Random(seed)
    flip = sorted(rng.sample(range(len(wrongs)), round(rate * len(wrongs))))
    out = list(wrongs)
    for i in flip:
        w = wrongs[i]
        other = rng.choice([k for k in range(1, len(w.problem.steps) + 2) if k != w.mistake.step])
        out[i] = Wrong(w.problem, w.path, task.Mistake(other, w.mistake.kind, w.mistake.written))
    return out, flip


def cot_examples(problems: list[task.LabProblem]) -> list[Example]:
    return [Example(task.cot_prompt(p.question), p.cot(), "cot") for p in problems]


def correction_examples(wrongs: list[Wrong], style: str) -> list[Example]:
    return [Example(task.correction_prompt(w.problem.question, w.path),
                    task.correction_text(w.problem, w.mistake, style), "correction") for w in wrongs]


def read_paths(problems: list[task.LabProblem], paths: list[str], wrong_per_question: int = 1,
               right_per_question: int = 1) -> tuple[list[Wrong], list[Example]]:
    """Split sampled paths (aligned with `problems`) into wrong ones, localised by the program, and distinct
    right ones as self-training examples (rejection sampling), capped per question."""
    wrongs: list[Wrong] = []
    rights: list[Example] = []
    nw: dict[str, int] = {}
    seen: dict[str, set] = {}
    for p, path in zip(problems, paths):
        path = path.strip()
        m = task.first_mistake(path, p)
        if m is None:
            got = seen.setdefault(p.id, set())
            if len(got) < right_per_question and path not in got:
                got.add(path)
                rights.append(Example(task.cot_prompt(p.question), path, "self"))
        elif nw.get(p.id, 0) < wrong_per_question:
            nw[p.id] = nw.get(p.id, 0) + 1
            wrongs.append(Wrong(p, path, m))
    return wrongs, rights


def match_tokens(candidates: list[Example], target: int, tok: WordTokenizer, tolerance: float, seed: int,
                 strict: bool = True) -> list[Example]:
    """A subset of `candidates` whose trained tokens are within +/- tolerance of `target`: random order,
    fill below the target, then the one candidate that best closes the gap."""
    rng = random.Random(seed)
    pool = list(candidates)
    rng.shuffle(pool)
    picked, total, rest = [], 0, []
    for e in pool:
        n = completion_tokens([e], tok)
        if total + n <= target:
            picked.append(e)
            total += n
        else:
            rest.append((n, e))
    if rest and abs(target - total) > tolerance * target:
        n, e = min(rest, key=lambda x: abs(target - total - x[0]))
        if abs(target - total - n) < abs(target - total):
            picked.append(e)
            total += n
    if strict and abs(total - target) > tolerance * max(1, target):
        raise ValueError(f"token matching failed: {total} trained tokens for a target of {target} "
                         f"(tolerance {tolerance:.0%}, {len(candidates)} candidates); generate more extra problems")
    return picked


def arm_sets(train: list[task.LabProblem], wrongs: list[Wrong], extra: list[task.LabProblem], tok: WordTokenizer,
             tolerance: float, seed: int, wrong_step_rates: tuple[float, ...] = ()
             ) -> tuple[dict[str, list[Example]], dict[str, dict]]:
    """Training sets of the six arms (and one per corrector wrong-step rate) and their sizes; asserts the
    token match."""
    cot = cot_examples(train)
    fixes = {arm: correction_examples(wrongs, style) for arm, style in STYLE.items()}
    for rate in wrong_step_rates:
        fixes[wrong_step_arm(rate)] = correction_examples(misname_steps(wrongs, rate, seed)[0], STYLE["lema"])
    target = completion_tokens(fixes["lema"], tok)
    extra_cot = cot_examples(extra)
    by_tokens = match_tokens(extra_cot, target, tok, tolerance, seed)
    by_examples = random.Random(seed + 1).sample(extra_cot, len(wrongs)) if wrongs else []
    sets = {"cot": cot, "lema": cot + fixes["lema"], "cot_extra_tokens": cot + by_tokens,
            "cot_extra_examples": cot + by_examples, "lema_no_expl": cot + fixes["lema_no_expl"],
            "lema_informative": cot + fixes["lema_informative"]}
    added = {"cot": [], "lema": fixes["lema"], "cot_extra_tokens": by_tokens, "cot_extra_examples": by_examples,
             "lema_no_expl": fixes["lema_no_expl"], "lema_informative": fixes["lema_informative"]}
    for rate in wrong_step_rates:
        arm = wrong_step_arm(rate)
        sets[arm], added[arm] = cot + fixes[arm], fixes[arm]
    sizes = {}
    for arm, ex in sets.items():
        n_added = completion_tokens(added[arm], tok)
        sizes[arm] = {"examples": len(ex), "added_examples": len(added[arm]),
                      "trained_tokens": completion_tokens(ex, tok), "added_tokens": n_added,
                      "token_ratio": n_added / target if target else float("nan")}
    if wrongs:
        assert abs(sizes["cot_extra_tokens"]["token_ratio"] - 1) <= tolerance, sizes["cot_extra_tokens"]
    return sets, sizes
