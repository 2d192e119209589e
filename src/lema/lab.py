"""A synthetic grade-school task on which a tiny model can learn, so LeMa's
claims can be measured on a CPU.

Each problem is generated from a step program (quantities, rates, totals,
differences, with distractor sentences), so its chain of thought, its answer
and the exact first wrong step of any attempted solution are known.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .answers import numbers_in
from .arith import first_slip
from .correct import Outcome, render_correction
from .records import Correction, Problem, WrongPath
from .steps import format_steps, split_steps

NAMES = ["Ana", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai", "Lea", "Max", "Nia",
         "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Wes", "Yara", "Zoe"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards", "coins",
         "eggs", "flowers", "toys", "rocks", "buttons", "candles"]
PLACES = ["the market", "the shop", "school", "the fair", "the park"]


@dataclass(frozen=True)
class Step:
    op: str          # "+", "-", "*", "/"
    a: int
    b: int
    result: int
    text: str        # the CoT step, e.g. "Ana buys 4 more, so 7 + 4 = 11 apples."

    def line(self) -> str:
        return self.text


@dataclass(frozen=True)
class LabProblem:
    question: str
    steps: tuple[Step, ...]
    answer: int

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def cot(self) -> str:
        return format_steps([s.text for s in self.steps] + [f"The answer is {self.answer}."])

    def to_problem(self) -> Problem:
        pid = "lab-" + hashlib.sha256(self.question.encode()).hexdigest()[:12]
        p = Problem(id=pid, task="lab", question=self.question, gold_solution=self.cot(),
                    gold_answer=str(self.answer), level=str(self.n_steps), subject="synthetic")
        p.program = [[s.op, s.a, s.b, s.result] for s in self.steps]
        return p


def generate(rng: random.Random, min_steps: int = 2, max_steps: int = 6, max_number: int = 20,
             distractors: float = 0.5, max_value: int = 10_000) -> LabProblem:
    """One problem: a running quantity changed by 1..k operations, asked for at the end.
    Operations whose result would exceed `max_value` are not drawn (keeps numbers learnable)."""
    n_ops = rng.randint(min_steps, max_steps) - 1  # the first step states the start quantity plus one op
    name, friend = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    cur = rng.randint(2, max_number)
    sentences = [f"{name} has {cur} {item}."]
    steps: list[Step] = []
    for _ in range(n_ops + 1):
        kinds = ["sub", "div"] + (["add"] if cur + max_number <= max_value else [])
        kinds += ["mul"] if cur * 2 <= max_value else []
        kinds += ["rate"] if cur * 2 <= max_value and cur <= 40 else []
        kind = rng.choice(kinds)
        if kind == "add":
            b = rng.randint(1, min(max_number, max_value - cur))
            sentences.append(rng.choice([f"{name} buys {b} more {item} at {rng.choice(PLACES)}.",
                                         f"{friend} gives {name} {b} {item}."]))
            new, text = cur + b, f"{name} now has {cur} + {b} = {cur + b} {item}."
            op = "+"
        elif kind == "sub" and cur > 1:
            b = rng.randint(1, cur - 1)
            sentences.append(rng.choice([f"{name} gives {b} {item} to {friend}.", f"{name} loses {b} {item}."]))
            new, text, op = cur - b, f"{name} has {cur} - {b} = {cur - b} {item} left.", "-"
        elif kind == "mul":
            b = rng.randint(2, max(2, min(4, max_value // cur)))
            word = {2: "doubles", 3: "triples", 4: "quadruples"}[b]
            sentences.append(f"Then {name} {word} the number of {item}.")
            new, text, op = cur * b, f"{name} now has {cur} * {b} = {cur * b} {item}.", "*"
        elif kind == "div" and any(cur % d == 0 for d in range(2, 6)):
            b = rng.choice([d for d in range(2, 6) if cur % d == 0])
            sentences.append(f"{name} splits the {item} into {b} equal groups and keeps one group.")
            new, text, op = cur // b, f"One group has {cur} / {b} = {cur // b} {item}.", "/"
        elif kind == "rate" and cur <= 40:
            b = rng.randint(2, max(2, min(9, max_value // cur)))
            sentences.append(f"{friend} has {b} times as many {item} as {name}.")
            new, text, op = cur * b, f"{friend} has {cur} * {b} = {cur * b} {item}.", "*"
            name, friend = friend, rng.choice([n for n in NAMES if n not in (name, friend)])
        elif cur + 1 > max_value - 1 or cur + max_number > max_value:
            b = rng.randint(1, max(1, min(max_number, cur - 1)))
            sentences.append(f"{name} loses {b} {item}.")
            new, text, op = cur - b, f"{name} has {cur} - {b} = {cur - b} {item} left.", "-"
        else:
            b = rng.randint(1, max_number)
            sentences.append(f"{name} finds {b} more {item}.")
            new, text, op = cur + b, f"{name} now has {cur} + {b} = {cur + b} {item}.", "+"
        steps.append(Step(op, cur, b, new, text))
        cur = new
        if rng.random() < distractors:
            other = rng.choice([n for n in NAMES if n not in (name, friend)])
            sentences.append(rng.choice([f"{other} has {rng.randint(2, max_number)} {rng.choice(ITEMS)}.",
                                         f"{other} walks {rng.randint(2, 9)} miles to {rng.choice(PLACES)}."]))
    sentences.append(f"How many {item} does {name} have now?")
    return LabProblem(" ".join(sentences), tuple(steps), cur)


def make_splits(seed: int, n_train: int, n_test: int, n_pool: int = 0, **knobs) -> dict[str, list[Problem]]:
    """Disjoint pretraining pool, train and test sets (no question text in two splits)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[Problem]] = {"test": [], "train": [], "pool": []}
    for name, size in (("test", n_test), ("train", n_train), ("pool", n_pool)):
        tries = 0
        while len(splits[name]) < size:
            tries += 1
            if tries > size * 50:
                raise ValueError(f"cannot generate {size} distinct {name} problems with these knobs")
            p = generate(rng, **knobs)
            if p.question in seen:
                continue
            seen.add(p.question)
            splits[name].append(p.to_problem())
    return splits


