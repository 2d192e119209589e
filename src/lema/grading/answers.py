"""Final-answer extraction and grading for GSM8K-style, MATH-style, time and text answers.

Extraction is deliberately tolerant: it must work on outputs of models we did
not train (markdown, ``\\boxed{}``, "#### 72", "Final Answer: ..."), because
users grade other models' files with ``lema grade``.  MATH equivalence goes
through ``math-verify`` (symbolic), behind a cheap normalised-string check.

Numbers (GSM8K, SVAMP, any ``answer_type: numeric`` set) are read by the one
reader in ``lema.grading.numbers`` (its docstring states the number rule and the
decimal rule).  ``time`` answers compare as minutes since midnight, ``text``
answers casefolded with whitespace collapsed.
"""

from __future__ import annotations

import re

from lema.grading.numbers import (
    AS_FRACTION,
    DEFAULT_MIN_PLACES,
    NotANumber,
    format_number,
    numbers_equal,
    printed_numbers,
    read_gold,
    strip_markup,
)
from lema.grading.numbers import numbers_in as _numbers_in

_ANSWER_CUE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=|should\s+be|would\s+be)?\s*[:=]?",
    re.IGNORECASE,
)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}``, nested braces allowed."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = idx + (6 if text.startswith("\\boxed", idx) else 5)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":  # "\boxed 5"
        m = re.match(r"\s*([^\s$]+)", text[i:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def numbers_in(text: str) -> list[str]:
    """All numbers in prose, normalised exactly ("$1,200.50" -> "1200.5", "3/4" -> "0.75", "1/3" -> "1/3")."""
    return [format_number(v) for v in _numbers_in(text)]


def _printed(text: str) -> list[str]:
    """Numbers as printed, normalised: "3.50" keeps its decimals, "3/4" stays a fraction, "$1,200" -> "1200"."""
    return [f"{v.numerator}/{v.denominator}" if places == AS_FRACTION and v.denominator != 1
            else format_number(v, places) for v, places in printed_numbers(text)]


def _first_number(text: str) -> str | None:
    nums = _printed(text)
    return nums[0] if nums else None


def extract_gsm8k(text: str) -> str | None:
    text = strip_markup(text)
    m = list(re.finditer(r"####\s*([^\n]*)", text))
    if m:
        value = _first_number(m[-1].group(1))
        if value is not None:
            return value
    boxed = last_boxed(text)
    if boxed is not None:
        value = _first_number(boxed)
        if value is not None:
            return value
    cues = list(_ANSWER_CUE.finditer(text))
    for cue in reversed(cues):
        tail = text[cue.end() :].split("\n\n", 1)[0][:200]
        value = _first_number(tail)
        if value is not None:
            return value
    nums = _printed(text)
    return nums[-1] if nums else None


_MATH_ANSWER_IS = re.compile(
    r"(?:final\s+answer\s+is|the\s+answer\s+is|final\s+answer\s*:|answer\s*:)\s*", re.IGNORECASE
)


def extract_math(text: str) -> str | None:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    matches = list(_MATH_ANSWER_IS.finditer(text))
    if not matches:
        return None
    ans = text[matches[-1].end() :].strip()
    ans = re.split(r"\.\s+I hope|\n", ans)[0].strip()
    ans = ans.rstrip(".").strip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$").strip()
    return ans or None


def _answer_span(text: str) -> str:
    """The part of a solution that states its final answer: "#### x", \\boxed{x}, the text after the last
    answer cue (to the end of its line), else the last non-empty line."""
    m = list(re.finditer(r"####\s*([^\n]*)", text))
    if m:
        return m[-1].group(1)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    cues = list(_ANSWER_CUE.finditer(text))
    if cues:
        return text[cues[-1].end():].split("\n", 1)[0]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_TIME = re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*(?:([ap])\.?\s?m\b\.?)?(?![\d:])", re.IGNORECASE)


def read_time(text: str, whole: bool = False) -> tuple[int, bool] | None:
    """(minutes since midnight, meridiem given) of the last time in `text` ("5:45", "3:30 p.m.", "7 am",
    "noon"); with `whole`, `text` must be one time and nothing else."""
    t = text.strip().rstrip(".").strip()
    low = t.lower()
    if low in ("noon", "midday", "12 noon"):
        return 720, True
    if low == "midnight":
        return 0, True
    found = []
    for m in _TIME.finditer(t):
        if m.group(2) is None and m.group(3) is None:
            continue  # a bare number is not a time
        h, mins, mer = int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "").lower()
        if mins > 59 or h > 23 or (mer and not 1 <= h <= 12):
            continue
        if mer:
            h = h % 12 + (12 if mer == "p" else 0)
        found.append((m, (h * 60 + mins, bool(mer))))
    if not found:
        return None
    if whole:
        m, value = found[-1]
        return value if len(found) == 1 and m.group(0).strip() == t.strip() else None
    return found[-1][1]


def format_time(value: tuple[int, bool]) -> str:
    """"15:30" for a time with a meridiem, "3:30" (12-hour, ambiguous) without."""
    minutes, mer = value
    return f"{minutes // 60:02d}:{minutes % 60:02d}" if mer else f"{minutes // 60}:{minutes % 60:02d}"


def normalize_text(text: str) -> str:
    """Casefolded, whitespace collapsed, surrounding quotes, markup and punctuation removed."""
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", text).replace("**", "")
    s = " ".join(s.casefold().split())
    return s.strip(" \t.,;:!?\"'`$")


def extract_answer(text: str, task: str) -> str | None:
    """The final answer a solution text commits to, or None when it commits to none."""
    if task in ("gsm8k", "lab"):
        return extract_gsm8k(text)
    if task == "math":
        return extract_math(text)
    if task == "time":
        span = _answer_span(text)
        value = read_time(span) or read_time(text)
        return format_time(value) if value else None
    if task == "text":
        return normalize_text(strip_markup(_answer_span(text))) or None
    raise ValueError(f"unknown task {task!r} (expected gsm8k, math, time, text or lab)")


def normalize_math(ans: str) -> str:
    """Cheap canonical form so that most equal answers match without sympy."""
    s = ans.strip()
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    s = re.sub(r"\\(?:mbox|mathrm|textbf)\{\s*([^{}]*?)\s*\}", r"\1", s)
    for a, b in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
                 ("^\\circ", ""), ("^{\\circ}", ""), ("\\circ", ""), ("\\%", ""), ("%", ""), ("\\$", ""),
                 ("$", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""), ("degrees", ""), ("°", "")):
        s = s.replace(a, b)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^[a-zA-Z]\s*=", "", s)  # "x=5" -> "5"
    s = s.rstrip(".")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    return s


