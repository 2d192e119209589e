"""Run report: the collect-correct-validate funnel, accuracy per model, where
mistakes happen (incorrect-step positions), whether the step checker confirms them,
the error types, loss curves, as PNG + Markdown."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from lema.registry.promote import format_decision

FIGURES = "figures"  # the report's plots, inside report/ (declared as one directory output)


def redact_uri(uri: str) -> str:
    """Hide credentials in URIs like postgresql://user:pass@host/db before showing them."""
    return re.sub(r"//[^/@\s]+@", "//***@", uri)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write a figure as PNG and free it (matplotlib keeps figures alive otherwise)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_funnel(counts: dict[str, int], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names, values = list(counts), list(counts.values())
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860", "#da8bc3"]
    bars = ax.barh(names[::-1], values[::-1], color=palette[: len(values)])
    ax.bar_label(bars, padding=3)
    ax.set_xlabel("rows")
    ax.set_title("Collect -> correct -> validate funnel")
    ax.set_xlim(0, max(values + [1]) * 1.15)
    save(fig, path)
    return path


def plot_error_types(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """{generator: {error type: corrections}} as horizontal bars, one stacked segment per generator."""
    plt = _plt()
    types = sorted({t for c in counts.values() for t in c}, key=lambda t: -sum(c.get(t, 0) for c in counts.values()))
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(types) + 1.5))
    left = [0] * len(types)
    for gen, c in counts.items():
        widths = [c.get(t, 0) for t in types]
        bars = ax.barh(types[::-1], widths[::-1], left=left[::-1], label=gen)
        left = [a + b for a, b in zip(left, widths)]
    ax.bar_label(bars, labels=[str(v) for v in left[::-1]], padding=3)
    ax.set_xlabel("validated corrections")
    ax.set_title("Error types named by the corrector")
    ax.set_xlim(0, max(left + [1]) * 1.15)
    ax.legend(fontsize=8)
    save(fig, path)
    return path


def plot_accuracy(metrics: dict[str, dict[str, dict]], path: Path) -> Path:
    """metrics: {model: {eval_set: {accuracy, n, ...}}}, with Wilson 95% intervals."""
    plt = _plt()
    from lema.stats import wilson

    sets = sorted({s for m in metrics.values() for s in m})
    models = list(metrics)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(sets):
            m = metrics[model].get(s)
            if not m:
                continue
            a, b = wilson(m["correct"], m["n"])
            xs.append(j + i * width)
            ys.append(100 * m["accuracy"])
            lo.append(100 * (m["accuracy"] - a))
            hi.append(100 * (b - m["accuracy"]))
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=4, label=model)
        ax.bar_label(bars, fmt="%.1f", padding=2)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(sets))], sets)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Greedy pass@1 with 95% Wilson intervals")
    ax.legend()
    save(fig, path)
    return path


def plot_steps(histogram: dict[int, int], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    keys = sorted(int(k) for k in histogram)
    ax.bar(keys, [histogram.get(k, histogram.get(str(k), 0)) for k in keys], color="#c44e52")
    ax.set_xlabel("first incorrect step")
    ax.set_ylabel("corrections")
    ax.set_title("Where the mistakes happen")
    save(fig, path)
    return path


def plot_losses(histories: dict[str, list[dict]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    for name, hist in histories.items():
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("Fine-tuning loss")
    ax.legend()
    save(fig, path)
    return path


def plot_by_level(metrics: dict[str, dict[str, dict]], path: Path) -> Path | None:
    """Accuracy per MATH level for each model (only when some set has levels)."""
    series = {m: s["by_level"] for m, sets in metrics.items() for s in sets.values() if "by_level" in s}
    if not series:
        return None
    plt = _plt()
    levels = sorted({lv for v in series.values() for lv in v})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(series)
    for i, (model, by) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(levels))], [100 * by.get(lv, {}).get("accuracy", 0) for lv in levels],
               width, label=model)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(levels))], levels)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("MATH accuracy by level")
    ax.legend()
    save(fig, path)
    return path


