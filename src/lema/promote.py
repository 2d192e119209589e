"""Promotion: does a challenger replace the current champion?

Decided on the same questions with a paired test, never on "the bigger number":
exact McNemar on the discordant pairs and a bootstrap 95% interval for the
accuracy difference.  `champion` moves only when the difference is positive and
significant at the configured level; otherwise the version becomes
`challenger` and the reason is recorded on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .stats import compare_paired


@dataclass
class Decision:
    promote: bool
    reason: str
    n: int
    diff: float
    p_value: float
    ci95: tuple[float, float]
    wins: int
    losses: int

    def as_dict(self) -> dict:
        return asdict(self)


def paired_outcomes(champion: dict[str, bool], challenger: dict[str, bool]) -> tuple[list[bool], list[bool]]:
    """Outcomes on the questions both were evaluated on, in a fixed order."""
    ids = sorted(champion.keys() & challenger.keys())
    return [champion[i] for i in ids], [challenger[i] for i in ids]


def decide(champion: dict[str, bool] | None, challenger: dict[str, bool], alpha: float = 0.05,
           min_questions: int = 1, seed: int = 0) -> Decision:
    """champion/challenger: {question id: correct}. No champion yet -> promote."""
    if champion is None:
        n = len(challenger)
        acc = sum(challenger.values()) / n if n else 0.0
        return Decision(True, "no current champion", n, acc, 0.0, (acc, acc), sum(challenger.values()), 0)
    a, b = paired_outcomes(champion, challenger)
    if len(a) < min_questions:
        return Decision(False, f"only {len(a)} shared questions (need {min_questions})", len(a), 0.0, 1.0,
                        (0.0, 0.0), 0, 0)
    s = compare_paired(a, b, seed=seed)
    ci = (s["ci95"][0], s["ci95"][1])
    common = dict(n=s["n"], diff=s["diff"], p_value=s["p_mcnemar"], ci95=ci, wins=s["wins"], losses=s["losses"])
    if s["diff"] <= 0:
        return Decision(False, f"not better than the champion ({100 * s['diff']:+.1f} pts)", **common)
    if s["p_mcnemar"] >= alpha:
        return Decision(False, f"+{100 * s['diff']:.1f} pts is not significant (McNemar p={s['p_mcnemar']:.3g} "
                               f">= {alpha})", **common)
    return Decision(True, f"+{100 * s['diff']:.1f} pts, McNemar p={s['p_mcnemar']:.3g} < {alpha}", **common)
