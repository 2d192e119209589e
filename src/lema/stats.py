"""Statistics for comparing models on the same questions, for the pipeline (one run: questions are the unit;
exact McNemar test, paired bootstrap, Wilson intervals) and the lab (seeds are the unit).

Questions answered by one trained model are not independent replications of the training run, so the lab does
not pool seeds x questions into one McNemar test: each seed gives one paired difference, the interval is a
t-interval over seeds, checked by a hierarchical bootstrap (seeds, then questions).  scipy and numpy do the
arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# ---- one run: questions as the unit (promotion, reports) -------------------------------------------------


def wilson(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (well-behaved at 0% and 100%)."""
    if n == 0:
        return 0.0, 0.0
    ci = stats.binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from discordant counts b (A right, B wrong) and c: the binomial test of
    b successes in b + c trials at p = 1/2."""
    if b + c == 0:
        return 1.0
    return float(min(1.0, stats.binomtest(b, b + c, 0.5).pvalue))


def paired_bootstrap(a: list[bool], b: list[bool], iters: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(b) - accuracy(a) over paired questions."""
    if len(a) != len(b):
        raise ValueError("paired outcomes must have the same length")
    n = len(a)
    if n == 0:
        return 0.0, 0.0
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    idx = np.random.default_rng(seed).integers(0, n, size=(iters, n))
    lo, hi = np.percentile(diff[idx].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def min_detectable_difference(n: int, discordant: int, alpha: float = 0.05) -> float | None:
    """Smallest accuracy difference k/n the exact McNemar test could call significant at `alpha`
    on n paired questions with (at least) this many discordant pairs; None when no k <= n can.

    With few discordant pairs every one of the k must go the same way (k >= 6 at alpha=0.05),
    so a small n cannot detect small differences, whatever the data.
    """
    for k in range(1, n + 1):
        total = max(discordant, k)
        if (total - k) % 2:
            total += 1
        if total > n:
            continue
        wins = (total + k) // 2
        if mcnemar_exact(wins, total - wins) < alpha:
            return k / n
    return None


def compare_paired(a: list[bool], b: list[bool], seed: int = 0, alpha: float = 0.05) -> dict:
    """B vs A on the same questions: accuracy difference, discordant counts, McNemar p, bootstrap CI,
    minimum detectable difference."""
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    lo, hi = paired_bootstrap(a, b, seed=seed)
    n = len(a)
    return {"n": n, "diff": (sum(b) - sum(a)) / n if n else 0.0, "wins": b_only, "losses": a_only,
            "p_mcnemar": mcnemar_exact(b_only, a_only), "ci95": [lo, hi],
            "mdd": min_detectable_difference(n, b_only + a_only, alpha)}


# ---- the lab: seeds as the unit --------------------------------------------------------------------------


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and two-sided t-interval over seeds (NaN bounds with fewer than two seeds)."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, (mean - half, mean + half)


def paired_seeds(a: list[float], b: list[float]) -> dict:
    """b - a per seed: mean difference, its 95% t-interval over seeds and the paired t-test p-value."""
    if len(a) != len(b):
        raise ValueError(f"paired seeds need equal lengths, got {len(a)} and {len(b)}")
    d = [y - x for x, y in zip(a, b)]
    mean, ci = t_interval(d)
    p = float(stats.ttest_rel(b, a).pvalue) if len(d) > 1 and np.std(d) > 0 else float("nan")
    return {"per_seed": d, "mean": mean, "ci95": list(ci), "p": p, "seeds": len(d)}


def hierarchical_bootstrap(a: np.ndarray, b: np.ndarray, iters: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of mean(b - a) resampling seeds, then questions within each seed (paired).
    `a`, `b`: outcome matrices, shape (seeds, questions)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"outcome matrices must have the same 2-d shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    s, q = a.shape
    diff = b - a
    seeds = rng.integers(0, s, size=(iters, s))
    qs = rng.integers(0, q, size=(iters, s, q))
    est = diff[seeds[:, :, None], qs].mean(axis=(1, 2))
    lo, hi = np.percentile(est, [2.5, 97.5])
    return [float(lo), float(hi)]


def mde(sd_diff: float, seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a paired t-test over `seeds` detects with `power` at `alpha`."""
    if seeds < 2 or not math.isfinite(sd_diff):
        return float("nan")
    df = seeds - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd_diff / math.sqrt(seeds))


def seeds_for_mde(sd_diff: float, target: float, max_seeds: int = 200) -> int | None:
    """Fewest seeds whose MDE is at most `target` given a seed-to-seed SD of the difference (planning)."""
    if not math.isfinite(sd_diff):
        return None
    for n in range(2, max_seeds + 1):
        if mde(sd_diff, n) <= target:
            return n
    return None


def question_noise_sd(a: np.ndarray, b: np.ndarray) -> float:
    """SD of one seed's accuracy difference from test-question sampling alone (discordance / n)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    disc = float(np.mean(a != b))
    return math.sqrt(disc / a.shape[-1]) if a.shape[-1] else float("nan")


def compare(acc_a: list[float], acc_b: list[float], out_a: np.ndarray, out_b: np.ndarray, iters: int = 2000,
            seed: int = 0) -> dict:
    """Everything the report says about b vs a."""
    r = paired_seeds(acc_a, acc_b)
    r["bootstrap_ci95"] = hierarchical_bootstrap(out_a, out_b, iters, seed)
    sd = float(np.std(r["per_seed"], ddof=1)) if len(r["per_seed"]) > 1 else float("nan")
    r["sd_seeds"] = sd
    r["mde"] = mde(sd, len(acc_a))
    r["mde_question_noise_only"] = mde(question_noise_sd(out_a, out_b), len(acc_a))
    r["seeds_for_mde_2pt"] = seeds_for_mde(sd, 0.02)
    return r
