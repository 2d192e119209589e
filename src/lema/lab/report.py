"""results.json, report.md and the plots, from the per-seed summaries; MLflow runs when MLflow is importable.

The claims are read from seed-level paired differences; the report states what the design could
detect (minimum detectable effect), so a "not shown" is read for what it is.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

from lema.lab.arms import title, wrong_step_arm
from lema.stats import compare, paired_seeds, t_interval

MDE_TARGET = 0.02     # the protocol: every claim's MDE at most 2 points
BASE_MAX = 0.30       # the base's task accuracy stays under this
COT_LIFT_MIN = 0.20   # CoT fine-tuning lifts the base by at least this

CLAIMS = [("cot", "lema", "(1) CoT + corrections beats CoT alone"),
          ("cot_extra_tokens", "lema", "(2) corrections beat the same number of extra CoT tokens"),
          ("cot_extra_examples", "lema", "(2') corrections beat the same number of extra CoT examples"),
          ("lema_no_expl", "lema", "(3) templated explanations beat no explanation"),
          ("lema_no_expl", "lema_informative", "(3) informative explanations beat no explanation"),
          ("lema", "lema_informative", "(3') informative beat templated explanations")]


def claims(cfg) -> list[tuple[str, str, str]]:
    """The paper's claims plus one per controlled corrector: corrections that name the right step beat
    corrections from a corrector that names a wrong step at that rate."""
    return CLAIMS + [(wrong_step_arm(r), "lema", f"(4) right-step corrections beat a corrector naming a wrong "
                      f"step in {round(100 * r)}%") for r in cfg.wrong_step_rates]


def arm_names(cfg) -> list[str]:
    return list(cfg.arms) + [wrong_step_arm(r) for r in cfg.wrong_step_rates]


def _ci(values: list[float]) -> tuple[float, list[float]]:
    m, ci = t_interval(values)
    return m, list(ci)


def aggregate(cfg, summaries: list[dict]) -> dict:
    seeds = [s["seed"] for s in summaries]
    arms = ["base"] + [a for a in arm_names(cfg) if all(a in s["arms"] for s in summaries)]

    def run_of(s, a):
        return s["base"] if a == "base" else s["arms"][a]

    out: dict = {"seeds": seeds, "n_test": cfg.n_test, "arms": {}, "comparisons": {}, "token_ratio": {}}
    out["base_accuracy"] = [s["base"]["accuracy"] for s in summaries]
    for a in arms:
        accs = [run_of(s, a)["accuracy"] for s in summaries]
        m, ci = _ci(accs)
        out["arms"][a] = {"per_seed": accs, "mean": m, "ci95": ci}
    out["lift_over_base"] = {}
    for a in arms[1:]:
        ratios = [s["sizes"][a]["token_ratio"] for s in summaries]
        out["token_ratio"][a] = {"per_seed": ratios, "mean": float(np.mean(ratios))}
        out["lift_over_base"][a] = paired_seeds(out["base_accuracy"], out["arms"][a]["per_seed"])
    for i, (ref, arm, claim) in enumerate(claims(cfg)):
        if ref in out["arms"] and arm in out["arms"]:
            oa = np.array([run_of(s, ref)["outcomes"] for s in summaries])
            ob = np.array([run_of(s, arm)["outcomes"] for s in summaries])
            c = compare(out["arms"][ref]["per_seed"], out["arms"][arm]["per_seed"], oa, ob,
                        iters=cfg.bootstrap_iters, seed=i)
            out["comparisons"][f"{arm} - {ref}"] = {"claim": claim, **c}
    rounds = []
    if all("rounds" in s for s in summaries):
        for chain in summaries[0]["rounds"]:
            for k, row in enumerate(summaries[0]["rounds"][chain]):
                accs = [s["rounds"][chain][k]["accuracy"] for s in summaries]
                m, ci = _ci(accs)
                rounds.append({"round": row["round"], "arm": chain, "mean": m, "ci95": ci, "per_seed": accs,
                               "token_ratio": [s["rounds"][chain][k].get("token_ratio", float("nan"))
                                               for s in summaries]})
    out["rounds"] = rounds
    out["funnel"] = [{"seed": s["seed"], **{k: v for k, v in s["funnel"].items()}} for s in summaries]
    out["step_checker"] = _step_checker(cfg, summaries)
    out["pretrain"] = {k: summaries[0]["base"]["train"].get(k)
                       for k in ("seconds", "cpu_seconds", "final_loss", "reused")}
    out["protocol"] = _protocol_checks(out)
    out["timings_s"] = {s["seed"]: {**s["timings"], "total": s["seconds"]} for s in summaries}
    out["cpu_seconds"] = {s["seed"]: {**s.get("cpu_seconds", {}),
                                      "total": round(sum(s.get("cpu_seconds", {}).values()), 1)} for s in summaries}
    return out


def _step_checker(cfg, summaries: list[dict]) -> dict:
    """The production step checker scored on every seed's generator paths (true first wrong step known)."""
    from lema.lab.run import build_pools
    from lema.lab.stepcheck import score_checker

    records = [r for s in summaries for r in s.get("generator_paths", [])]
    if not records:
        return {"available": False, "reason": "no generator paths recorded"}
    problems = {p.question: p for p in build_pools(cfg)["train"]}
    return score_checker(records, problems)


