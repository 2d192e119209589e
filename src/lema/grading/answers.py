"""Final-answer extraction and grading for GSM8K-style and MATH-style outputs.

Extraction is deliberately tolerant: it must work on outputs of models we did
not train (markdown, ``\\boxed{}``, "#### 72", "Final Answer: ..."), because
users grade other models' files with ``lema grade``.  MATH equivalence goes
through ``math-verify`` (symbolic), behind a cheap normalised-string check.

Numeric rule (GSM8K, SVAMP, any ``answer_type: numeric`` set): numbers are read
as exact fractions, so integers and finite decimals must be *equal* ("1,379,134"
is not 1,379,135; "3.50" is 3.5).  The one tolerance: when the prediction is a
non-terminating fraction (1/3, 2/7) and the gold is a finite decimal, the gold
is taken to be that value rounded, and they match when rounding the prediction
half-up to the gold's number of decimal places gives the gold (1/3 vs 0.33
or 0.333, never vs 0.34).  A decimal prediction is never rounded to match.
"""

from __future__ import annotations

import re
from fractions import Fraction

# A number as written in prose: optional sign, optional currency, thousands
# separators, decimals.  "-$1,200.50", "$-3", ".5", "1 200" is not supported.
_NUM_RE = re.compile(r"(?<![\w.])" + r"([-−]?\s?\$?\s?[-−]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+))(?:\s*/\s*(\d+))?")
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


def parse_number(raw: str, denom: str | None = None) -> Fraction | None:
    """Exact value of one number as written ("-$1,200.50", "3", "0.5") optionally over a denominator."""
    s = raw.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    neg = s.count("-") % 2 == 1
    s = s.replace("-", "")
    if not s or s == ".":
        return None
    try:
        value = Fraction(s)
        if denom:
            if int(denom) == 0:
                return None
            value /= int(denom)
    except (ValueError, ZeroDivisionError):
        return None
    return -value if neg else value


def _clean_number(raw: str, denom: str | None = None) -> str | None:
    value = parse_number(raw, denom)
    return None if value is None else format_number(value)


def _terminating_places(den: int) -> int | None:
    """Decimal places needed to write 1/den exactly, or None when it never terminates."""
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    return max(twos, fives) if den == 1 else None


def format_number(value: Fraction) -> str:
    """Exact canonical text: "72", "-3.5", "0.0000001", or "1/3" when no finite decimal exists."""
    places = _terminating_places(value.denominator)
    if places is None:
        return f"{value.numerator}/{value.denominator}"
    if places == 0:
        return str(value.numerator)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    return ("-" if value < 0 else "") + digits[:-places] + "." + digits[-places:]


def numbers_in(text: str) -> list[str]:
    """All numbers in prose, normalised exactly ("$1,200.50" -> "1200.5", "3/4" -> "0.75", "1/3" -> "1/3")."""
    out = []
    for m in _NUM_RE.finditer(text):
        value = _clean_number(m.group(1), m.group(2))
        if value is not None:
            out.append(value)
    return out


def _first_number(text: str) -> str | None:
    nums = numbers_in(text)
    return nums[0] if nums else None


def _strip_markup(text: str) -> str:
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:d|t)?frac\{(\d+)\}\{(\d+)\}", r"\1/\2", text)
    return text.replace("**", "").replace("\\$", "$").replace("\\%", "%").replace("\\!", "").replace("{,}", ",")


def extract_gsm8k(text: str) -> str | None:
    text = _strip_markup(text)
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
    nums = numbers_in(text)
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


def extract_answer(text: str, task: str) -> str | None:
    """The final answer a solution text commits to, or None when it commits to none."""
    if task in ("gsm8k", "lab"):
        return extract_gsm8k(text)
    if task == "math":
        return extract_math(text)
    raise ValueError(f"unknown task {task!r} (expected gsm8k, math or lab)")


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


def answers_equal(pred: str | None, gold: str, task: str, timeout: int = 5) -> bool:
    if pred is None:
        return False
    if task in ("gsm8k", "lab"):
        p, g = _clean_or_none(pred), _clean_or_none(gold)
        if p is None or g is None:
            return pred.strip() == gold.strip()
        return numbers_equal(_as_fraction(p), _as_fraction(g), gold_places(g))
    if normalize_math(pred) == normalize_math(gold):
        return True
    return _math_verify_equal(pred, gold, timeout)


def _as_fraction(canonical: str) -> Fraction:
    return Fraction(canonical)  # Fraction reads both "0.75" and "1/3" exactly


def gold_places(canonical: str) -> int:
    """Decimal places the gold is written with ("0.33" -> 2); 0 for integers and fractions."""
    return len(canonical.split(".", 1)[1]) if "." in canonical else 0


def numbers_equal(pred: Fraction, gold: Fraction, places: int) -> bool:
    """The numeric rule (module docstring): exact, except a non-terminating prediction vs a rounded gold."""
    if pred == gold:
        return True
    if places == 0 or _terminating_places(pred.denominator) is not None:
        return False
    scale = 10**places
    rounded = Fraction(int(abs(pred) * scale + Fraction(1, 2)), scale)
    return (rounded if pred >= 0 else -rounded) == gold


def _clean_or_none(s: str) -> str | None:
    nums = numbers_in(_strip_markup(s))
    return nums[0] if nums else None


def is_correct(text: str, gold_answer: str, task: str, timeout: int = 5) -> bool:
    """Does the solution text's final answer equal the gold answer?"""
    return answers_equal(extract_answer(text, task), gold_answer, task, timeout)


def gsm8k_gold(answer_field: str) -> str:
    """Gold answer of a GSM8K row: the number after '####', commas removed."""
    m = re.search(r"####\s*(.+)\s*$", answer_field.strip())
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).strip().replace(",", "")
