"""Statistics with seeds as the unit.

Questions answered by one trained model are not independent replications of the
training run, so pooling seeds x questions into one McNemar test overstates
significance.  Here each seed gives one paired difference; the interval is a
t-interval over seeds, checked by a hierarchical bootstrap (seeds, then questions).
"""

from __future__ import annotations

import math

import numpy as np


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and two-sided t-interval over seeds (NaN bounds with fewer than two seeds)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, (mean - half, mean + half)


def paired_seeds(a: list[float], b: list[float]) -> dict:
    """b - a per seed: mean difference, its 95% t-interval over seeds and the paired t-test p-value."""
    from scipy import stats

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
    from scipy import stats

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