def _protocol_checks(agg: dict) -> dict[str, bool]:
    """The protocol's design conditions, each true or false as measured (the report prints them)."""
    base = float(np.mean(agg["base_accuracy"]))
    lifts = {a: r["mean"] for a, r in agg["lift_over_base"].items()}
    mdes = [c["mde"] for c in agg["comparisons"].values()]
    return {"base_under_30": base < BASE_MAX,
            "cot_lifts_20": lifts.get("cot", float("nan")) >= COT_LIFT_MIN,
            "every_arm_above_base": bool(lifts) and all(v > 0 for v in lifts.values()),
            "every_mde_at_most_2": bool(mdes) and all(math.isfinite(m) and m <= MDE_TARGET for m in mdes)}


def verdict(c: dict) -> str:
    """holds / contradicted / not shown, from the 95% t-interval over seeds."""
    lo, hi = c["ci95"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not testable with one seed"
    if lo > 0:
        return "holds"
    if hi < 0:
        return "contradicted"
    return "not shown"


def track(cfg, summaries: list[dict], agg: dict, log) -> None:
    """One MLflow run per seed and arm, when MLflow is installed (the GPU box may not have it)."""
    spec = importlib.util.find_spec("mlflow")
    # A folder named mlflow/ on the path (this repo has one) imports as a namespace package: not MLflow.
    if spec is None or spec.origin in (None, "namespace"):
        log("lab: mlflow not installed; tracking skipped (results.json has everything)")
        return
    import mlflow

    # restores the caller's URI and environment afterwards; a new experiment's artifacts beside a SQLite store
    from lema.registry.store import create_experiment_beside_store, using_tracking_uri

    uri = cfg.tracking_uri or f"sqlite:///{Path(cfg.run_dir).resolve() / 'mlflow.db'}"
    with using_tracking_uri(uri):
        create_experiment_beside_store(uri, cfg.experiment)
        mlflow.set_experiment(cfg.experiment)
        for s in summaries:
            for arm, r in [("base", s["base"])] + list(s["arms"].items()):
                with mlflow.start_run(run_name=f"{arm}-seed{s['seed']}"):
                    size = s["sizes"].get(arm, {})
                    mlflow.log_params({"arm": arm, "seed": s["seed"], "examples": size.get("examples", 0),
                                       "trained_tokens": size.get("trained_tokens", 0), "n_test": cfg.n_test})
                    mlflow.log_metrics({"accuracy": r["accuracy"], "train_loss": r["train"]["final_loss"]})
            for chain, rows in s.get("rounds", {}).items():
                with mlflow.start_run(run_name=f"rounds-{chain}-seed{s['seed']}"):
                    mlflow.log_params({"arm": f"rounds/{chain}", "seed": s["seed"]})
                    for row in rows:
                        mlflow.log_metric("accuracy", row["accuracy"], step=row["round"])


def _finite(x):
    """NaN (an interval from one seed) -> null, so results.json is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def seeds_to_go(comparisons: dict, n_seeds: int, cpu_seconds: dict) -> str:
    """What the 2-point check still costs: the most seeds any comparison needs, and the CPU time of the
    missing ones at the seeds' own measured CPU time (a reused seed's file keeps its time)."""
    need = max((c.get("seeds_for_mde_2pt") or 0 for c in comparisons.values()), default=0)
    if need <= n_seeds:
        return ""
    per_seed = [t["total"] for t in cpu_seconds.values() if t.get("total")]
    cost = ""
    if per_seed:
        mean = float(np.mean(per_seed))
        cost = (f"; at the {mean / 60:.1f} CPU-minutes per seed measured here, the {need - n_seeds} "
                f"missing seeds take about {(need - n_seeds) * mean / 3600:.1f} CPU-hours")
    return (f" The comparison that needs the most asks for {need} seeds{cost} (the same command with "
            f"`--seeds {need}` and the same `--run-dir` reuses the finished ones).")


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _ci_text(ci: list[float]) -> str:
    return "n/a (1 seed)" if not all(math.isfinite(v) for v in ci) else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _plots(agg: dict, out: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        return  # results.json and report.md still get written; plots need matplotlib
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(agg["arms"])
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    means = [100 * agg["arms"][a]["mean"] for a in arms]
    errs = [[0 if not math.isfinite(agg["arms"][a]["ci95"][0]) else means[i] - 100 * agg["arms"][a]["ci95"][0]
             for i, a in enumerate(arms)],
            [0 if not math.isfinite(agg["arms"][a]["ci95"][1]) else 100 * agg["arms"][a]["ci95"][1] - means[i]
             for i, a in enumerate(arms)]]
    bars = ax.bar(range(len(arms)), means, yerr=errs, capsize=4, color="#4c72b0")
    ax.bar_label(bars, fmt="%.1f", padding=3, fontsize=7)
    for i, a in enumerate(arms):
        ax.scatter([i] * len(agg["arms"][a]["per_seed"]), [100 * x for x in agg["arms"][a]["per_seed"]],
                   color="black", s=9, zorder=3)
    ax.set_xticks(range(len(arms)), [a.replace("_", "\n") for a in arms], fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy per arm: mean over {len(agg['seeds'])} seed(s), 95% t-interval, dots = seeds")
    fig.tight_layout()
    fig.savefig(out / "accuracy_per_arm.png", dpi=110)
    plt.close(fig)
    if agg["rounds"]:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        for chain in dict.fromkeys(r["arm"] for r in agg["rounds"]):
            rows = [r for r in agg["rounds"] if r["arm"] == chain]
            xs = [r["round"] for r in rows]
            ys = [100 * r["mean"] for r in rows]
            ax.plot(xs, ys, marker="o", label=title(chain))
            lo = [100 * r["ci95"][0] for r in rows]
            hi = [100 * r["ci95"][1] for r in rows]
            if all(math.isfinite(v) for v in lo + hi):
                ax.fill_between(xs, lo, hi, alpha=0.15)
        ax.set_xlabel("round (0 = base generator)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(sorted({r["round"] for r in agg["rounds"]}))
        ax.set_title("LeMa in rounds vs matched-token controls (95% CI over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "rounds.png", dpi=110)
        plt.close(fig)


def _pts(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}"


def _header(cfg, agg: dict) -> list[str]:
    return ["# LeMa lab: the paper's claims, and LeMa in rounds, on a synthetic task", "",
            f"Made by `{agg['command']}` on {agg['machine']} in {agg['minutes']:.1f} min wall "
            f"({agg['workers']} process(es); {agg.get('cpu_minutes', float('nan')):.1f} min of process CPU time; "
            f"load average {agg.get('load', 'n/a')} while it ran, on a machine shared with other work). "
            + (f"Seeds {agg['reused_seeds']} were finished by earlier runs with the same settings and are "
               "reused from the run dir (their time is not in these minutes). " if agg.get("reused_seeds") else "")
            + f"Seeds {agg['seeds']}; one base model for the run (as the paper has one), pretrained in "
            f"{agg.get('pretrain', {}).get('seconds', float('nan')):.0f} s wall, "
            f"{agg.get('pretrain', {}).get('cpu_seconds', float('nan')):.0f} s CPU"
            + (" (by an earlier run with the same pretraining settings, reused from the run dir and not part "
               "of this run's minutes)" if agg.get("pretrain", {}).get("reused") else "")
            + "; every seed has its own "
            f"fine-tuning order and sampled mistakes; all arms start from the base weights with the same optimiser "
            f"settings and schedule. "
            f"Test set: {cfg.n_test} held-out questions, the same for every seed and arm.", "",
            "## Protocol (as in the paper)", "",
            f"- **Task**: {cfg.min_steps}-{cfg.max_steps}-step word problems from step programs (numbers up to "
            f"{cfg.max_number}, quantities up to {cfg.max_value}, distractor rate {cfg.distractors}).",
            f"- **Base**: a Llama ({cfg.model.num_layers} layers, width {cfg.model.hidden_size}, word tokens, one per "
            f"digit) pretrained for {cfg.pretrain.epochs:g} epochs on {cfg.n_pretrain} problems of a *related but "
            "different* distribution: arithmetic facts, one-step word problems (the task's operations from any "
            "quantity, padded with distractor sentences to the task's length), and the task's names and items in "
            "other templates (\"together\", \"how many more\"); never a multi-step problem.",
            f"- **Generator**: the base fine-tuned on the {cfg.n_train}-question CoT set (the CoT arm), sampled at "
            f"temperature {cfg.temperature} ({cfg.samples} paths per question) on the training questions; each "
            "wrong path is corrected from the program (first wrong step, error type, corrected continuation). "
            f"Controlled correctors name a wrong step for {', '.join(f'{round(100 * r)}%' for r in cfg.wrong_step_rates)}"
            " of the mistakes.",
            f"- **Arms**: from the same base, {cfg.finetune.epochs:g} epochs at lr {cfg.finetune.learning_rate:g}, "
            "batch " f"{cfg.finetune.batch_size}; extra CoT is matched to LeMa's correction tokens (asserted within "
            f"+/-{cfg.token_tolerance:.0%}) or examples.", ""]


def _protocol_lines(agg: dict) -> list[str]:
    p = agg["protocol"]
    base = float(np.mean(agg["base_accuracy"]))
    cot = agg["lift_over_base"].get("cot", {}).get("mean", float("nan"))
    mdes = [c["mde"] for c in agg["comparisons"].values() if math.isfinite(c["mde"])]
    below = [a for a, r in agg["lift_over_base"].items() if not r["mean"] > 0]
    mark = {True: "met", False: "**NOT met**"}
    return ["## Design checks", "",
            f"- base accuracy under 30%: {mark[p['base_under_30']]} ({_pct(base)}%)",
            f"- CoT fine-tuning lifts the base by at least 20 points: {mark[p['cot_lifts_20']]} ({_pts(cot)})",
            f"- every arm above the base: {mark[p['every_arm_above_base']]}"
            + (f" (not: {', '.join(below)})" if below else ""),
            f"- MDE at most 2 points for every comparison: {mark[p['every_mde_at_most_2']]}"
            + (f" (largest {_pct(max(mdes))})" if mdes else " (not estimable)"), ""]


def _checker_lines(sc: dict) -> list[str]:
    L = ["## The production step checker, where the true first wrong step is known", ""]
    if not sc.get("available"):
        return L + [f"Not measured: {sc.get('reason')}. The generator's paths are kept in the run's seed files; "
                    "`lema lab --report-only --run-dir RUN` scores the checker once it is in the build.", ""]
    L += [f"`lema.grading.step_check.first_wrong_step` on every seed's sampled generator paths, against the "
          f"program's first wrong step (scored by `lema.grading.step_check.score`): precision "
          f"{_pct(sc['precision'])}% (correct step / wrong paths where it names one, {sc['named']}), "
          f"recall {_pct(sc['recall'])}% (correct step / "
          f"{sc['wrong_paths']} wrong paths), {sc['false_alarms']} false alarms on {sc['right_paths']} right paths.",
          "", "| error type (program) | wrong paths | recall % |", "|---|---:|---:|"]
    L += [f"| {k} | {sc['wrong_by_kind'][k]} | {_pct(v)} |" for k, v in sc["recall_by_kind"].items()]
    return L + [""]


def write_report(cfg, summaries: list[dict], agg: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _plots(agg, out)
    public = {k: v for k, v in agg.items()}
    public["config"] = cfg.model_dump(mode="json")
    (out / "results.json").write_text(json.dumps(_finite(public), indent=1), encoding="utf-8")
    seeds = agg["seeds"]
    L = _header(cfg, agg) + _protocol_lines(agg) + [
         "## Accuracy per arm (greedy, %)", "",
         "| arm | mean | 95% t-interval (seeds) | lift over base (points) | lift 95% interval | "
         + " | ".join(f"seed {s}" for s in seeds) + " | added trained tokens / LeMa's correction tokens |",
         "|---|---:|---|---:|---|" + "---:|" * len(seeds) + "---:|"]
    for a, r in agg["arms"].items():
        ratio = agg["token_ratio"].get(a, {}).get("mean")
        lift = agg["lift_over_base"].get(a)
        L.append(f"| {title(a)} | {_pct(r['mean'])} | {_ci_text(r['ci95'])} | "
                 f"{_pts(lift['mean']) if lift else ''} | {_ci_text(lift['ci95']) if lift else ''} | "
                 + " | ".join(_pct(x) for x in r["per_seed"])
                 + f" | {'' if ratio is None else f'{ratio:.3f}'} |")
    L += ["", "## Paired differences, seeds as the unit (percentage points)", "",
          "| comparison | mean | 95% t-interval | hierarchical bootstrap 95% | paired t p | per seed | "
          "MDE (80% power) | seeds for MDE 2 | verdict |",
          "|---|---:|---|---|---:|---|---:|---:|---|"]
    for name, c in agg["comparisons"].items():
        L.append(f"| {name} | {100 * c['mean']:+.1f} | {_ci_text(c['ci95'])} | {_ci_text(c['bootstrap_ci95'])} | "
                 f"{c['p']:.3g} | {', '.join(f'{100 * d:+.1f}' for d in c['per_seed'])} | {_pct(c['mde'])} | "
                 f"{c.get('seeds_for_mde_2pt') or 'n/a'} | {verdict(c)} |")
    mdes = [c["mde"] for c in agg["comparisons"].values() if math.isfinite(c["mde"])]
    qn = [c["mde_question_noise_only"] for c in agg["comparisons"].values()
          if math.isfinite(c["mde_question_noise_only"])]
    L += ["", (f"**Minimum detectable effect.** With {len(seeds)} seeds and {cfg.n_test} test questions, a paired "
               f"t-test over seeds (alpha 0.05, power 0.8) detects differences of about "
               f"{_pct(min(mdes))}-{_pct(max(mdes))} points given the seed-to-seed spread observed here; if seeds "
               f"varied only by test-question sampling it would be {_pct(min(qn))}-{_pct(max(qn))} points. "
               "\"Seeds for MDE 2\" is how many seeds the observed spread needs for a 2-point MDE."
               + seeds_to_go(agg["comparisons"], len(seeds), agg.get("cpu_seconds", {}))
               if mdes and qn else
               f"**Minimum detectable effect.** Not estimable with {len(seeds)} seed(s): a t-interval over seeds "
               f"needs at least two; run more seeds."), "", "## The claims, as measured", ""]
    for name, c in agg["comparisons"].items():
        v = verdict(c)
        note = (f" (interval spans 0; effects under about {_pct(c['mde'])} points are below what this design "
                "detects)") if v == "not shown" else ""
        L.append(f"- {c['claim']}: **{v}**{note}; {100 * c['mean']:+.1f} points on average, "
                 f"95% interval {_ci_text(c['ci95'])}.")
    if agg["rounds"]:
        L += ["", "## LeMa in rounds", "",
              "Round 1 is the arms (the CoT generator's mistakes on the training questions). From round 2, the "
              "generator is round r-1's LeMa model; it answers fresh questions and its new mistakes are corrected; "
              "each round's model is trained from the base weights on the cumulative data. Self-training adds the "
              "chain's own right answers and extra CoT adds gold CoT, both matched to LeMa's cumulative correction "
              "tokens (self-training is short when the generator has too few right answers; its ratio says so).",
              "", "| round | arm | mean % | 95% t-interval | per seed | tokens / LeMa's |",
              "|---:|---|---:|---|---|---|"]
        for r in agg["rounds"]:
            ratios = ", ".join("" if not math.isfinite(x) else f"{x:.2f}" for x in r["token_ratio"])
            L.append(f"| {r['round']} | {title(r['arm'])} | {_pct(r['mean'])} | {_ci_text(r['ci95'])}"
                     f" | {', '.join(_pct(x) for x in r['per_seed'])} | {ratios} |")
        L += ["", "![rounds](rounds.png)"]
    L += ["", "## Funnel and the generator's error types", "",
          "| seed | sampled | wrong (corrected) | right | error types of the corrected mistakes |",
          "|---:|---:|---:|---:|---|"]
    for f in agg["funnel"]:
        L.append(f"| {f['seed']} | {f['sampled']} | {f['wrong']} | {f['right']} | "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(f["error_types"].items())) + " |")
    L += [""] + _checker_lines(agg["step_checker"])
    L += ["## Time per seed after the base (seconds; every part is in results.json)", "",
          "Wall time depends on the machine's load; process CPU time (user + system) is what the work costs.", "",
          "| seed | total wall | total process CPU |", "|---:|---:|---:|"]
    for seed, t in agg["timings_s"].items():
        L.append(f"| {seed} | {t['total']:.0f} | {agg['cpu_seconds'].get(seed, {}).get('total', float('nan')):.0f} |")
    L += ["", "![accuracy per arm](accuracy_per_arm.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return path