def plot_paired(comparison: dict[str, dict], path: Path) -> Path:
    """Questions only LeMa got right vs only CoT-only got right, per evaluation set."""
    plt = _plt()
    sets = list(comparison)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(sets, [comparison[s]["wins"] for s in sets], color="#55a868", label="only LeMa right")
    ax.bar(sets, [-comparison[s]["losses"] for s in sets], color="#c44e52", label="only CoT-only right")
    for i, s in enumerate(sets):
        ax.text(i, 0, f"p={comparison[s]['p_mcnemar']:.2g}", ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("questions")
    ax.set_title("Paired wins and losses (McNemar)")
    ax.legend(fontsize=8)
    save(fig, path)
    return path


def write_report(out_dir: Path, *, funnel: dict[str, int], metrics: dict[str, dict[str, dict]],
                 step_histogram: dict, losses: dict[str, list[dict]], stages: list[dict[str, Any]],
                 registry: dict[str, Any] | None, comparison: dict[str, Any] | None,
                 step_check: dict[str, Any] | None = None,
                 error_types: dict[str, dict[str, int]] | None = None) -> Path:
    figs = out_dir / FIGURES  # one declared directory: which plots a run has depends on its data
    figs.mkdir(parents=True, exist_ok=True)
    pngs = [plot_funnel(funnel, figs / "funnel.png"), plot_accuracy(metrics, figs / "accuracy.png")]
    if step_histogram:
        pngs.append(plot_steps(step_histogram, figs / "incorrect_steps.png"))
    if error_types:
        pngs.append(plot_error_types(error_types, figs / "error_types.png"))
    if any(losses.values()):
        pngs.append(plot_losses(losses, figs / "loss.png"))
    if comparison:
        pngs.append(plot_paired(comparison, figs / "paired.png"))
    by_level = plot_by_level(metrics, figs / "math_by_level.png")
    if by_level:
        pngs.append(by_level)
    lines = ["# lema run report", "", "## Stages", "", "| stage | in | out | quarantined | seconds |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {s['stage']} | {s['n_in']} | {s['n_out']} | {s['n_quarantined']} | {s['seconds']:.1f} |"
              for s in stages]
    lines += ["", "## Funnel", "", "| step | rows |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in funnel.items()]
    if step_check:
        lines += step_check_lines(step_check)
    if error_types:
        lines += ["", "## Error types (validated corrections)", "", "| generator | error type | corrections |",
                  "|---|---|---:|"]
        lines += [f"| {g} | {t} | {n} |" for g, c in error_types.items() for t, n in c.items()]
    lines += ["", "## Accuracy (greedy pass@1)", "", "| model | set | n | correct | accuracy | no answer |",
              "|---|---|---:|---:|---:|---:|"]
    for model, sets in metrics.items():
        for s, m in sets.items():
            lines.append(f"| {model} | {s} | {m['n']} | {m['correct']} | {100 * m['accuracy']:.1f}% | {m['no_answer']} |")
    if comparison:
        lines += ["", "## LeMa vs CoT-only (paired, same questions)", "",
                  "| eval set | n | LeMa-only right | CoT-only right | difference | 95% bootstrap CI | exact McNemar p "
                  "| min. detectable difference |", "|---|---:|---:|---:|---:|---|---:|---:|"]
        lines += [f"| {k} | {v['n']} | {v['wins']} | {v['losses']} | {100 * v['diff']:+.1f} pts | "
                  f"[{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}] | {v['p_mcnemar']:.4g} | "
                  f"{_mdd_text(v.get('mdd'))} |"
                  for k, v in comparison.items()]
    if registry and "decision" in registry:
        d = registry["decision"]
        lines += ["", "## Registry and promotion", "", f"- tracking URI: `{redact_uri(registry['tracking_uri'])}`",
                  f"- model: `{registry['model_name']}`, versions {registry['versions']}",
                  f"- candidate: **{registry['candidate']}** -> {format_decision(d)}"]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({FIGURES}/{p.name})" for p in pngs]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def step_check_lines(sc: dict[str, Any]) -> list[str]:
    """The corrector's first wrong step against the step checker's, per generator and per corrector."""
    lines = ["", "## Step check (corrector vs checker, first wrong step)", "",
             f"Rows where both name a step agree on {_rate(sc.get('agreement_rate'))}; disagreeing rows are "
             f"{'quarantined' if sc.get('action') == 'quarantine' else 'kept and tagged'}, the stage fails below "
             f"{100 * sc.get('mostly', 0):.0f}%; undecidable rows (no numeric claim to check, e.g. MATH) are kept "
             f"and tagged.", "", "| by | name | agree | disagree | undecidable | agreement |",
             "|---|---|---:|---:|---:|---:|"]
    for group in ("generator", "corrector"):
        lines += [f"| {group} | {name} | {r['agree']} | {r['disagree']} | {r['undecidable']} | "
                  f"{_rate(r.get('agreement_rate'))} |" for name, r in (sc.get(f"by_{group}") or {}).items()]
    return lines


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def _mdd_text(mdd: float | None) -> str:
    return "none at this n" if mdd is None else f"{100 * mdd:.1f} pts"


def step_histogram(corrections) -> dict[int, int]:
    return dict(sorted(Counter(c.incorrect_step for c in corrections).items()))
