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

from lema.lab.arms import TITLES
from lema.stats import compare, t_interval

CLAIMS = [("cot", "lema", "(1) CoT + corrections beats CoT alone"),
          ("cot_extra_tokens", "lema", "(2) corrections beat the same number of extra CoT tokens"),
          ("cot_extra_examples", "lema", "(2') corrections beat the same number of extra CoT examples"),
          ("lema_no_expl", "lema", "(3) templated explanations beat no explanation"),
          ("lema_no_expl", "lema_informative", "(3) informative explanations beat no explanation"),
          ("lema", "lema_informative", "(3') informative beat templated explanations")]


def _ci(values: list[float]) -> tuple[float, list[float]]:
    m, ci = t_interval(values)
    return m, list(ci)


def aggregate(cfg, summaries: list[dict]) -> dict:
    seeds = [s["seed"] for s in summaries]
    arms = ["base"] + [a for a in cfg.arms if all(a in s["arms"] for s in summaries)]

    def run_of(s, a):
        return s["base"] if a == "base" else s["arms"][a]

    out: dict = {"seeds": seeds, "n_test": cfg.n_test, "arms": {}, "comparisons": {}, "token_ratio": {}}
    out["base_accuracy"] = [s["base"]["accuracy"] for s in summaries]
    for a in arms:
        accs = [run_of(s, a)["accuracy"] for s in summaries]
        m, ci = _ci(accs)
        out["arms"][a] = {"per_seed": accs, "mean": m, "ci95": ci}
    for a in arms[1:]:
        ratios = [s["sizes"][a]["token_ratio"] for s in summaries]
        out["token_ratio"][a] = {"per_seed": ratios, "mean": float(np.mean(ratios))}
    for i, (ref, arm, claim) in enumerate(CLAIMS):
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
    out["timings_s"] = {s["seed"]: {**s["timings"], "total": s["seconds"]} for s in summaries}
    out["cpu_seconds"] = {s["seed"]: {**s.get("cpu_seconds", {}),
                                      "total": round(sum(s.get("cpu_seconds", {}).values()), 1)} for s in summaries}
    return out


def track(cfg, summaries: list[dict], agg: dict, log) -> None:
    """One MLflow run per seed and arm, when MLflow is installed (the GPU box may not have it)."""
    spec = importlib.util.find_spec("mlflow")
    # A folder named mlflow/ on the path (this repo has one) imports as a namespace package: not MLflow.
    if spec is None or spec.origin in (None, "namespace"):
        log("lab: mlflow not installed; tracking skipped (results.json has everything)")
        return
    import mlflow
    from lema.registry.store import using_tracking_uri  # restores the caller's URI and environment afterwards

    uri = cfg.tracking_uri or f"sqlite:///{Path(cfg.run_dir).resolve() / 'mlflow.db'}"
    with using_tracking_uri(uri):
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
            ax.plot(xs, ys, marker="o", label=TITLES.get(chain, chain))
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


