"""Lab runs side by side: each arm's seed-to-seed range and how much of a comparison's spread is the test
questions' and how much the seed's own.  docs/lab/README.md's spread tables are printed by it:

    python -m lema.lab.spread docs/lab/probe-ep14 docs/lab/probe-train2000 ...
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from lema.stats import mde


def spread_parts(comparison: dict) -> tuple[float, float, float]:
    """(SD of the per-seed differences, its test-question part, the seed's own part), in points.  The question
    part is the SD behind `mde_question_noise_only` (`lema.stats.mde` is linear in the SD); the seed's part is
    what is left: sqrt(sd^2 - question^2)."""
    sd = comparison["sd_seeds"]
    question = comparison["mde_question_noise_only"] / mde(1.0, comparison["seeds"])
    return 100 * sd, 100 * question, 100 * math.sqrt(max(sd * sd - question * question, 0.0))


def _arm(results: dict, arm: str) -> str:
    if arm not in results["arms"]:
        return "-"
    per_seed, mean = results["arms"][arm]["per_seed"], results["arms"][arm]["mean"]
    return f"{100 * mean:.1f} ({100 * min(per_seed):.1f}-{100 * max(per_seed):.1f})"


def row(name: str, results: dict) -> str:
    """One markdown row: base, CoT and LeMa (mean and per-seed range), LeMa - CoT with its spread split, and the
    largest MDE over the run's comparisons."""
    c = results["comparisons"]["lema - cot"]
    sd, question, seed = spread_parts(c)
    worst = max(x["mde"] for x in results["comparisons"].values())
    base = 100 * sum(results["base_accuracy"]) / len(results["base_accuracy"])
    need = c["seeds_for_mde_2pt"] or "over 200"
    return (f"| {name} | {c['seeds']} | {base:.1f} | {_arm(results, 'cot')} | {_arm(results, 'lema')} | "
            f"{100 * c['mean']:+.1f} [{100 * c['ci95'][0]:.1f}, {100 * c['ci95'][1]:.1f}] | "
            f"{sd:.2f} ({question:.2f} / {seed:.2f}) | {100 * c['mde']:.1f} | {need} | {100 * worst:.1f} |")


HEADER = ("| run | seeds | base % | CoT % (seed range) | LeMa % (seed range) | LeMa - CoT [95%] | "
          "SD per seed (test questions / seed) | MDE | seeds for MDE 2 | largest MDE |\n"
          "|---|---:|---:|---|---|---|---|---:|---:|---:|")


def main(argv: list[str] | None = None) -> int:
    dirs = [Path(d) for d in (sys.argv[1:] if argv is None else argv)]
    if not dirs:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    lines = [HEADER]
    for d in dirs:
        path = d / "results.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no results.json (a lab report's --out folder holds one)")
        try:
            lines.append(row(f"`{d.name}/`", json.loads(path.read_text())))
        except KeyError as e:
            raise SystemExit(f"{path}: no field {e} (written by an older lab, or not a lab report)") from None
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
