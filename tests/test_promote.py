"""Promotion statistics on constructed paired outcomes with known answers."""

import pytest
from scipy.stats import binomtest

from lema.registry.promote import decide, format_decision
from lema.stats import compare_paired, mcnemar_exact, min_detectable_difference, paired_bootstrap, wilson


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


def test_first_model_becomes_champion_with_no_statistics():
    d = decide(None, {"a": True, "b": False})
    assert d.promote and d.reason == "no current champion" and not d.compared
    assert (d.n, d.diff, d.p_value, d.ci95, d.wins, d.losses, d.mdd) == (None,) * 7
    text = format_decision(d)
    assert "first version" in text and "no statistics" in text and "McNemar" not in text


def test_a_champion_without_rows_is_not_compared():
    d = decide({}, {"a": True}, against="v3")
    assert not d.promote and not d.compared and "v3 has no evaluation rows" in d.reason
    assert "first version" not in format_decision(d)


def test_significant_p_but_interval_touching_zero_is_not_promoted(monkeypatch):
    import lema.registry.promote as promote

    champ, chall = outcomes([(False, True)] * 12 + [(True, True)] * 30 + [(True, False)])
    monkeypatch.setattr(promote, "compare_paired", lambda a, b, seed, alpha: {
        "n": 43, "diff": 11 / 43, "wins": 12, "losses": 1, "p_mcnemar": 0.003, "ci95": [0.0, 0.4], "mdd": 0.14})
    d = promote.decide(champ, chall)
    assert not d.promote and "interval includes 0" in d.reason


def test_minimum_detectable_difference():
    # 6 one-sided discordant pairs are the fewest exact McNemar calls significant at 0.05 (p=2/64)
    assert mcnemar_exact(6, 0) < 0.05 <= mcnemar_exact(5, 0)
    assert min_detectable_difference(100, 0) == pytest.approx(0.06)
    assert min_detectable_difference(5, 0) is None            # too few questions for any difference
    # more discordant pairs need a bigger net difference: 20 discordant -> 15 vs 5 (p=0.041), 14 vs 6 is not
    assert mcnemar_exact(15, 5) < 0.05 <= mcnemar_exact(14, 6)
    assert min_detectable_difference(100, 20) == pytest.approx(0.10)
    d = decide(*outcomes([(False, True)] * 12 + [(True, True)] * 30 + [(False, False)] * 20 + [(True, False)]))
    assert d.mdd == pytest.approx(min_detectable_difference(63, 13)) and f"{100 * d.mdd:.1f} pts" in format_decision(d)


def test_bootstrap_interval_and_wilson():
    a = [False] * 50 + [True] * 50
    b = [True] * 100
    lo, hi = paired_bootstrap(a, b, iters=1000, seed=1)
    assert 0.35 < lo < 0.5 < hi < 0.65
    assert compare_paired(a, b)["diff"] == 0.5
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2


def test_eval_summary_counts_no_answer_apart_and_breaks_math_down():
    from lema.records import EvalRow
    from lema.stages.evaluate.evaluate import summarize

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
