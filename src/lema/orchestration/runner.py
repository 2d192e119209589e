"""``lema run``: every stage in order (DVC decides what is stale) with a live display, then the summary."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lema.config import Config
from lema.orchestration.local import keyed_run_dir, run_all
from lema.registry.promote import format_decision
from lema.stages.layout import paths
from lema.stages.report.report import redact_uri


def summary_table(summary: dict, reports: list[tuple[str, object, bool]]) -> list[Table]:
    stages = Table(title="Stages", show_lines=False)
    for col in ("stage", "in", "out", "quarantined", "time", "status"):
        stages.add_column(col, justify="right" if col in ("in", "out", "quarantined", "time") else "left")
    for name, rep, skipped in reports:
        if skipped or rep is None:
            stages.add_row(name, "", "", "", "", "[dim]skipped (unchanged)[/]")
        else:
            stages.add_row(name, str(rep.n_in), str(rep.n_out), str(rep.n_quarantined), f"{rep.seconds:.0f}s",
                           "[green]done[/]")
    acc = Table(title="CoT-only vs LeMa (greedy pass@1)")
    for col in ("eval set", "n", "CoT-only", "LeMa", "diff", "95% CI", "McNemar p"):
        acc.add_column(col)
    for s, cmp in summary["comparison"].items():
        m = summary["metrics"]
        acc.add_row(s, str(cmp["n"]), f"{100 * m['cot'][s]['accuracy']:.1f}%", f"{100 * m['lema'][s]['accuracy']:.1f}%",
                    f"{100 * cmp['diff']:+.1f}", f"[{100 * cmp['ci95'][0]:+.1f}, {100 * cmp['ci95'][1]:+.1f}]",
                    f"{cmp['p_mcnemar']:.3f}")
    return [stages, acc]


def run_with_display(cfg: Config, force: bool = False, config_path=None, overrides: dict | None = None) -> int:
    console = Console()
    t0 = time.time()

    def on_stage(name, report, skipped):
        if skipped:
            console.print(f"[dim]- {name}: unchanged, skipped[/]")
        elif report is None:
            console.rule(f"[bold cyan]{name}")
        else:
            console.print(f"[green]OK[/] {name}: in {report.n_in} -> out {report.n_out}"
                          + (f", quarantined {report.n_quarantined}" if report.n_quarantined else "")
                          + f" ({report.seconds:.0f}s)")

    keyed = keyed_run_dir(cfg, config_path, overrides)
    if keyed.run_dir != cfg.run_dir:
        console.print(f"[yellow]run_dir {cfg.run_dir} holds the runs of ./params.yaml (dvc repro); this config "
                      f"differs, so its artifacts go to {keyed.run_dir}[/]")
        cfg = keyed
    results = run_all(cfg, on_stage, force=force, config_path=config_path, overrides=overrides)
    p = paths(cfg, cfg.rounds)  # the last round's summary (round 1's with the default rounds: 1)
    summary = json.loads((p.dir / "summary.json").read_text())
    console.rule("[bold]lema run summary" + (f" (round {cfg.rounds} of {cfg.rounds})" if cfg.rounds > 1 else ""))
    for table in summary_table(summary, results):
        console.print(table)
    f = summary["funnel"]
    split = {k[len("step "):]: v for k, v in f.items() if k.startswith("step ")}  # the validated rows, by step check
    console.print("Funnel: " + " -> ".join(f"{k} {v}" for k, v in f.items() if not k.startswith("step "))
                  + (" (step check: " + ", ".join(f"{k} {v}" for k, v in split.items()) + ")" if split else ""))
    reg = summary.get("registry") or {}
    if reg and "decision" in reg:
        d = reg["decision"]
        console.print(f"Registry: model [bold]{reg['model_name']}[/] versions {reg['versions']} at "
                      f"{redact_uri(reg['tracking_uri'])}")
        colour = "bold green" if d["promote"] else "bold yellow"
        console.print(f"Promotion: {reg['candidate']} (v{reg['versions'][reg['candidate']]}) -> "
                      f"[{colour}]{escape(format_decision(d))}[/]")
    console.print(f"Artifacts: {p.root}/  Report: {summary['report']}  ({time.time() - t0:.0f}s)")
    return 0
