"""The base model's pretraining distribution: related to the task but not the task.

As in the paper (a general model that CoT fine-tuning improves a lot), the base learns the task's
vocabulary, the "Step k:" format and the arithmetic, but never sees a multi-step problem: arithmetic
facts, one-step word problems, and the task's names and items in other templates ("together",
"how many more").  Its accuracy on the 2-4-step task is therefore low, and fine-tuning on the CoT set
has something to teach.
"""

from __future__ import annotations

import random

from lema.grading.steps import format_steps
from lema.lab import task
from lema.lab.engine import Example

KINDS = ("fact", "one_step", "together", "difference")
# How often each kind is drawn: mostly the task's own one-step operations (from any quantity up to max_value, so
# every step a multi-step path takes has been seen alone), then bare facts, then the other templates.
MIX = {"fact": 0.2, "one_step": 0.6, "together": 0.1, "difference": 0.1}
PAD = 3   # extra distractor sentences in a one-step question, at most


def _fact(rng: random.Random, max_number: int, max_value: int) -> tuple[str, str]:
    op = rng.choice("+-*/")
    if op == "/":
        b = rng.randint(2, 5)
        r = rng.randint(1, max_value // b)
        a = r * b
    elif op == "*":
        a = rng.randint(2, max_value // 2)
        b = rng.randint(2, max(2, min(9, max_value // a)))
        r = a * b
    elif op == "+":
        a = rng.randint(1, max_value - 1)
        b = rng.randint(1, min(max_number, max_value - a))
        r = a + b
    else:
        a = rng.randint(2, max_value)
        b = rng.randint(1, min(max_number, a - 1))
        r = a - b
    return f"What is {a} {op} {b}?", format_steps([f"{a} {op} {b} = {r}.", f"The answer is {r}."])


def _two_people(rng: random.Random, max_value: int, together: bool) -> tuple[str, str]:
    name, friend = rng.sample(task.NAMES, 2)
    item = rng.choice(task.ITEMS)
    x, y = rng.randint(2, max_value // 2), rng.randint(2, max_value // 2)
    if together:
        q = f"{name} has {x} {item} and {friend} has {y} {item}. How many {item} do they have together?"
        return q, format_steps([f"Together they have {x} + {y} = {x + y} {item}.", f"The answer is {x + y}."])
    x, y = max(x, y) + 1, min(x, y)
    q = f"{name} has {x} {item} and {friend} has {y} {item}. How many more {item} does {name} have?"
    return q, format_steps([f"{name} has {x} - {y} = {x - y} more {item}.", f"The answer is {x - y}."])


def _pad(rng: random.Random, question: str, max_number: int) -> str:
    """Up to PAD more distractor sentences before the question's last sentence, so that one-step questions
    are as long as the task's multi-step ones (a step is then learnt at the positions where the task needs it)."""
    head, ask = question.rsplit(". ", 1)
    extra = []
    for _ in range(rng.randint(0, PAD)):
        other = rng.choice([n for n in task.NAMES if n not in question])
        extra.append(rng.choice([f"{other} has {rng.randint(2, max_number)} {rng.choice(task.ITEMS)}.",
                                 f"{other} walks {rng.randint(2, 9)} miles to {rng.choice(task.PLACES)}."]))
    return " ".join([head + "."] + extra + [ask])


def pretrain_problem(rng: random.Random, max_number: int = 9, max_value: int = 99,
                     distractors: float = 0.3) -> tuple[str, str, str]:
    """One pretraining item: (kind, question, CoT).  Never more than one step of reasoning."""
    kind = rng.choices(KINDS, weights=[MIX[k] for k in KINDS])[0]
    if kind == "fact":
        q, cot = _fact(rng, max_number, max_value)
    elif kind == "one_step":
        p = task.generate(rng, min_steps=1, max_steps=1, max_number=max_number, distractors=distractors,
                          max_value=max_value, max_start=max_value - 1)
        q, cot = _pad(rng, p.question, max_number), p.cot()
    else:
        q, cot = _two_people(rng, max_value, kind == "together")
    return kind, q, cot


def pretrain_examples(seed: int, n: int, avoid: set[str], **knobs) -> list[Example]:
    """`n` pretraining examples; no question in `avoid` (the task's pools) and none with two steps."""
    rng = random.Random(seed)
    keep = {k: knobs[k] for k in ("max_number", "max_value", "distractors") if k in knobs}
    out: list[Example] = []
    while len(out) < n:
        kind, q, cot = pretrain_problem(rng, **keep)
        if q not in avoid:
            out.append(Example(task.cot_prompt(q), cot, f"pretrain/{kind}"))
    return out