def _math_verify_equal(pred: str, gold: str, timeout: int) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    try:
        g = parse(f"\\boxed{{{gold}}}", extraction_config=configs, parsing_timeout=timeout)
        p = parse(f"\\boxed{{{pred}}}", extraction_config=configs, parsing_timeout=timeout)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=timeout))
    except Exception:  # math-verify raises on exotic LaTeX and on timeouts; unequal is the safe answer
        return False


def math_verify_grade(text: str, gold: str, timeout: int = 5) -> bool:
    """math-verify's own verdict on a whole solution text (its extraction, its equivalence): the
    second opinion the evaluation audit compares lema's grading with."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    try:
        g = parse(f"\\boxed{{{gold}}}", extraction_config=[LatexExtractionConfig(boxed_match_priority=0),
                                                           ExprExtractionConfig()], parsing_timeout=timeout)
        p = parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=timeout)
        return bool(g and p and verify(g, p, timeout_seconds=timeout))
    except Exception:  # same policy as _math_verify_equal: an exception is "not shown equal"
        return False


def answers_equal(pred: str | None, gold: str, task: str, timeout: int = 5,
                  min_places: int | None = DEFAULT_MIN_PLACES) -> bool:
    if pred is None:
        return False
    if task in ("gsm8k", "lab"):
        nums = printed_numbers(pred)
        try:
            g = read_gold(gold)
        except NotANumber:
            return pred.strip() == gold.strip()
        return bool(nums) and numbers_equal(nums[0][0], g, min_places, nums[0][1])
    if task == "time":
        p, g = read_time(pred), read_time(gold)
        if p is None or g is None:
            return False
        day = 1440 if p[1] and g[1] else 720  # without a.m./p.m. on either side, 3:30 is 3:30 or 15:30
        return p[0] % day == g[0] % day
    if task == "text":
        a, b = normalize_text(pred), normalize_text(gold)
        if a == b:
            return True
        try:
            return numbers_equal(read_gold(pred), read_gold(gold), min_places)
        except NotANumber:
            return False
    if normalize_math(pred) == normalize_math(gold):
        return True
    return _math_verify_equal(pred, gold, timeout)


def is_correct(text: str, gold_answer: str, task: str, timeout: int = 5) -> bool:
    """Does the solution text's final answer equal the gold answer?"""
    return answers_equal(extract_answer(text, task), gold_answer, task, timeout)


def gsm8k_gold(answer_field: str) -> str:
    """Gold answer of a GSM8K row: the number after '####', commas removed."""
    m = re.search(r"####\s*(.+)\s*$", answer_field.strip())
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).strip().replace(",", "")
