"""Property tests of the numeric grading rule: the right number, written any way a model
writes it, grades correct; the same number with its last digit changed grades wrong."""

from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lema.grading.answers import answers_equal, extract_answer, format_number, is_correct

BIG = 10**12


def with_commas(canonical: str) -> str:
    sign, body = ("-", canonical[1:]) if canonical.startswith("-") else ("", canonical)
    whole, _, frac = body.partition(".")
    return sign + f"{int(whole):,}" + (f".{frac}" if frac else "")


STYLES = {
    "plain": lambda s: f"So the total is {s}.",
    "commas": lambda s: f"So the total is {with_commas(s)}.",
    "dollars": lambda s: f"She pays {'-' if s.startswith('-') else ''}${with_commas(s.lstrip('-'))} in all.",
    "trailing_zeros": lambda s: f"The result is {s}.00." if "." not in s else f"The result is {s}00.",
    "units": lambda s: f"In total there are {with_commas(s)} apples left over.",
    "boxed": lambda s: f"Adding 3 and 4 gives 7, then 7 * 2 = 14.\nSo the answer is $\\boxed{{{with_commas(s).replace(',', '{,}')}}}$.",
    "hashes": lambda s: f"48 / 2 = 24 and 24 + 48 = 72.\n#### {with_commas(s)}\nThat was 2 steps.",
    "answer_is": lambda s: f"Step 1: 12 * 3 = 36.\nStep 2: The answer is {s}. I checked it 3 times with 2 methods.",
    "final_answer": lambda s: f"**Final Answer:** {with_commas(s)} dollars\n\nNote: 5 of the 7 steps were easy.",
    "bold": lambda s: f"The farmer has **{with_commas(s)}** eggs.",
}


def last_digit_changed(canonical: str) -> str:
    d = int(canonical[-1])
    return canonical[:-1] + str((d + 1) % 10)


integers = st.integers(min_value=-BIG, max_value=BIG)
decimals = st.builds(lambda m, k: Fraction(m, 10**k), st.integers(-BIG, BIG), st.integers(1, 4)).filter(
    lambda f: f.denominator != 1)


def golds(value: Fraction) -> list[str]:
    """The gold as datasets write it: "72", "72.0" (SVAMP floats), "-3.5"."""
    c = format_number(value)
    return [c, c + ".0"] if value.denominator == 1 else [c, c + "0"]


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(integers, decimals), style=st.sampled_from(sorted(STYLES)))
@example(value=Fraction(1379134), style="commas")          # the cases: off by one in the last digit
@example(value=Fraction(3731353), style="dollars")
@example(value=Fraction(10**12), style="hashes")
@example(value=Fraction(-7, 100), style="plain")
def test_right_number_correct_last_digit_changed_wrong(value, style):
    canonical = format_number(value)
    text = STYLES[style](canonical)
    assert Fraction(extract_answer(text, "gsm8k")) == value, text  # printed decimals kept: "72.00"
    for gold in golds(value):
        assert is_correct(text, gold, "gsm8k"), (text, gold)
    wrong = STYLES[style](last_digit_changed(canonical))
    for gold in golds(value):
        assert not is_correct(wrong, gold, "gsm8k"), (wrong, gold)


@settings(max_examples=100, deadline=None)
@given(num=st.integers(-10**6, 10**6).filter(lambda n: n != 0), den=st.integers(2, 10**4))
def test_fractions_are_exact(num, den):
    value = Fraction(num, den)
    text = f"Each share is {value.numerator}/{value.denominator}."
    canonical = format_number(value)
    assert is_correct(text, canonical, "gsm8k")
    if value.denominator != 1:
        wrong_num = last_digit_changed(str(value.numerator))
        if Fraction(int(wrong_num), value.denominator) != value:
            assert not is_correct(f"Each share is {wrong_num}/{value.denominator}.", canonical, "gsm8k")


@pytest.mark.parametrize("pred,gold,ok", [
    ("1,379,134", "1379135", False),       # exact: no relative tolerance on large numbers
    ("$3,731,353", "3731352", False),
    ("1000000000001", "1000000000000", False),
    ("145", "145.0", True),                # SVAMP golds are floats
    ("3.50", "3.5", True),
    ("0.30000000000000004", "0.3", False),
    ("1/3", "0.33", True),                 # gold is the rounded value of a non-terminating answer
    ("1/3", "0.333", True),
    ("1/3", "0.34", False),
    ("2/3", "0.67", True),                 # rounded half up, not truncated
    ("2/3", "0.66", False),
    ("-1/3", "-0.33", True),
    ("0.333", "0.33", False),              # a decimal prediction is never rounded to fit
    ("0.33", "1/3", True),                 # the decimal rule: a non-terminating gold rounded to 2 printed decimals
    ("0.3", "1/3", False),                 # ... never to fewer than 2
    ("1/3", "1/3", True),
    ("25%", "25", True),
    ("1/2", "0.5", True),
])
def test_numeric_rule(pred, gold, ok):
    assert answers_equal(pred, gold, "gsm8k") is ok