class LabCorrector:
    """Exact corrector: the step program says which step first goes wrong and what it should say."""

    name = "lab-exact"

    def correct(self, paths: list[WrongPath]) -> list[Outcome]:
        return [self.correct_one(p) for p in paths]

    def correct_one(self, wp: WrongPath) -> Outcome:
        program = (wp.model_extra or {}).get("program")
        if not program:
            return Outcome(None, "no step program on the record")
        gold = split_steps(wp.gold_solution)
        steps = split_steps(wp.path)
        if not steps:
            return Outcome(None, "empty path: no steps to check")
        k = first_wrong_step(steps, program, wp.gold_answer)
        if k is None:
            return Outcome(None, "could not localise: every step matches the program")
        if k > len(gold):
            return Outcome(None, "could not localise: the path is longer than the program")
        written = steps[k - 1] if k <= len(steps) else ""
        slip = first_slip(written) if written else None
        if not written:
            kind = "missing"
            why = f"The solution stops after step {k - 1} without reaching the quantity the question asks for."
        elif slip is not None:
            kind = "arithmetic"
            why = f"Step {k} claims {slip.describe()}, but {slip.expression} is {slip.actual}."
        elif k - 1 < len(program):
            kind = "quantity"
            op, a, b, r = program[k - 1]
            why = (f"Step {k} should combine {a} and {b} with '{op}' to get {r}, as the question describes; "
                   f"instead it writes: {written.rstrip('.')}.")
        else:
            kind = "answer"
            why = f"Step {k} reports a final answer that is not the quantity the question asks for."
        corrected = format_steps(gold[k - 1 :], start=k)
        return Outcome(Correction(**wp.model_dump(), incorrect_step=k, explanation=why, corrected_solution=corrected,
                                  final_answer=wp.gold_answer, correction=render_correction(k, why, corrected),
                                  corrector=self.name), kind=kind)


def first_wrong_step(steps: list[str], program: list, gold_answer: str) -> int | None:
    """1-based index of the first step whose result differs from the program's (or a missing/wrong answer)."""
    for i, step in enumerate(steps):
        if i < len(program):
            nums = numbers_in(step.split("=")[-1]) if "=" in step else numbers_in(step)
            if not nums or nums[0] != str(program[i][3]) or first_slip(step) is not None:
                return i + 1
        else:
            nums = numbers_in(step)
            return None if nums and nums[-1] == gold_answer else i + 1
    return len(steps) + 1 if len(steps) <= len(program) else None
