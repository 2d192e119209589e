"""Promotion statistics on constructed paired outcomes with known answers."""

import pytest
from scipy.stats import binomtest

from lema.promote import decide
from lema.stats import compare_paired, mcnemar_exact, paired_bootstrap, wilson


def outcomes(pairs):
    """pairs: list of (champion_correct, challenger_correct) -> two {id: bool} dicts."""
    a = {f"q{i}": x for i, (x, _) in enumerate(pairs)}
    b = {f"q{i}": y for i, (_, y) in enumerate(pairs)}
    return a, b


@pytest.mark.parametrize("b,c", [(10, 0), (6, 1), (3, 3), (0, 0), (12, 5), (40, 22)])
def test_mcnemar_exact_matches_the_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_known_p_values():
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 2**10)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)


def test_significant_improvement_is_promoted():
    champ, chall = outcomes([(False, True)] * 12 + [(True, True)] * 30 + [(False, False)] * 20 + [(True, False)])
    d = decide(champ, chall, alpha=0.05)
    assert d.promote and (d.wins, d.losses, d.n) == (12, 1, 63)
    assert d.p_value == pytest.approx(binomtest(1, 13, 0.5).pvalue)
    assert d.ci95[0] > 0 and d.diff == pytest.approx(11 / 63)


def test_small_improvement_is_not_significant():
    champ, chall = outcomes([(False, True)] * 3 + [(True, False)] * 1 + [(True, True)] * 50)
    d = decide(champ, chall, alpha=0.05)
    assert not d.promote and "not significant" in d.reason and d.p_value == pytest.approx(0.625)


def test_worse_is_never_promoted_and_only_shared_questions_count():
    champ, chall = outcomes([(True, False)] * 10 + [(True, True)] * 5)
    chall["extra"] = True  # evaluated only on the challenger side: ignored
    d = decide(champ, chall)
    assert not d.promote and "not better" in d.reason and d.n == 15


def test_first_model_becomes_champion():
    d = decide(None, {"a": True, "b": False})
    assert d.promote and d.reason == "no current champion"


def test_bootstrap_interval_and_wilson():
    a = [False] * 50 + [True] * 50
    b = [True] * 100
    lo, hi = paired_bootstrap(a, b, iters=1000, seed=1)
    assert 0.35 < lo < 0.5 < hi < 0.65
    assert compare_paired(a, b)["diff"] == 0.5
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2


def test_eval_summary_counts_no_answer_apart_and_breaks_math_down():
    from lema.evaluate import summarize
    from lema.records import EvalRow

    def row(i, correct, extracted, level, maj, passk):
        r = EvalRow(id=str(i), task="math", eval_set="math500/test", model="m", question="q", gold_answer="1",
                    prediction="p", pred_answer="1" if extracted else None, extracted=extracted, correct=correct,
                    level=level, subject="Algebra")
        r.sample_answers, r.maj_correct, r.pass_k = ["1", "2"], maj, passk
        return r

    rows = [row(0, True, True, "Level 1", True, True), row(1, False, False, "Level 1", False, True),
            row(2, False, True, "Level 5", False, False), row(3, True, True, "Level 5", True, True)]
    m = summarize(rows)["math500/test"]
    assert (m["n"], m["correct"], m["no_answer"], m["wrong_answer"]) == (4, 2, 1, 1)
    assert m["maj@2"] == 0.5 and m["pass@2"] == 0.75
    assert m["by_level"] == {"Level 1": {"n": 2, "correct": 1, "accuracy": 0.5},
                             "Level 5": {"n": 2, "correct": 1, "accuracy": 0.5}}
    assert m["by_subject"]["Algebra"]["n"] == 4
