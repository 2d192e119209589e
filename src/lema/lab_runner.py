"""`lema lab`: the paper's claims, measured on the synthetic task.

For each seed: pretrain the tiny model on a pool of problems, sample its own
wrong paths on the training questions, correct them exactly (the step program
is known), validate with the GE suite, then fine-tune four arms from the same
base on the same questions and evaluate them on the same test questions:
  cot           CoT only
  lema          CoT + corrections
  cot_extra     CoT + extra CoT matched to `lema` in examples and tokens
  lema_no_expl  CoT + corrections without their explanations
Every arm is an MLflow run.  Whatever comes out is reported as measured.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from .config import Config, GeneratorConfig, LabConfig
from .jsonl import write_json, write_jsonl
from .records import Correction, EvalRow, Problem, SFTExample, WrongPath

ARM_SHORT = {"base": "base", "cot": "CoT", "lema": "LeMa", "cot_extra": "CoT + extra CoT",
             "lema_no_expl": "LeMa, no expl."}
ARM_TITLES = {"cot": "CoT only", "lema": "CoT + corrections (LeMa)", "cot_extra": "CoT + matched extra CoT",
              "lema_no_expl": "LeMa without explanations"}


def _tokens(examples: list[SFTExample], tok, trained_only: bool = False) -> int:
    """Tokens of the examples; `trained_only` counts the completion tokens, the ones the loss sees."""
    return sum(len(tok(e.completion if trained_only else e.prompt + e.completion,
                       add_special_tokens=False)["input_ids"]) for e in examples)


def matched_extra(candidates: list[SFTExample], n: int, target_tokens: int, tok) -> list[SFTExample]:
    """n extra CoT examples whose trained-token total is as close as possible to target_tokens:
    the best window of n consecutive candidates when sorted by completion length."""
    if n == 0:
        return []
    if len(candidates) < n:
        raise ValueError(f"need {n} extra CoT examples, only {len(candidates)} generated")
    sized = sorted(((len(tok(e.completion, add_special_tokens=False)["input_ids"]), e) for e in candidates),
                   key=lambda x: x[0])
    lengths = [s for s, _ in sized]
    best, best_gap, window = 0, float("inf"), sum(lengths[:n])
    for start in range(len(sized) - n + 1):
        if start:
            window += lengths[start + n - 1] - lengths[start - 1]
        gap = abs(window - target_tokens)
        if gap < best_gap:
            best, best_gap = start, gap
    return [e for _, e in sized[best : best + n]]


def arm_sets(train: list[Problem], extra: list[Problem], corrections: list[Correction], tok,
             seed: int) -> tuple[dict[str, list[SFTExample]], dict[str, dict]]:
    from .sft import correction_example, cot_examples

    cot = cot_examples(train)
    fixes = [correction_example(c) for c in corrections]
    bare = [correction_example(c, explanations=False) for c in corrections]
    more = matched_extra(cot_examples(extra), len(fixes), _tokens(fixes, tok, trained_only=True), tok)
    sets = {"cot": cot, "lema": cot + fixes, "cot_extra": cot + more, "lema_no_expl": cot + bare}
    rng = random.Random(seed)
    for v in sets.values():
        rng.shuffle(v)
    sizes = {k: {"examples": len(v), "tokens": _tokens(v, tok), "trained_tokens": _tokens(v, tok, True)}
             for k, v in sets.items()}
    return sets, sizes


def mistake_positions(rows: list[EvalRow], programs: dict[str, list]) -> Counter:
    """Where wrong test answers first go wrong (1-based step), by the exact program."""
    from .lab import first_wrong_step
    from .steps import split_steps

    out: Counter = Counter()
    for r in rows:
        if not r.correct:
            k = first_wrong_step(split_steps(r.prediction), programs[r.id], r.gold_answer)
            out[k if k is not None else 0] += 1
    return out


def run_seed(cfg: Config, lab: LabConfig, seed: int, splits: dict[str, list[Problem]], root: Path,
             log) -> dict:
    from transformers import AutoTokenizer

    from .base_model import build_base_model
    from .collect import collect
    from .correct import run_correct
    from .evaluate import evaluate, summarize
    from .generate import VLLMBackend
    from .lab import LabCorrector
    from .train import train
    from .validate import run_validate

    sd = root / f"seed{seed}"
    vopts = cfg.vllm.model_dump()
    t0 = time.time()
    log(f"seed {seed}: pretraining the base model")
    base = sd / "base"
    build_base_model(lab.base_model, base, seed=seed, problems=splits["pool"])
    tok = AutoTokenizer.from_pretrained(base)

    log(f"seed {seed}: sampling wrong paths")
    gen = GeneratorConfig(name=f"base-seed{seed}", model=str(base), n=lab.samples, temperature=lab.temperature,
                          max_tokens=lab.max_tokens)
    paths = collect(splits["train"], [gen], lambda g: VLLMBackend(g.model, seed=seed, **vopts), lambda m: m, seed)
    programs = {p.id: p.program for p in splits["train"] + splits["test"]}
    wrong = [WrongPath(**p.model_dump()) for p in paths if not p.correct]
    for w in wrong:
        w.program = programs[w.id]
    write_jsonl(sd / "wrong.jsonl", wrong)
    corr = run_correct(sd / "wrong.jsonl", sd / "corrections.jsonl", sd / "correct_quarantine.jsonl",
                       LabCorrector())
    val = run_validate(sd / "corrections.jsonl", sd / "valid.jsonl", sd / "validate_quarantine.jsonl",
                       sd / "ge_result.json", eval_questions=[p.question for p in splits["test"]])
    from .jsonl import read_jsonl

    per_q: Counter = Counter()
    valid = []
    for c in read_jsonl(sd / "valid.jsonl", Correction):
        if per_q[c.id] < lab.corrections_per_question:
            per_q[c.id] += 1
            valid.append(c)
    sets, sizes = arm_sets(splits["train"], splits["extra"], valid, tok, seed)

    results: dict[str, dict] = {}
    models = {"base": base}
    for arm in lab.arms:
        log(f"seed {seed}: fine-tuning arm {arm} ({sizes[arm]['examples']} examples)")
        write_jsonl(sd / f"sft_{arm}.jsonl", sets[arm])
        rep = train(str(base), sd / f"sft_{arm}.jsonl", sd / arm, lab.train, seed=seed,
                    name="cot" if arm in ("cot", "cot_extra") else "lema")
        models[arm] = sd / arm / "model"
        results[arm] = {"train_loss": rep.details["train_loss"], "steps": rep.details["steps"]}
    for name, model in models.items():
        log(f"seed {seed}: evaluating {name}")
        backend = VLLMBackend(str(model), seed=seed, **vopts)
        try:
            rows = evaluate(backend, name, {"lab/test": splits["test"]}, max_tokens=lab.max_tokens, shots=0,
                            stop=["\nQuestion:"])
        finally:
            backend.close()
        write_jsonl(sd / f"eval_{name}.jsonl", rows)
        by_steps = defaultdict(list)
        for r in rows:
            by_steps[r.level].append(r.correct)
        results.setdefault(name, {}).update({
            "accuracy": summarize(rows)["lab/test"]["accuracy"], "outcomes": {r.id: r.correct for r in rows},
            "by_steps": {k: sum(v) / len(v) for k, v in sorted(by_steps.items())},
            "mistakes": dict(mistake_positions(rows, programs))})
    summary = {"seed": seed, "seconds": time.time() - t0, "sampled": len(paths), "wrong": len(wrong),
               "corrected": corr.n_out, "validated": val.n_out, "used": len(valid), "sizes": sizes, "arms": results}
    write_json(sd / "summary.json", summary)
    return summary


def _track(lab: LabConfig, uri: str, summaries: list[dict]) -> None:
    from .register import using_tracking_uri

    with using_tracking_uri(uri):
        _log_arms(lab, summaries)


def _log_arms(lab: LabConfig, summaries: list[dict]) -> None:
    import mlflow

    mlflow.set_experiment(lab.experiment)
    for s in summaries:
        for arm in lab.arms:
            a = s["arms"][arm]
            with mlflow.start_run(run_name=f"{arm}-seed{s['seed']}"):
                mlflow.log_params({"arm": arm, "seed": s["seed"], "examples": s["sizes"][arm]["examples"],
                                   "tokens": s["sizes"][arm]["tokens"], "n_train": lab.n_train, "n_test": lab.n_test,
                                   "epochs": lab.train.epochs, "learning_rate": lab.train.learning_rate})
                mlflow.log_metrics({"accuracy": a["accuracy"], "train_loss": a["train_loss"],
                                    "base_accuracy": s["arms"]["base"]["accuracy"]})
                for k, v in a["by_steps"].items():
                    mlflow.log_metric(f"accuracy_steps_{k}", v)


def aggregate(lab: LabConfig, summaries: list[dict]) -> dict:
    from .stats import compare_paired

    arms = ["base"] + list(lab.arms)
    out: dict = {"arms": {}, "paired": {}}
    for arm in arms:
        accs = [s["arms"][arm]["accuracy"] for s in summaries]
        mean = sum(accs) / len(accs)
        if len(accs) > 1:
            from scipy.stats import t

            sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
            half = t.ppf(0.975, len(accs) - 1) * sd / math.sqrt(len(accs))
        else:
            half = float("nan")
        out["arms"][arm] = {"mean": mean, "ci95_half": half, "per_seed": accs}
    pairs = [("lema", "cot"), ("lema", "cot_extra"), ("lema", "lema_no_expl"), ("cot_extra", "cot")]
    for b, a in pairs:
        if a in lab.arms and b in lab.arms:
            xa, xb = [], []
            for s in summaries:
                oa, ob = s["arms"][a]["outcomes"], s["arms"][b]["outcomes"]
                for q in sorted(oa):
                    xa.append(oa[q])
                    xb.append(ob[q])
            out["paired"][f"{b} vs {a}"] = compare_paired(xa, xb)
    return out


def write_lab_report(lab: LabConfig, summaries: list[dict], agg: dict, out: Path, command: str) -> Path:
    from .report import _plt, save

    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    arms = ["base"] + list(lab.arms)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    means = [100 * agg["arms"][a]["mean"] for a in arms]
    errs = [0 if math.isnan(agg["arms"][a]["ci95_half"]) else 100 * agg["arms"][a]["ci95_half"] for a in arms]
    bars = ax.bar(range(len(arms)), means, yerr=errs, capsize=4,
                  color=["#999999", "#4c72b0", "#dd8452", "#55a868", "#8172b2"][: len(arms)])
    ax.bar_label(bars, fmt="%.1f", padding=3)
    for i, a in enumerate(arms):
        ax.scatter([i] * len(agg["arms"][a]["per_seed"]), [100 * x for x in agg["arms"][a]["per_seed"]],
                   color="black", s=10, zorder=3)
    ax.set_xticks(range(len(arms)), [ARM_SHORT[a] for a in arms], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy per arm: mean of {len(summaries)} seed(s), 95% CI across seeds")
    save(fig, out / "accuracy_per_arm.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for a in arms:
        steps = sorted({k for s in summaries for k in s["arms"][a]["by_steps"]}, key=int)
        ax.plot([int(k) for k in steps], [100 * sum(s["arms"][a]["by_steps"].get(k, 0) for s in summaries)
                                          / len(summaries) for k in steps], marker="o", label=ARM_SHORT[a])
    ax.set_xticks(sorted({int(k) for s in summaries for a in arms for k in s["arms"][a]["by_steps"]}))
    ax.set_xlabel("reasoning steps in the problem")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs number of steps")
    ax.legend(fontsize=7)
    save(fig, out / "accuracy_vs_steps.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    shown = [a for a in ("base", "cot", "lema") if a in arms]
    width = 0.8 / len(shown)
    positions = sorted({int(k) for s in summaries for a in shown for k in s["arms"][a]["mistakes"]})
    for i, a in enumerate(shown):
        counts = [sum(s["arms"][a]["mistakes"].get(str(p), s["arms"][a]["mistakes"].get(p, 0)) for s in summaries)
                  for p in positions]
        ax.bar([j + i * width for j in range(len(positions))], counts, width, label=ARM_SHORT[a])
    ax.set_xticks([j + width * (len(shown) - 1) / 2 for j in range(len(positions))], [str(p) for p in positions])
    ax.set_xlabel("first wrong step of a wrong test answer (0 = not localised)")
    ax.set_ylabel("test answers")
    ax.set_title("Where the model's mistakes happen, before and after fine-tuning")
    ax.legend(fontsize=7)
    save(fig, out / "mistake_positions.png")

    lines = ["# LeMa lab: the paper's claims on a synthetic task", "",
             f"Made by `{command}` on {time.strftime('%Y-%m-%d')} ({sum(s['seconds'] for s in summaries) / 60:.0f} "
             f"min on this machine). Seeds {[s['seed'] for s in summaries]}; {lab.n_train} training questions, "
             f"{lab.n_test} test questions (the same for every seed and arm), {lab.min_steps}-{lab.max_steps} steps, "
             f"numbers up to {lab.max_number}, quantities up to {lab.max_value}, distractor rate {lab.distractors}; "
             f"base model pretrained {lab.base_model.pretrain_steps} steps on {lab.n_pool} other problems.", "",
             "## Accuracy per arm (greedy, test set)", "",
             "| arm | mean accuracy | 95% CI (across seeds) | per seed | examples | trained tokens | all tokens |",
             "|---|---:|---|---|---:|---:|---:|"]
    for a in arms:
        r = agg["arms"][a]
        ci = "n/a (1 seed)" if math.isnan(r["ci95_half"]) else f"± {100 * r['ci95_half']:.1f}"
        size = summaries[0]["sizes"].get(a, {})
        lines.append(f"| {ARM_TITLES.get(a, 'base model (before fine-tuning)')} | {100 * r['mean']:.1f}% | {ci} | "
                     f"{', '.join(f'{100 * x:.1f}' for x in r['per_seed'])} | {size.get('examples', '')} | "
                     f"{size.get('trained_tokens', '')} | {size.get('tokens', '')} |")
    sz = summaries[0]["sizes"]
    if "cot_extra" in sz and "lema" in sz:
        share = sz["cot_extra"]["trained_tokens"] / max(1, sz["lema"]["trained_tokens"])
        lines += ["", f"Trained tokens are completion tokens (the loss sees only these). The extra-CoT arm matches "
                  f"LeMa in examples; in trained tokens it reaches {share:.0%} of LeMa's, the closest the generated "
                  f"candidates allow (a correction is longer than a CoT solution of the same problem)."]
    base = agg["arms"]["base"]["mean"]
    best = max(agg["arms"][a]["mean"] for a in lab.arms)
    if best < 0.3:
        lines += ["", f"**Scale caveat.** The base model solves {100 * base:.1f}% of the test problems and the best "
                  f"arm {100 * best:.1f}%: at this budget the tiny model has not learned the task well enough for "
                  f"the arms to separate. The knobs (`lab.base_model.pretrain_steps`, `lab.n_pool`, `lab.max_number`, "
                  f"`lab.max_steps`) trade time for competence."]
    lines += ["", "## Paired tests (same test questions, pooled over seeds)", "",
              "| comparison | pairs | wins | losses | difference | 95% bootstrap CI | exact McNemar p |",
              "|---|---:|---:|---:|---:|---|---:|"]
    for name, c in agg["paired"].items():
        lines.append(f"| {name} | {c['n']} | {c['wins']} | {c['losses']} | {100 * c['diff']:+.1f} pts | "
                     f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}] | {c['p_mcnemar']:.3g} |")
    lines += ["", "## The claims, as measured", ""]
    p = agg["paired"]

    def verdict(key: str, claim: str) -> str:
        if key not in p:
            return f"- {claim}: not measured (arm missing)."
        c = p[key]
        sig = c["p_mcnemar"] < 0.05
        direction = "holds" if c["diff"] > 0 and sig else ("contradicted" if c["diff"] < 0 and sig else "not shown")
        return (f"- {claim}: **{direction}** here ({100 * c['diff']:+.1f} pts, McNemar p = {c['p_mcnemar']:.3g}, "
                f"{c['n']} paired answers).")

    lines += [verdict("lema vs cot", "(1) CoT + corrections beats CoT alone"),
              verdict("lema vs cot_extra", "(2) corrections are worth more than the same amount of extra CoT"),
              verdict("lema vs lema_no_expl", "(3) the explanation part of a correction matters"), "",
              "## Funnel per seed", "",
              f"| seed | sampled | wrong | corrected | validated | used (≤ {lab.corrections_per_question} per question) |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['seed']} | {s['sampled']} | {s['wrong']} | {s['corrected']} | {s['validated']} | {s['used']} |"
              for s in summaries]
    lines += ["", "## Plots", "", "![accuracy per arm](accuracy_per_arm.png)", "",
              "![accuracy vs steps](accuracy_vs_steps.png)", "", "![mistake positions](mistake_positions.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    write_json(out / "results.json", {"aggregate": {k: v for k, v in agg.items()},
                                      "seeds": [{k: v for k, v in s.items() if k != "arms"} |
                                                {"arms": {a: {k: v for k, v in r.items() if k != "outcomes"}
                                                          for a, r in s["arms"].items()}} for s in summaries]})
    return path


def run_lab(cfg: Config, command: str = "lema lab", log=print) -> Path:
    from .lab import make_splits
    from .register import tracking_uri

    lab = cfg.lab
    root = Path(lab.run_dir)
    root.mkdir(parents=True, exist_ok=True)
    knobs = dict(min_steps=lab.min_steps, max_steps=lab.max_steps, max_number=lab.max_number,
                 distractors=lab.distractors, max_value=lab.max_value)
    n_extra = 3 * lab.n_train * lab.corrections_per_question  # candidates for the token-matched extra CoT arm
    splits = make_splits(lab.data_seed, lab.n_train, lab.n_test, lab.n_pool + n_extra, **knobs)
    pool = splits["pool"]
    splits["extra"], splits["pool"] = pool[lab.n_pool :], pool[: lab.n_pool]
    summaries = [run_seed(cfg, lab, seed, splits, root, log) for seed in lab.seeds]
    agg = aggregate(lab, summaries)
    _track(lab, tracking_uri(cfg.register_.tracking_uri, root), summaries)
    report = write_lab_report(lab, summaries, agg, Path(lab.report_dir), command)
    log(f"lab report: {report}")
    return report
