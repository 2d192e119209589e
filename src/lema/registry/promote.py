"""Promotion: does a challenger replace the current champion?

Decided on the same questions with a paired test, never on "the bigger number":
exact McNemar on the discordant pairs and a bootstrap 95% interval for the
accuracy difference.  ``decide`` is the one decision rule (the CLI, DVC and
Kubeflow register paths all reach it through ``register_models``), and
``format_decision`` the one way it is printed (model card, report, run summary).
A first version has nothing to be compared with: its statistics are ``None``
and it is said so, rather than made up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from lema.stats import compare_paired


@dataclass
class Decision:
    promote: bool
    reason: str
    compared: bool = False          # False: no paired comparison was made, every statistic below is None
    n: int | None = None            # paired questions
    diff: float | None = None       # accuracy(challenger) - accuracy(champion)
    p_value: float | None = None    # exact two-sided McNemar
    ci95: tuple[float, float] | None = None  # paired bootstrap
    wins: int | None = None
    losses: int | None = None
    mdd: float | None = None        # minimum detectable difference for this n (None: n too small for any)
    alpha: float = 0.05
    against: str | None = None      # champion version compared with

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def paired_outcomes(champion: dict[str, bool], challenger: dict[str, bool]) -> tuple[list[bool], list[bool]]:
    """Outcomes on the questions both were evaluated on, in a fixed order."""
    ids = sorted(champion.keys() & challenger.keys())
    return [champion[i] for i in ids], [challenger[i] for i in ids]


def decide(champion: dict[str, bool] | None, challenger: dict[str, bool], alpha: float = 0.05,
           min_questions: int = 1, seed: int = 0, against: str | None = None) -> Decision:
    """champion/challenger: {question id: correct}; champion None = there is none yet (first version).

    Promote only when the challenger is better, McNemar p < alpha AND the bootstrap interval
    excludes zero: both tests must agree before `champion` moves.
    """
    if champion is None:
        return Decision(True, "no current champion", alpha=alpha)
    if not champion:
        who = f"champion {against}" if against else "the champion"
        return Decision(False, f"{who} has no evaluation rows to compare with", alpha=alpha, against=against)
    a, b = paired_outcomes(champion, challenger)
    if len(a) < min_questions:
        return Decision(False, f"only {len(a)} shared questions (need {min_questions})", alpha=alpha, against=against)
    s = compare_paired(a, b, seed=seed, alpha=alpha)
    common = dict(compared=True, n=s["n"], diff=s["diff"], p_value=s["p_mcnemar"], ci95=(s["ci95"][0], s["ci95"][1]),
                  wins=s["wins"], losses=s["losses"], mdd=s["mdd"], alpha=alpha, against=against)
    pts = f"{100 * s['diff']:+.1f} pts"
    if s["diff"] <= 0:
        return Decision(False, f"not better than the champion ({pts})", **common)
    if s["p_mcnemar"] >= alpha:
        return Decision(False, f"{pts} is not significant (McNemar p={s['p_mcnemar']:.3g} >= {alpha})", **common)
    if s["ci95"][0] <= 0:
        return Decision(False, f"{pts}: McNemar p={s['p_mcnemar']:.3g} < {alpha} but the 95% interval "
                               f"includes 0", **common)
    return Decision(True, f"{pts}, McNemar p={s['p_mcnemar']:.3g} < {alpha}, 95% interval above 0", **common)


def format_stats(s: dict[str, Any]) -> str:
    """Paired statistics in one line (a Decision's dict or a compare_paired result)."""
    p = s.get("p_value", s.get("p_mcnemar"))
    mdd = s.get("mdd")
    mdd_text = f"{100 * mdd:.1f} pts" if mdd is not None else f"none reachable with n={s['n']}"
    return (f"paired n={s['n']}: {s['wins']} wins, {s['losses']} losses, difference {100 * s['diff']:+.1f} pts, "
            f"95% bootstrap CI [{100 * s['ci95'][0]:+.1f}, {100 * s['ci95'][1]:+.1f}], exact McNemar p={p:.4g}, "
            f"minimum detectable difference {mdd_text}")


def format_decision(d: Decision | dict[str, Any]) -> str:
    """The one human-readable rendering of a promotion decision."""
    d = d if isinstance(d, Decision) else Decision.from_dict(d)
    verdict = "champion" if d.promote else "challenger"
    if not d.compared:
        first = "first version, " if d.promote and d.against is None else ""
        return f"{verdict} - {d.reason}; {first}no comparison made, no statistics"
    return f"{verdict} - {d.reason}; against {d.against or 'the champion'}, {format_stats(d.as_dict())}"


def promotion_tags(decision: Decision, metric: str) -> dict[str, str]:
    """Version tags for a decision; a first version gets no statistic tags at all, only that none were made."""
    tags = {"promotion.decision": "champion" if decision.promote else "challenger",
            "promotion.reason": decision.reason, "promotion.metric": metric,
            "promotion.against": decision.against or "none",
            "promotion.compared": "true" if decision.compared else "false (first version)" if decision.promote
            else "false",
            "promotion.summary": format_decision(decision)[:5000]}
    if decision.compared:
        tags |= {"promotion.p_value": f"{decision.p_value:.6g}", "promotion.diff": f"{decision.diff:.4f}",
                 "promotion.ci95": f"[{decision.ci95[0]:.4f}, {decision.ci95[1]:.4f}]",
                 "promotion.n": str(decision.n), "promotion.wins": str(decision.wins),
                 "promotion.losses": str(decision.losses),
                 "promotion.mdd": "none" if decision.mdd is None else f"{decision.mdd:.4f}"}
    return tags
