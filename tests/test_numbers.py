"""Property tests of the one number reader (lema.grading.numbers): every form a gold or a prediction may take
reads as the exact value, the same text with its last digit changed never matches, float-noise golds read as
the decimal they stand for, and the decimal rule rounds the gold to the prediction's printed decimals only."""

import json
import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lema.grading.answers import answers_equal, extract_answer, is_correct
from lema.grading.numbers import NotANumber, format_number, numbers_equal, read_gold

SEPARATORS = [" ", "\u2009", "\u202f"]
ints = st.integers(min_value=-10**12, max_value=10**12)


def grouped(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def bump_last(text: str) -> str:
    """The same text with its last digit changed."""
    i = max(i for i, c in enumerate(text) if c.isdigit())
    return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]


@settings(max_examples=60, deadline=None)
@given(n=ints, sep=st.sampled_from(SEPARATORS))
@example(n=9867630, sep=" ")
def test_thousands_separators(n, sep):
    text = grouped(n, sep)
    assert read_gold(text) == n
    assert is_correct(f"So the answer is {text}.", str(n), "gsm8k")
    assert not is_correct(f"So the answer is {bump_last(text)}.", str(n), "gsm8k")


@settings(max_examples=60, deadline=None)
@given(mantissa=st.integers(-10**7, 10**7).filter(lambda m: m % 10), exp=st.integers(-12, 12),
       form=st.sampled_from(["{m}e{e}", "{m}E{e:+d}", "{m} x 10^{e}", "{m} \\times 10^{{{e}}}"]))
@example(mantissa=20107, exp=-10, form="{m}e{e}")     # 2.0107e-06
@example(mantissa=6277334, exp=3, form="{m}e{e}")     # 6.277334e9
def test_scientific_notation(mantissa, exp, form):
    digits = str(abs(mantissa))
    m = ("-" if mantissa < 0 else "") + (digits[0] + "." + digits[1:] if len(digits) > 1 else digits)
    e = exp + len(digits) - 1
    value = Fraction(mantissa) * Fraction(10) ** exp
    text = form.format(m=m, e=e)
    assert read_gold(text) == value
    gold = format_number(value)
    assert is_correct(f"The answer is {text}.", gold, "gsm8k"), text
    assert is_correct(f"The answer is {gold}.", text, "gsm8k")
    assert not is_correct(f"The answer is {m}.", text, "gsm8k") or Fraction(m) == value  # never the mantissa
    wrong = form.format(m=bump_last(m), e=e)
    assert not is_correct(f"The answer is {wrong}.", gold, "gsm8k"), wrong


@settings(max_examples=60, deadline=None)
@given(whole=st.integers(1, 10**8), num=st.integers(1, 50), den=st.integers(2, 51), neg=st.booleans())
@example(whole=14053029, num=2, den=3, neg=False)
def test_mixed_numbers_and_negative_fractions(whole, num, den, neg):
    num = num % den or 1
    value = (-1 if neg else 1) * (whole + Fraction(num, den))
    text = f"{'-' if neg else ''}{whole} {num}/{den}"
    assert read_gold(text) == value
    assert is_correct(f"Each gets {text} pies.", format_number(value), "gsm8k")
    assert not is_correct(f"Each gets {'-' if neg else ''}{bump_last(str(whole))} {num}/{den} pies.",
                          format_number(value), "gsm8k")
    frac = Fraction(num, den)
    assert read_gold(f"-({frac.numerator}/{frac.denominator})") == -frac
    assert read_gold(f"-\\frac{{{frac.numerator}}}{{{frac.denominator}}}") == -frac
    assert read_gold(f"\\boxed{{{frac.numerator}/{frac.denominator}}}") == frac


@settings(max_examples=80, deadline=None)
@given(cents=st.integers(1, 10**11))
@example(cents=324404710)
def test_currency_and_float_noise_golds(cents):
    value = Fraction(cents, 100)
    text = f"${cents // 100:,}.{cents % 100:02d}"
    assert read_gold(text) == value
    noisy = math.nextafter(float(Decimal(cents) / 100), math.inf)  # what a Python-computed gold stores
    assert read_gold(noisy) == value and read_gold(repr(noisy)) == value
    assert is_correct(f"She pays {text}.", repr(noisy), "gsm8k")
    assert not is_correct(f"She pays {bump_last(text)}.", repr(noisy), "gsm8k")


def test_issue_examples():
    assert read_gold(3244047.0999999996) == Fraction("3244047.1")
    for pred in ("3244047.1", "$3,244,047.10", "\\boxed{3244047.1}", "The answer is 3,244,047.1 dollars."):
        assert is_correct(pred, "3244047.0999999996", "gsm8k"), pred
    assert not is_correct("The answer is 3244047.2.", "3244047.0999999996", "gsm8k")
    assert is_correct("The answer is 42159089/3.", "14053029.666666666", "gsm8k")
    assert is_correct("The answer is 14053029 2/3.", "14053029.666666666", "gsm8k")
    assert is_correct("The answer is 14053029.67.", "14053029.666666666", "gsm8k")
    assert not is_correct("The answer is 14053029.7.", "14053029.666666666", "gsm8k")   # 1 decimal
    assert not is_correct("The answer is 14053030.", "14053029.666666666", "gsm8k")     # never an integer
    assert not is_correct("The answer is 2.0107.", "2.0107e-06", "gsm8k")               # off by 10^6
    assert is_correct("The answer is 0.0000020107.", "2.0107e-06", "gsm8k")
    assert not is_correct("The answer is 0.00.", "2.0107e-06", "gsm8k")                 # 0 significant digits
    assert extract_answer("That is 6.277334e9 people.", "gsm8k") == "6277334000"
    assert extract_answer("There are 9 867 630 grains.", "gsm8k") == "9867630"
    assert extract_answer("He bought 3 100-page books.", "gsm8k") == "100"             # not 3100


