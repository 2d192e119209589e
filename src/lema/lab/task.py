"""The lab's synthetic task: grade-school word problems generated from step programs.

Because every problem comes from a program (start quantity, then 2-4 operations),
its chain of thought, its answer, and the exact first wrong step of any attempted
solution (and the kind of error there) are known without a grader model.  That is
what lets the lab write *informative* explanations for claim (3).
"""

from __future__ import annotations

import hashlib
import operator
import random
import re
from dataclasses import dataclass

from lema.grading.steps import format_steps, split_steps

NAMES = ["Ana", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai", "Lea", "Max", "Nia",
         "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Wes", "Yara", "Zoe"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards", "coins",
         "eggs", "flowers", "toys", "rocks", "buttons", "candles"]
PLACES = ["the market", "the shop", "school", "the fair", "the park"]
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
OP_WORDS = {"+": "adding", "-": "subtracting", "*": "multiplying", "/": "dividing"}

# The error types an attempted solution can make, as the program reveals them.
ERROR_TYPES = ("wrong operation", "wrong operand or quantity", "arithmetic slip", "skipped step",
               "wrong final read-out")

_EQ = re.compile(r"(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)")
_ANSWER = re.compile(r"answer is\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Step:
    op: str
    a: int
    b: int
    result: int
    text: str       # the CoT step, e.g. "Ana now has 7 + 4 = 11 apples."
    relation: str   # why this operation, in words, e.g. "Ben gives Ana 4 apples, which adds 4"


@dataclass(frozen=True)
class LabProblem:
    question: str
    steps: tuple[Step, ...]
    answer: int

    @property
    def id(self) -> str:
        return "lab-" + hashlib.sha256(self.question.encode()).hexdigest()[:12]

    @property
    def program(self) -> list[tuple[str, int, int, int]]:
        return [(s.op, s.a, s.b, s.result) for s in self.steps]

    def cot(self) -> str:
        """The gold solution in the project's "Step k: ..." format, ending with the answer step."""
        return format_steps([s.text for s in self.steps] + [f"The answer is {self.answer}."])


def generate(rng: random.Random, min_steps: int = 2, max_steps: int = 4, max_number: int = 9,
             distractors: float = 0.3, max_value: int = 99, max_start: int | None = None) -> LabProblem:
    """One problem: a running quantity (from 2 to `max_start`, default `max_number`) changed by
    `min_steps..max_steps` operations, asked for at the end.  Operations whose result would exceed
    `max_value` are not drawn (keeps numbers learnable)."""
    n_ops = rng.randint(min_steps, max_steps)
    name, friend = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    cur = rng.randint(2, max_start or max_number)
    sentences = [f"{name} has {cur} {item}."]
    steps: list[Step] = []
    for _ in range(n_ops):
        kinds = ["add"] if cur + 1 <= max_value else []
        kinds += ["sub"] if cur > 1 else []
        kinds += ["mul"] if cur * 2 <= max_value else []
        kinds += ["div"] if any(cur % d == 0 for d in range(2, 6)) else []
        kinds += ["rate"] if cur * 2 <= max_value else []
        kind = rng.choice(kinds)
        if kind == "add":
            b = rng.randint(1, min(max_number, max_value - cur))
            if rng.random() < 0.5:
                sentences.append(f"{name} buys {b} more {item} at {rng.choice(PLACES)}.")
                why = f"buying {b} more adds {b}"
            else:
                sentences.append(f"{friend} gives {name} {b} {item}.")
                why = f"{friend} giving {b} to {name} adds {b}"
            op, new, text = "+", cur + b, f"{name} now has {cur} + {b} = {cur + b} {item}."
        elif kind == "sub":
            b = rng.randint(1, min(max_number, cur - 1))
            if rng.random() < 0.5:
                sentences.append(f"{name} gives {b} {item} to {friend}.")
                why = f"giving {b} away takes {b} away"
            else:
                sentences.append(f"{name} loses {b} {item}.")
                why = f"losing {b} takes {b} away"
            op, new, text = "-", cur - b, f"{name} has {cur} - {b} = {cur - b} {item} left."
        elif kind == "mul":
            b = rng.randint(2, max(2, min(4, max_value // cur)))
            word = {2: "doubles", 3: "triples", 4: "quadruples"}[b]
            sentences.append(f"Then {name} {word} the number of {item}.")
            why = f"{word[:-1]}ing the number multiplies it by {b}".replace("eing", "ing")
            op, new, text = "*", cur * b, f"{name} now has {cur} * {b} = {cur * b} {item}."
        elif kind == "div":
            b = rng.choice([d for d in range(2, 6) if cur % d == 0])
            sentences.append(f"{name} splits the {item} into {b} equal groups and keeps one group.")
            why = f"keeping one of {b} equal groups divides by {b}"
            op, new, text = "/", cur // b, f"One group has {cur} / {b} = {cur // b} {item}."
        else:
            b = rng.randint(2, max(2, min(9, max_value // cur)))
            sentences.append(f"{friend} has {b} times as many {item} as {name}.")
            why = f"{b} times as many multiplies by {b}"
            op, new, text = "*", cur * b, f"{friend} has {cur} * {b} = {cur * b} {item}."
            name, friend = friend, rng.choice([n for n in NAMES if n not in (name, friend)])
        steps.append(Step(op, cur, b, new, text, why))
        cur = new
        if rng.random() < distractors:
            other = rng.choice([n for n in NAMES if n not in (name, friend)])
            sentences.append(rng.choice([f"{other} has {rng.randint(2, max_number)} {rng.choice(ITEMS)}.",
                                         f"{other} walks {rng.randint(2, 9)} miles to {rng.choice(PLACES)}."]))
    sentences.append(f"How many {item} does {name} have now?")
    return LabProblem(" ".join(sentences), tuple(steps), cur)


POOLS = ("test", "train", "collect", "extra")


def make_pools(seed: int, sizes: dict[str, int], **knobs) -> dict[str, list[LabProblem]]:
    """Disjoint pools of problems (no question text in two pools), in a fixed order so that a pool's
    content does not depend on the sizes of the pools after it."""
    unknown = sorted(set(sizes) - set(POOLS))
    if unknown:
        raise ValueError(f"unknown problem pools {unknown}; expected some of {POOLS}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[LabProblem]] = {}
    for name in POOLS:
        size, got, tries = sizes.get(name, 0), [], 0
        while len(got) < size:
            tries += 1
            if tries > 50 * size + 1000:
                raise ValueError(f"cannot generate {size} distinct problems for pool {name!r} with knobs {knobs}")
            p = generate(rng, **knobs)
            if p.question not in seen:
                seen.add(p.question)
                got.append(p)
        out[name] = got
    return out


# ---------------------------------------------------------------- reading an attempted solution


@dataclass(frozen=True)
class Mistake:
    step: int        # 1-based index of the first wrong step
    kind: str        # one of ERROR_TYPES
    written: str     # what the wrong step says ("" when the solution stops early)


def first_mistake(path: str, problem: LabProblem) -> Mistake | None:
    """The first wrong step of an attempted solution and its error type, from the program; None if right."""
    steps = split_steps(path)
    prog = problem.program
    for i, (op, a, b, r) in enumerate(prog):
        if i >= len(steps):
            return Mistake(i + 1, "skipped step", "")
        m = _EQ.search(steps[i])
        if m is None:
            return Mistake(i + 1, "skipped step", steps[i])
        x, o, y, z = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if (x, o, y, z) == (a, op, b, r):
            continue
        true = _apply(o, x, y)
        nxt = prog[i + 1] if i + 1 < len(prog) else None
        if (x, o, y) == (a, op, b) or true is None or true != z:
            kind = "arithmetic slip"
        elif nxt is not None and (o, y) == (nxt[0], nxt[2]) and (o, y) != (op, b):
            kind = "skipped step"
        elif o != op:
            kind = "wrong operation"
        else:
            kind = "wrong operand or quantity"
        return Mistake(i + 1, kind, steps[i])
    k = len(prog) + 1
    tail = steps[len(prog):]
    m = _ANSWER.search(tail[0]) if tail else None
    if m is None or int(m.group(1)) != problem.answer:
        return Mistake(k, "wrong final read-out", tail[0] if tail else "")
    return None


def _apply(op: str, x: int, y: int) -> int | None:
    if op == "/" and (y == 0 or x % y):
        return None
    return OPS[op](x, y)


def plant(problem: LabProblem, kind: str, step: int, rng: random.Random) -> str:
    """A solution with one planted error of `kind` at `step` (1-based): for tests and the vocabulary."""
    if kind not in ERROR_TYPES:
        raise ValueError(f"unknown error type {kind!r}; expected one of {ERROR_TYPES}")
    lines = [s.text for s in problem.steps]
    answer = problem.answer
    if kind == "wrong final read-out":
        wrong = problem.steps[0].a if problem.steps[0].a != answer else answer + 1
        return format_steps(lines + [f"The answer is {wrong}."])
    i = min(step, len(lines)) - 1
    s = problem.steps[i]
    if kind == "skipped step":
        n = problem.steps[i + 1] if i + 1 < len(lines) else None
        res = _apply(n.op, s.a, n.b) if n is not None else None
        if res is not None:  # goes straight on with the next operation
            lines[i] = s.text.replace(f"{s.a} {s.op} {s.b} = {s.result}", f"{s.a} {n.op} {n.b} = {res}", 1)
            return format_steps(lines[: i + 1] + [f"The answer is {res}."])
        return format_steps(lines[:i] + [f"The answer is {s.a}."])
    nxt = problem.steps[i + 1] if i + 1 < len(lines) else None

    def clash(o: str, y: int) -> bool:  # would read as a skipped step
        return nxt is not None and (o, y) == (nxt.op, nxt.b)

    if kind == "wrong operation":
        ok = [o for o in ("+", "*", "-", "/") if o != s.op and _apply(o, s.a, s.b) not in (None, s.result)
              and (o != "-" or s.a > s.b)]
        o = next((o for o in ok if not clash(o, s.b)), ok[0])
        x, y = s.a, s.b
    elif kind == "wrong operand or quantity":
        o, x, y = s.op, s.a, next(v for v in (s.b + 1, s.b + 2) if not clash(s.op, v))
        if s.op == "/":
            x, y = s.a + s.b, s.b
    else:
        o, x, y = s.op, s.a, s.b
    z = _apply(o, x, y)
    z = (z if z is not None else 0) + (rng.choice([1, 2]) if kind == "arithmetic slip" else 0)
    lines[i] = s.text.replace(f"{s.a} {s.op} {s.b} = {s.result}", f"{x} {o} {y} = {z}", 1)
    return format_steps(lines[: i + 1] + [f"The answer is {z}."])


# ---------------------------------------------------------------- corrections and explanations

EXPLANATIONS = ("none", "templated", "informative")


def explanation(problem: LabProblem, mistake: Mistake, style: str) -> str:
    """The explanation part of a correction.  `templated` restates the corrected step (what the issue
    criticises: it adds nothing the corrected step lacks); `informative` names the error type known from
    the program and states the correct relation in words."""
    k = mistake.step
    prog = problem.steps
    if style == "none":
        return ""
    if k > len(prog):
        if style == "templated":
            return f"Step {k} should say the answer is {problem.answer}."
        return (f"Step {k}, wrong final read-out: the question asks for the last quantity, "
                f"which is {problem.answer}.")
    s = prog[k - 1]
    eq = f"{s.a} {s.op} {s.b} = {s.result}"
    if style == "templated":
        return f"Step {k} should compute {eq}."
    if style != "informative":
        raise ValueError(f"unknown explanation style {style!r}; expected one of {EXPLANATIONS}")
    m = _EQ.search(mistake.written or "")
    detail = {"wrong operation": f"it uses {OP_WORDS.get(m.group(2) if m else '', 'another operation')} "
                                 f"where the question needs {OP_WORDS[s.op]}",
              "wrong operand or quantity": "it uses the wrong quantity",
              "arithmetic slip": (f"{m.group(1)} {m.group(2)} {m.group(3)} is "
                                  f"{_apply(m.group(2), int(m.group(1)), int(m.group(3)))}, not {m.group(4)}"
                                  if m and _apply(m.group(2), int(m.group(1)), int(m.group(3))) is not None
                                  else "the result is miscalculated"),
              "skipped step": "it skips a step the question describes",
              }[mistake.kind]
    return f"Step {k}, {mistake.kind}: {detail}. Here {s.relation}, so {eq}."


def correction_text(problem: LabProblem, mistake: Mistake, style: str) -> str:
    """What a correction example trains on: the wrong step, the explanation, the solution from there."""
    gold = split_steps(problem.cot())
    why = explanation(problem, mistake, style)
    head = f"Incorrect step: {mistake.step}."
    body = format_steps(gold[mistake.step - 1:], start=mistake.step)
    return "\n".join([head] + ([f"Explanation: {why}"] if why else []) + ["Correct solution:", body])


def cot_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:\n"


def correction_prompt(question: str, path: str) -> str:
    return f"Question: {question}\nIncorrect solution:\n{path.strip()}\nCorrection:\n"
