"""Reasoning steps: splitting any solution text into steps, and writing the
"Step k: ..." format that prompts, SFT data and corrections share.

Splitting must cope with paths written by other models: "Step 2:" markers
(markdown or not), numbered lists, one step a line, or plain prose.
"""

from __future__ import annotations

import re

_STEP_MARK = re.compile(r"(?im)^[ \t>*#_-]*\**\s*step\s*(\d+)\s*\**\s*[:.)\-]\s*\**\s*")
_INLINE_STEP_MARK = re.compile(r"(?i)(?:^|(?<=\s))\**step\s*(\d+)\s*\**\s*[:.)]\s*\**\s*")
_NUMBERED = re.compile(r"(?m)^\s*(\d+)[.)]\s+")
_CALC = re.compile(r"<<[^<>]*>>")


def split_steps(text: str) -> list[str]:
    """Steps of a solution, in order, without their "Step k:" labels."""
    text = text.strip()
    if not text:
        return []
    for pattern in (_STEP_MARK, _INLINE_STEP_MARK):
        marks = list(pattern.finditer(text))
        if len(marks) >= 1:
            steps = []
            for i, m in enumerate(marks):
                end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
                body = text[m.end() : end].strip()
                if body:
                    steps.append(body)
            return _with_head(text[: marks[0].start()], steps)
    marks = list(_NUMBERED.finditer(text))
    if len(marks) >= 2:
        steps = [text[m.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip()
                 for i, m in enumerate(marks)]
        tail_lines = steps[-1].split("\n")
        if len(tail_lines) > 1:  # a conclusion after the list is a step of its own
            steps[-1] = tail_lines[0].strip()
            steps.append(" ".join(t.strip() for t in tail_lines[1:] if t.strip()))
        return _with_head(text[: marks[0].start()], [s for s in steps if s])
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if len(lines) >= 2:
        return lines
    return split_sentences(text)


def _with_head(head: str, steps: list[str]) -> list[str]:
    """Text before the first marker is a step only if it computes something ("Sure! Let's see." is not)."""
    head = head.strip()
    return ([head] if head and re.search(r"\d", head) else []) + steps


def _uses_latex(text: str) -> bool:
    """Currency ("$12") is not math mode; "$x$", "$\\frac..$" are."""
    return "\\" in text or bool(re.search(r"\$[^$\d\s.,]", text))


def split_sentences(text: str) -> list[str]:
    """Sentences, never breaking inside $...$ math or inside decimals like 3.5."""
    latex = _uses_latex(text)
    out, buf, in_math = [], [], False
    i = 0
    while i < len(text):
        ch = text[i]
        buf.append(ch)
        if latex and ch == "$" and (i == 0 or text[i - 1] != "\\"):
            in_math = not in_math
        elif ch in ".!?" and not in_math:
            nxt = text[i + 1 : i + 3]
            if (nxt[:1] == "" or nxt[:1].isspace()) and (len(nxt) < 2 or not nxt[1].islower()):
                sentence = "".join(buf).strip()
                if sentence:
                    out.append(sentence)
                buf = []
        i += 1
    rest = "".join(buf).strip()
    if rest:
        out.append(rest)
    return out


def format_steps(steps: list[str], start: int = 1) -> str:
    return "\n".join(f"Step {start + i}: {s.strip()}" for i, s in enumerate(steps))


def answer_step(answer: str) -> str:
    return f"The answer is {answer}."


def gsm8k_steps(solution: str, answer: str) -> list[str]:
    """GSM8K reference solution -> steps: calculator annotations removed, answer step appended."""
    body = solution.split("####")[0]
    lines = [_CALC.sub("", ln).strip() for ln in body.split("\n")]
    return [ln for ln in lines if ln] + [answer_step(answer)]


def math_steps(solution: str, answer: str) -> list[str]:
    """MATH reference solution -> sentence steps, then the answer step."""
    text = re.sub(r"\s+", " ", solution).strip()
    steps = split_sentences(text)
    return steps + [answer_step(f"${answer}$" if answer and not answer.startswith("$") else answer)]


def solution_steps(solution: str, answer: str, task: str) -> list[str]:
    if task == "math":
        return math_steps(solution, answer)
    if task == "lab":  # generated already in step format, answer step included
        return split_steps(solution)
    return gsm8k_steps(solution, answer)
