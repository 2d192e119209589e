"""The one number reader for golds and predictions (the eval loader and ``lema grade`` both use it).

Forms read exactly, as fractions: ``72``, ``-3.5``, ``.5``, ``1,200``, ``9 867 630`` (space, thin-space or
narrow no-break-space thousands separators), ``$3,244,047.10``, ``25%``, ``2.0107e-06``, ``6.277334E+9``,
``1.2 x 10^5`` / ``1.2 \\times 10^{5}``, fractions ``1/3``, mixed numbers ``14053029 2/3``, ``-(1/3)``,
``\\frac{1}{3}``, ``\\boxed{...}``.  Prose is scanned by :func:`numbers_in`; a gold must be one number as a
whole (:func:`read_gold`), never cut to its first number (``5:45``, ``3:30 p.m.``, ``February 3rd`` are not
numbers).

Float golds: a decimal gold with more significant digits than a float64 holds exactly (over 15, e.g.
``3244047.0999999996``, ``14053029.666666666``, ``0.30000000000000004``) is float noise and is read at 15
significant digits (3244047.1, 14053029.6666667, 0.3); integers are never touched.

The decimal rule (:func:`numbers_equal`), for golds with more decimals than the prediction prints:
a decimal prediction printed with k >= ``min_places`` decimals (and at least ``min_places`` significant
digits) matches when it equals the gold rounded half-up to k decimals (``1234.57`` for ``1234.5678``; not
``1234.6``, not ``1235``); a non-terminating fraction (``1/3``, ``42159089/3``) matches a decimal gold when it
rounds to the gold at the gold's places.  ``min_places=None`` keeps only the fraction rule.  Integers on
either side are always exact, so a big integer with its last digit wrong never matches.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

DEFAULT_MIN_PLACES = 2  # the decimal rule's default; `evaluate.min_decimals` and `lema grade --min-decimals`
FLOAT_DIGITS = 15       # significant digits a float64 always holds exactly

_SEP = "\u2009\u202f\u00a0"  # thin space, narrow no-break space, no-break space
_MINUS = "-\u2212"
# Unsigned decimal: comma, thin-space or space thousands groups (a space group must not run into a word,
# a fraction bar or a hyphen: "3 100-page books" is 3 and 100), or plain digits.
_UDEC = (r"(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:[" + _SEP + r"]\d{3})+|\d{1,3}(?: \d{3})+(?=(?:\.\d+)?(?![\w/\-]))"
         r"|\d+)(?:\.\d+)?|\.\d+")
_EXP = r"(?:[eE](?P<e>[+\-]?\d+)(?!\w)|\s*(?:x|×|\\times|\\cdot|\*)\s*10\s*\^\s*\{?\s*(?P<t>[" + _MINUS + r"]?\d+)\s*\}?)"
_NUMBER = re.compile(
    r"(?<![\w.])(?:"
    r"(?P<pneg>[" + _MINUS + r"])\s*\(\s*(?P<pnum>\d+(?:\.\d+)?)\s*/\s*(?P<pden>\d+)\s*\)"  # -(1/3)
    r"|(?P<mwhole>[" + _MINUS + r"]?\d+) +(?P<mnum>\d+)\s*/\s*(?P<mden>\d+)(?!\d|\.\d)"       # 14053029 2/3
    r"|(?P<lead>[" + _MINUS + r"]?\s?\$?\s?[" + _MINUS + r"]?)(?P<body>" + _UDEC + r")" + _EXP + r"?"
    r"(?:\s*/\s*(?P<den>\d+)(?!\d|\.\d))?"
    r")"
)


def _digits(s: str) -> str:
    return re.sub(r"[,\s" + _SEP + "]", "", s)


def _match_value(m: re.Match) -> Fraction | None:
    """Exact value of one `_NUMBER` match (None for a zero denominator)."""
    try:
        if m.group("pneg"):
            return -Fraction(m.group("pnum")) / int(m.group("pden"))
        if m.group("mwhole"):
            whole, num, den = m.group("mwhole"), int(m.group("mnum")), int(m.group("mden"))
            if den == 0 or num >= den:  # not a proper mixed number: read as written, whole first
                return None
            w = int(whole.replace("\u2212", "-"))
            frac = Fraction(num, den)
            return -(abs(w) + frac) if whole.startswith(("-", "\u2212")) else w + frac
        value = Fraction(_digits(m.group("body")))
        exp = m.group("e") or m.group("t")
        if exp:
            value *= Fraction(10) ** int(exp.replace("\u2212", "-"))
        if m.group("den"):
            value /= int(m.group("den"))
        lead = m.group("lead") or ""
        return -value if sum(lead.count(c) for c in _MINUS) % 2 else value
    except (ValueError, ZeroDivisionError):
        return None


AS_FRACTION = -1  # printed as a fraction or mixed number: an exact value, never a rounded decimal


def _printed_places(m: re.Match, value: Fraction) -> int | None:
    """Decimals the number was printed with ("3.50" -> 2, "2.5e3" -> 0); AS_FRACTION for "1/4", "2 1/2"."""
    if m.group("pneg") or m.group("mwhole") or m.group("den"):
        return AS_FRACTION
    if not (m.group("e") or m.group("t")) and "." in m.group("body"):
        return len(m.group("body").rsplit(".", 1)[1])
    return _terminating_places(value.denominator)


def strip_markup(text: str) -> str:
    text = re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"([" + _MINUS + r"]?)\\[dt]?frac\s*\{\s*([" + _MINUS + r"]?[\d.]+)\s*\}\s*\{\s*(\d+)\s*\}",
                  lambda m: (f"-({m.group(2)}/{m.group(3)})" if m.group(1) else f"{m.group(2)}/{m.group(3)}"), text)
    text = re.sub(r"\\left\s*\(|\\right\s*\)", lambda m: "(" if "(" in m.group(0) else ")", text)
    for a, b in (("**", ""), ("\\$", "$"), ("\\%", "%"), ("\\!", ""), ("{,}", ","), ("\\,", ","), ("\\ ", " ")):
        text = text.replace(a, b)
    return text


Printed = tuple[Fraction, "int | None"]  # a value and the decimals it was printed with (None: never terminates)


def _scan(text: str) -> list[Printed]:
    out: list[Printed] = []
    pos = 0
    while True:
        m = _NUMBER.search(text, pos)
        if m is None:
            return out
        value = _match_value(m)
        if value is None and m.group("mwhole"):  # "4 8/2": two numbers, not a mixed number
            out.append((Fraction(int(m.group("mwhole").replace("\u2212", "-"))), 0))
            pos = m.start("mnum")
            continue
        if value is not None:
            out.append((value, _printed_places(m, value)))
        pos = m.end()


def printed_numbers(text: str) -> list[Printed]:
    """Every number in prose with the decimals it was printed with ("3.50" -> (7/2, 2))."""
    return _scan(strip_markup(text))


def numbers_in(text: str) -> list[Fraction]:
    """Every number in prose, exactly ("$1,200.50" -> 2401/2, "2.0107e-06", "14053029 2/3", "-(1/3)")."""
    return [v for v, _ in printed_numbers(text)]


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


def format_number(value: Fraction, printed: int | None = None) -> str:
    """Exact canonical text: "72", "-3.5", "0.0000001", or "1/3" when no finite decimal exists; with
    `printed` decimals, trailing zeros kept to that many ("3.50")."""
    places = _terminating_places(value.denominator)
    if places is not None and printed is not None and printed > places:
        places = printed
    if places is None:
        return f"{value.numerator}/{value.denominator}"
    if places == 0:
        return str(value.numerator)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    return ("-" if value < 0 else "") + digits[:-places] + "." + digits[-places:]


def denoise(value: Fraction) -> Fraction:
    """A decimal with more than FLOAT_DIGITS significant digits read at FLOAT_DIGITS (float noise);
    integers and non-terminating fractions unchanged."""
    if value.denominator == 1 or _terminating_places(value.denominator) is None:
        return value
    d = Decimal(format_number(value))
    if len(d.as_tuple().digits) <= FLOAT_DIGITS:
        return value
    return Fraction(Decimal(format(d, f".{FLOAT_DIGITS}g")))


class NotANumber(ValueError):
    """A gold that is not one number as a whole."""


_UNIT = re.compile(r"\s*\(\s*[A-Za-z][A-Za-z .'-]*\)\s*$")  # ASDiv-style "61 (apples)"


def read_gold(value: Any) -> Fraction:
    """A numeric gold as one exact number: JSON numbers, or text that is a single number as a whole
    ("1,200", "$3,244,047.10", "#### 72", "\\boxed{3/4}", "9 867 630", "25%", "61 (apples)"); float noise
    removed (`denoise`).  Anything else (times, dates, words, several numbers) raises NotANumber."""
    if isinstance(value, bool) or value is None:
        raise NotANumber(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NotANumber(f"expected a finite number, got {value!r}")
        return denoise(Fraction(repr(value)))
    if not isinstance(value, str):
        raise NotANumber(f"expected a number, got {type(value).__name__}")
    text = value.strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    if "\\boxed" in text or "\\fbox" in text:
        from lema.grading.answers import last_boxed

        text = (last_boxed(text) or text).strip()
    text = strip_markup(text).strip()
    if len(text) > 1 and text[0] == "$" and text[-1] == "$" and text.count("$") == 2:
        text = text[1:-1].strip()  # "$18$" (LaTeX math mode)
    text = _UNIT.sub("", text)
    text = re.sub(r"\s*%$", "", text).rstrip(".").strip()
    m = _NUMBER.fullmatch(text) if text else None
    value_ = _match_value(m) if m else None
    if value_ is None:
        raise NotANumber(f"not a number: {value.strip()[:60]!r}")
    return denoise(value_)


def is_number(text: str) -> bool:
    try:
        read_gold(text)
        return True
    except NotANumber:
        return False


def _places(value: Fraction) -> int | None:
    return _terminating_places(value.denominator)


def _round_half_up(value: Fraction, places: int) -> Fraction:
    scale = 10**places
    rounded = Fraction(int(abs(value) * scale + Fraction(1, 2)), scale)
    return rounded if value >= 0 else -rounded


def _significant(value: Fraction, places: int) -> int:
    return len(str(abs(value.numerator) * 10**places // value.denominator).lstrip("0"))


def numbers_equal(pred: Fraction, gold: Fraction, min_places: int | None = DEFAULT_MIN_PLACES,
                  pred_places: int | None = None) -> bool:
    """The numeric rule (module docstring): exact, or the decimal rule for longer decimal golds;
    `pred_places` are the decimals the prediction was printed with (default: its value's)."""
    if pred == gold:
        return True
    gold_places = _places(gold)
    if gold.denominator == 1 or gold_places == 0:
        return False  # integers are exact
    if _places(pred) is None:  # a non-terminating prediction (1/3) vs a decimal gold at the gold's places
        return gold_places is not None and _round_half_up(pred, gold_places) == gold
    if pred_places == AS_FRACTION:
        return False  # an exact fraction is never a rounded decimal
    if pred_places is None:
        pred_places = _places(pred)
    if min_places is None or pred_places < min_places or pred.denominator == 1:
        return False
    if gold_places is not None and gold_places <= pred_places:
        return False  # the gold is written with no more decimals than the prediction: exact only
    return _significant(pred, pred_places) >= min_places and _round_half_up(gold, pred_places) == pred
