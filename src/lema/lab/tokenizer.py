"""Word-level tokens with one token per digit.

Character tokens teach a 4-layer model nothing useful at this budget; word tokens with
numbers split into digits do.  The vocabulary
is closed: it is built from the generator's own words, and an unknown word is an error,
so a template change cannot silently train on <unk>.
"""

from __future__ import annotations

import functools
import random
import re

_TOKEN = re.compile(r"\n|\d|[A-Za-z]+|[^\sA-Za-z\d]")
SPECIALS = ["<pad>", "<eos>", "<unk>"]
_NO_SPACE_BEFORE = {".", ",", ":", "?", "'", "\n"}


class WordTokenizer:
    """Encode/decode the lab's texts; `len(encode(text))` is how the lab counts tokens everywhere."""

    def __init__(self, words: list[str]):
        self.vocab = SPECIALS + sorted(set(words) - set(SPECIALS))
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.eos_id = self.ids["<pad>"], self.ids["<eos>"]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        out = []
        for t in _TOKEN.findall(text):
            if t not in self.ids:
                raise ValueError(f"word {t!r} is not in the lab vocabulary (text: {text[:80]!r})")
            out.append(self.ids[t])
        return out

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def decode(self, ids: list[int]) -> str:
        out: list[str] = []
        prev = ""
        for i in ids:
            if i == self.eos_id:
                break
            t = self.vocab[i]
            if t in SPECIALS:
                continue
            glue = (not out or prev == "\n" or t in _NO_SPACE_BEFORE or (t.isdigit() and prev.isdigit()))
            out.append(t if glue else " " + t)
            prev = t
        return "".join(out)


@functools.lru_cache(maxsize=4)
def build_tokenizer(seed: int = 0, n: int = 3000) -> WordTokenizer:
    """The closed vocabulary: every word the generator, the pretraining templates, the prompts and every
    correction style can write (built once per process: it is a pure function of its arguments)."""
    from lema.lab import task

    rng = random.Random(seed)
    words = set(str(d) for d in range(10))
    texts = []
    for _ in range(n):
        p = task.generate(rng, min_steps=2, max_steps=5, distractors=1.0)
        texts += [p.question, p.cot()]
        for kind in task.ERROR_TYPES:
            path = task.plant(p, kind, rng.randint(1, len(p.steps)), rng)
            texts.append(task.correction_prompt(p.question, path))
            m = task.first_mistake(path, p)
            if m is not None:
                for style in task.EXPLANATIONS:
                    texts.append(task.correction_text(p, m, style))
    from lema.lab.pretrain import pretrain_problem

    for _ in range(n):
        texts += list(pretrain_problem(rng, distractors=1.0)[1:])
    for op in ("+", "-", "*", "/"):
        texts.append(task.OP_WORDS[op] + " another operation the result is miscalculated")
    texts.append(task.cot_prompt("x"))
    for t in texts:
        words.update(_TOKEN.findall(t))
    return WordTokenizer(sorted(words))
