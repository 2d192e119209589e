"""Small statistics for comparing models on the same questions."""

from __future__ import annotations

import math
import random


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (well-behaved at 0% and 100%)."""
    if n == 0:
        return 0.0, 0.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from discordant counts b (A right, B wrong) and c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: list[bool], b: list[bool], iters: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(b) - accuracy(a) over paired questions."""
    if len(a) != len(b):
        raise ValueError("paired outcomes must have the same length")
    n = len(a)
    if n == 0:
        return 0.0, 0.0
    rng = random.Random(seed)
    diffs = []
    for _ in range(iters):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(b[i] - a[i] for i in idx) / n)
    diffs.sort()
    return diffs[int(0.025 * iters)], diffs[int(0.975 * iters) - 1]


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