def write_report(cfg, summaries: list[dict], agg: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _plots(agg, out)
    public = {k: v for k, v in agg.items()}
    public["config"] = cfg.model_dump(mode="json")
    (out / "results.json").write_text(json.dumps(_finite(public), indent=1), encoding="utf-8")
    seeds = agg["seeds"]
    L = ["# LeMa lab: the paper's claims, and LeMa in rounds, on a synthetic task", "",
         f"Made by `{agg['command']}` on {agg['machine']} in {agg['minutes']:.1f} min "
         f"({agg['workers']} process(es)). Seeds {seeds}; every seed has its own initial weights, base model "
         f"and sampled mistakes; all arms of a seed start from that seed's base weights with the same optimiser "
         f"settings and schedule. Test set: {cfg.n_test} held-out questions, the same for every seed and arm.",
         "",
         f"Task: {cfg.min_steps}-{cfg.max_steps}-step word problems from step programs (numbers up to "
         f"{cfg.max_number}, quantities up to {cfg.max_value}, distractor rate {cfg.distractors}). Model: Llama, "
         f"{cfg.model.num_layers} layers, width {cfg.model.hidden_size}, word tokens with one token per digit. "
         f"Base: {cfg.n_pretrain} CoT problems, {cfg.pretrain.epochs:g} epochs. Arms: {cfg.n_train} CoT questions "
         f"plus their additions, {cfg.finetune.epochs:g} epochs at lr {cfg.finetune.learning_rate:g}. Mistakes: "
         f"the base model's own paths sampled at temperature {cfg.temperature} on {cfg.n_collect} questions "
         f"outside the training and test pools, corrected from the program.", "",
         "## Accuracy per arm (greedy, %)", "",
         "| arm | mean | 95% t-interval (seeds) | " + " | ".join(f"seed {s}" for s in seeds)
         + " | added trained tokens / LeMa's correction tokens |",
         "|---|---:|---|" + "---:|" * len(seeds) + "---:|"]
    for a, r in agg["arms"].items():
        ratio = agg["token_ratio"].get(a, {}).get("mean")
        L.append(f"| {TITLES.get(a, a)} | {_pct(r['mean'])} | {_ci_text(r['ci95'])} | "
                 + " | ".join(_pct(x) for x in r["per_seed"])
                 + f" | {'' if ratio is None else f'{ratio:.3f}'} |")
    L += ["", f"Base accuracy on every seed: {', '.join(_pct(x) for x in agg['base_accuracy'])}%.", ""]
    base_mean = sum(agg["base_accuracy"]) / max(len(agg["base_accuracy"]), 1)
    tuned = {a: r for a, r in agg["arms"].items() if a != "base"}
    below = [a for a, r in tuned.items() if r["mean"] < base_mean]
    if below:
        L += [f"**Read with care:** {len(below)} of {len(tuned)} fine-tuned arms end below the base model's "
              f"mean ({_pct(base_mean)}%): the base was pretrained on this task's CoT, so fine-tuning on "
              f"{cfg.n_train} questions at lr {cfg.finetune.learning_rate:g} perturbs a model that already solves "
              "it. The arms are compared with each other (same start, data budget and schedule), which is what the "
              "claims are about; none of them is an improvement over the base here.", ""]
    L += [
          "## Paired differences, seeds as the unit (percentage points)", "",
          "| comparison | mean | 95% t-interval | hierarchical bootstrap 95% | paired t p | per seed | MDE (80% power)"
          " |",
          "|---|---:|---|---|---:|---|---:|"]
    for name, c in agg["comparisons"].items():
        L.append(f"| {name} | {100 * c['mean']:+.1f} | {_ci_text(c['ci95'])} | {_ci_text(c['bootstrap_ci95'])} | "
                 f"{c['p']:.3g} | {', '.join(f'{100 * d:+.1f}' for d in c['per_seed'])} | {_pct(c['mde'])} |")
    mdes = [c["mde"] for c in agg["comparisons"].values() if math.isfinite(c["mde"])]
    qn = [c["mde_question_noise_only"] for c in agg["comparisons"].values()
          if math.isfinite(c["mde_question_noise_only"])]
    L += ["", (f"**Minimum detectable effect.** With {len(seeds)} seeds and {cfg.n_test} test questions, a paired "
               f"t-test over seeds (alpha 0.05, power 0.8) detects differences of about "
               f"{_pct(min(mdes))}-{_pct(max(mdes))} points given the seed-to-seed spread observed here; if seeds "
               f"varied only by test-question sampling it would be {_pct(min(qn))}-{_pct(max(qn))} points."
               if mdes and qn else
               f"**Minimum detectable effect.** Not estimable with {len(seeds)} seed(s): a t-interval over seeds "
               f"needs at least two; run more seeds."), "", "## The claims, as measured", ""]
    for name, c in agg["comparisons"].items():
        lo, hi = c["ci95"]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            verdict = "not testable with one seed"
        elif lo > 0:
            verdict = "holds here (interval above 0)"
        elif hi < 0:
            verdict = "contradicted here (interval below 0)"
        else:
            verdict = (f"not shown (interval spans 0; effects under about {_pct(c['mde'])} points are below what "
                       f"this design detects)")
        L.append(f"- {c['claim']}: **{verdict}**; {100 * c['mean']:+.1f} points on average.")
    if agg["rounds"]:
        L += ["", "## LeMa in rounds", "",
              "Round r's LeMa generator is round r-1's LeMa model; it answers fresh questions and its new mistakes "
              "are corrected; each round's model is trained from the base weights on the cumulative data. "
              "Self-training adds the chain's own right answers and extra CoT adds gold CoT, both matched to "
              "LeMa's cumulative correction tokens (self-training is short when the generator has too few right "
              "answers; its ratio says so).", "",
              "| round | arm | mean % | 95% t-interval | per seed | tokens / LeMa's |", "|---:|---|---:|---|---|---|"]
        for r in agg["rounds"]:
            ratios = ", ".join("" if not math.isfinite(x) else f"{x:.2f}" for x in r["token_ratio"])
            L.append(f"| {r['round']} | {TITLES.get(r['arm'], r['arm'])} | {_pct(r['mean'])} | {_ci_text(r['ci95'])}"
                     f" | {', '.join(_pct(x) for x in r['per_seed'])} | {ratios} |")
        L += ["", "![rounds](rounds.png)"]
    L += ["", "## Funnel and the generator's error types", "",
          "| seed | sampled | wrong (corrected) | right | error types of the corrected mistakes |",
          "|---:|---:|---:|---:|---|"]
    for f in agg["funnel"]:
        L.append(f"| {f['seed']} | {f['sampled']} | {f['wrong']} | {f['right']} | "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(f["error_types"].items())) + " |")
    L += ["", "## Time per seed (seconds; every part is in results.json)", "",
          "| seed | pretraining wall | total wall | total process CPU |", "|---:|---:|---:|---:|"]
    for seed, t in agg["timings_s"].items():
        cpu = agg["cpu_seconds"].get(seed, {}).get("total", float("nan"))
        L.append(f"| {seed} | {t.get('pretrain', float('nan')):.0f} | {t['total']:.0f} | {cpu:.0f} |")
    L += ["",
          "![accuracy per arm](accuracy_per_arm.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return path