@pytest.mark.parametrize("gold", ["5:45", "3:30 p.m.", "February 3rd", "3 p.m.", "5 apples", "1 2", "n/a", ""])
def test_a_gold_that_is_not_a_number_is_never_cut_to_its_first_number(gold):
    with pytest.raises(NotANumber):
        read_gold(gold)


@settings(max_examples=100, deadline=None)
@given(gold=st.builds(lambda m: Fraction(m, 10**6), st.integers(-10**12, 10**12)).filter(lambda g: g.denominator > 100),
       k=st.integers(2, 5))
def test_decimal_rule(gold, k):
    """The gold rounded half-up to the prediction's k >= 2 printed decimals matches; one unit off never does,
    nor fewer than 2 decimals, nor an integer; `min_places=None` is exact only."""
    scale = 10**k
    rounded = Fraction(int(abs(gold) * scale + Fraction(1, 2)), scale) * (1 if gold >= 0 else -1)
    printed = format_number(rounded, k)
    if rounded == 0 or len(printed.replace("-", "").replace(".", "").lstrip("0")) < 2:
        return  # under 2 significant digits: the rule does not apply
    gold_text = format_number(gold)
    assert answers_equal(printed, gold_text, "gsm8k") is (rounded.denominator != 1 or gold == rounded), (printed, gold)
    assert not answers_equal(format_number(rounded + Fraction(1, scale), k), gold_text, "gsm8k")
    assert not answers_equal(format_number(rounded, k), gold_text, "gsm8k", min_places=None) or gold == rounded
    one = Fraction(int(abs(gold) * 10 + Fraction(1, 2)), 10) * (1 if gold >= 0 else -1)
    assert not answers_equal(format_number(one, 1), gold_text, "gsm8k") or gold == one


def test_integers_stay_exact():
    assert not numbers_equal(Fraction(1234), Fraction(1233))
    assert not answers_equal("1234.00", "1233.996", "gsm8k")       # an integer-valued prediction: exact
    assert not answers_equal("1233.996", "1234", "gsm8k")          # an integer gold: exact


@pytest.mark.parametrize("pred,gold,task,ok", [
    ("The meeting starts at 3:30 p.m.", "3:30 p.m.", "time", True),
    ("It ends at 15:30.", "3:30 pm", "time", True),
    ("It ends at 3 p.m.", "3:30 p.m.", "time", False),
    ("So the answer is 5:45", "5:45", "time", True),
    ("The answer is February  3RD.", "February 3rd", "text", True),
    ("The answer is February 4th.", "February 3rd", "text", False),
    ("#### 1,200", "1200", "text", True),
])
def test_time_and_text_answers(pred, gold, task, ok):
    assert is_correct(pred, gold, task) is ok


def _grade(tmp_path, rows, task="gsm8k", raw=None):
    f = tmp_path / "preds.jsonl"
    f.write_text(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows))
    return f, subprocess.run([sys.executable, "-m", "lema.cli", "grade", "--task", task, str(f)],
                             capture_output=True, text=True)


@pytest.mark.parametrize("gold", ["5:45", "3:30 p.m.", "February 3rd", None, ""])
def test_lema_grade_rejects_unusable_golds(tmp_path, gold):
    f, res = _grade(tmp_path, [{"prediction": "The answer is 5.", "answer": "5"},
                               {"prediction": "The answer is 3.", "answer": gold}])
    assert res.returncode == 2, res.stdout
    assert f"{f}:2: field 'answer'" in res.stderr and "Traceback" not in res.stderr


def test_lema_grade_rejects_empty_input_and_grades_floats(tmp_path):
    f, res = _grade(tmp_path, [], raw="\n")
    assert res.returncode == 2 and f"{f}: no rows to grade" in res.stderr
    f, res = _grade(tmp_path, [{"prediction": "The answer is 3244047.1.", "answer": 3244047.0999999996},
                               {"prediction": "The answer is 2.0107.", "answer": "2.0107e-06"},
                               {"prediction": "at 3:30 pm", "answer": "3:30 p.m."}][:2])
    assert res.returncode == 0 and json.loads(res.stdout) == {"n": 2, "correct": 1, "accuracy": 0.5}
    f, res = _grade(tmp_path, [{"prediction": "We meet at 15:30.", "answer": "3:30 p.m."}], task="time")
    assert res.returncode == 0 and json.loads(res.stdout)["correct"] == 1
