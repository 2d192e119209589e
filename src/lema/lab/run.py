"""Running the lab: one process per seed (in parallel on a GPU), then statistics and the report.

Once per run: the base model pretrained on a related distribution (arithmetic facts, one-step problems,
other templates).  Per seed, from that base: the CoT arm (the base fine-tuned on the CoT set) is the
generator: its paths sampled at temperature 1 on the training questions -> wrong ones corrected from the program (and by
correctors that name a wrong step at controlled rates) -> every arm fine-tuned from the base with the same
settings -> greedy accuracy on the same test questions -> the step checker scored -> LeMa in rounds.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from lema.lab import arms as A
from lema.lab import task
from lema.lab.config import LabConfig
from lema.lab.engine import Example, ModelSpec, TrainSpec, complete, new_model, train


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch")
    return device


def build_pools(cfg: LabConfig) -> dict[str, list[task.LabProblem]]:
    sizes = {"test": cfg.n_test, "train": cfg.n_train,
             "collect": cfg.n_collect * max(0, cfg.rounds - 1), "extra": cfg.n_extra}
    return task.make_pools(cfg.data_seed, sizes, **cfg.knobs())


class SeedContext:
    """What one seed's steps share: settings, tokenizer, pools, the base weights, timings."""

    def __init__(self, cfg: LabConfig, seed: int, device: str, log):
        from lema.lab.tokenizer import build_tokenizer

        self.cfg, self.seed, self.device, self.log = cfg, seed, device, log
        self.tok = build_tokenizer()
        self.pools = build_pools(cfg)
        self.cot = A.cot_examples(self.pools["train"])
        self.spec = ModelSpec(**cfg.model.model_dump())
        self.ft = TrainSpec(**cfg.finetune.model_dump())
        self.timings: dict[str, float] = {}     # wall seconds per part
        self.cpu: dict[str, float] = {}         # process CPU seconds per part (a shared machine's fair measure)
        self.base_state = None
        self.base_result: dict = {}

    def prompt(self, p: task.LabProblem) -> str:
        return task.cot_prompt(p.question)

    def timed(self, name: str, fn, *args, **kw):
        t0, c0 = time.time(), time.process_time()
        out = fn(*args, **kw)
        self.timings[name] = round(time.time() - t0, 2)
        self.cpu[name] = round(time.process_time() - c0, 2)
        return out

    def from_base(self):
        m = new_model(self.spec, self.tok, self.seed)
        m.load_state_dict(self.base_state)
        return m

    def sample(self, state, prompts: list[str], seed: int) -> list[str]:
        m = new_model(self.spec, self.tok, self.seed)
        m.load_state_dict(state)
        return self.timed(f"sample_{seed % 100}_{len(prompts)}", complete, m, prompts, self.tok, self.device,
                          self.cfg.max_new_tokens,
                          temperature=self.cfg.temperature, seed=seed)

    def collect(self, state, fresh: list[task.LabProblem], seed: int):
        """`samples` paths per fresh question from the generator `state`: wrong ones (one per question) and
        distinct right ones."""
        probs = [p for p in fresh for _ in range(self.cfg.samples)]
        paths = self.sample(state, [self.prompt(p) for p in probs], seed)
        wrongs, rights = A.read_paths(probs, paths, 1, self.cfg.samples)
        return wrongs, rights, paths

    def evaluate(self, model) -> dict:
        from lema.grading.answers import is_correct

        test = self.pools["test"]
        outs = complete(model, [self.prompt(p) for p in test], self.tok, self.device, self.cfg.max_new_tokens)
        ok = [is_correct(o, str(p.answer), "lab") for o, p in zip(outs, test)]
        kinds = Counter(m.kind for o, p in zip(outs, test) if (m := task.first_mistake(o, p)) is not None)
        return {"accuracy": sum(ok) / len(ok), "outcomes": [int(x) for x in ok], "error_types": dict(kinds)}

    def train_eval(self, name: str, examples: list[Example], keep: bool = True):
        """Fine-tune a copy of the base on `examples` with the shared settings, evaluate it on the test set."""
        t0, c0 = time.time(), time.process_time()
        m = self.from_base()
        rep = train(m, examples, self.tok, self.ft, self.seed, self.device, self.spec.max_length)
        res = self.evaluate(m)
        res["train"] = rep
        self.timings[name] = round(time.time() - t0, 2)
        self.cpu[name] = round(time.process_time() - c0, 2)
        self.log(f"seed {self.seed}: {name}: {len(examples)} examples, accuracy {res['accuracy']:.3f} "
                 f"({self.timings[name]:.0f}s)")
        state = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()} if keep else None
        return res, state


def pretrain_base(cfg: LabConfig, device: str, log=print, data: list[Example] | None = None) -> dict:
    """The base model, once per run (as the paper has one base model): pretrained on the related
    distribution from weights drawn with `data_seed`.  Returns its state and training summary."""
    import torch

    from lema.lab.tokenizer import build_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tok = build_tokenizer()
    spec = ModelSpec(**cfg.model.model_dump())
    pre = data if data is not None else pretrain_data(cfg)
    log(f"base: pretraining on {len(pre)} related problems ({device})")
    t0, c0 = time.time(), time.process_time()
    base = new_model(spec, tok, cfg.data_seed)
    rep = train(base, pre, tok, TrainSpec(**cfg.pretrain.model_dump()), cfg.data_seed, device, spec.max_length)
    rep.update(kinds=dict(Counter(e.kind for e in pre)), seconds=round(time.time() - t0, 2),
               cpu_seconds=round(time.process_time() - c0, 2))
    log(f"base: pretrained, final loss {rep['final_loss']:.3f} ({rep['seconds']:.0f}s)")
    return {"state": {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}, "train": rep}


def pretrain_data(cfg: LabConfig) -> list[Example]:
    """The base's training examples: the related distribution, none of the task pools' questions."""
    from lema.lab.pretrain import pretrain_examples

    task_questions = {p.question for pool in build_pools(cfg).values() for p in pool}
    return pretrain_examples(cfg.data_seed + 1, cfg.n_pretrain, task_questions, **cfg.knobs())


def base_key(cfg: LabConfig, data: list[Example] | None = None) -> dict:
    """Everything the base's weights depend on: a base in the run dir with the same key is reused.  The data
    enter by their hash, so pool sizes count exactly when they change what the base sees."""
    import hashlib

    data = pretrain_data(cfg) if data is None else data
    digest = hashlib.sha256(json.dumps([(e.prompt, e.completion) for e in data]).encode())
    return {"model": cfg.model.model_dump(), "pretrain": cfg.pretrain.model_dump(), "data": digest.hexdigest()[:16],
            "data_seed": cfg.data_seed, "threads": cfg.threads}


def load_or_pretrain_base(cfg: LabConfig, device: str, run_dir: Path, log=print) -> dict:
    """The run dir's base.pt when it was pretrained with the same settings (its recorded pretraining time
    stays with it), else a freshly pretrained base, saved there for the next run and for seed workers."""
    import torch

    data = pretrain_data(cfg)  # once: the key hashes it and pretraining uses it
    path, key = run_dir / "base.pt", base_key(cfg, data)
    if path.exists():
        saved = torch.load(path)
        if saved.get("key") == key:
            log(f"base: reusing {path} (pretrained in {saved['train'].get('seconds', 0):.0f}s wall)")
            saved["train"]["reused"] = True
            return saved
        log(f"base: {path} was pretrained with other settings; pretraining again")
    base = pretrain_base(cfg, device, log, data)
    base["key"] = key
    torch.save(base, path)
    return base


def run_seed(cfg: LabConfig, seed: int, device: str, base: dict, log=print) -> dict:
    """The whole protocol for one seed from the shared base; returns a JSON-able summary (outcomes per test
    question included)."""
    import torch

    from lema.lab.stepcheck import path_records

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()
    ctx = SeedContext(cfg, seed, device, log)
    tok = ctx.tok
    ctx.base_state = base["state"]
    ctx.base_result = ctx.timed("eval_base", ctx.evaluate, ctx.from_base())
    ctx.base_result["train"] = base["train"]
    log(f"seed {seed}: base accuracy {ctx.base_result['accuracy']:.3f}")

    results: dict[str, dict] = {}
    states: dict[str, dict] = {}
    # The generator is the base fine-tuned on the CoT set (the "cot" arm), sampled on the training questions.
    results["cot"], states["cot"] = ctx.train_eval("cot", ctx.cot)
    wrongs, rights, paths = ctx.collect(states["cot"], ctx.pools["train"], seed * 100 + 1)
    log(f"seed {seed}: generator: {len(wrongs)} wrong, {len(rights)} right of {len(paths)} sampled paths")
    rates = tuple(cfg.wrong_step_rates)
    sets, sizes = A.arm_sets(ctx.pools["train"], wrongs, ctx.pools["extra"], tok, cfg.token_tolerance, seed,
                             rates)
    for arm in [a for a in cfg.arms if a != "cot"] + [A.wrong_step_arm(r) for r in rates]:
        results[arm], st = ctx.train_eval(arm, sets[arm], keep=arm == "lema")
        if st is not None:
            states[arm] = st
    probs = [p for p in ctx.pools["train"] for _ in range(cfg.samples)]
    summary = {"seed": seed, "device": device, "base": ctx.base_result, "arms": results, "sizes": sizes,
               "funnel": {"sampled": len(paths), "wrong": len(wrongs), "right": len(rights),
                          "error_types": dict(Counter(w.mistake.kind for w in wrongs))},
               "generator": {"model": "cot", "temperature": cfg.temperature, "questions": "train",
                             "samples": cfg.samples},
               "generator_paths": path_records(probs, paths)}
    if cfg.rounds >= 1 and "lema" in results and "cot_extra_tokens" in results:
        from lema.lab.rounds import run_rounds

        n_cot = len(ctx.cot)
        round1 = {"corrections": sets["lema"][n_cot:], "extra_tokens": sets["cot_extra_tokens"][n_cot:],
                  "rights": rights, "lema_state": states["lema"], "lema_result": results["lema"],
                  "extra_result": results["cot_extra_tokens"]}
        summary["rounds"] = run_rounds(ctx, round1)
    summary["timings"] = ctx.timings
    summary["cpu_seconds"] = ctx.cpu
    summary["seconds"] = round(time.time() - t_start, 1)
    return summary


# Settings that change no seed's numbers: which seeds, how many processes, where files go, report-only knobs.
NOT_IN_SEED_KEY = {"seeds", "workers", "run_dir", "report_dir", "tracking_uri", "bootstrap_iters"}


def seed_key(cfg: LabConfig, device: str) -> str:
    """What a seed's results depend on besides its number (threads included: they change float sums)."""
    import hashlib

    data = {**cfg.model_dump(mode="json", exclude=NOT_IN_SEED_KEY), "device": device}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def finished_seeds(cfg: LabConfig, device: str, run_dir: Path) -> dict[int, dict]:
    """Seeds of this run whose file in the run dir was made with the same settings: a stopped or shorter run
    goes on from what is on disk (a seed file without the key, or with another, is run again)."""
    key, done = seed_key(cfg, device), {}
    for s in cfg.seeds:
        f = run_dir / f"seed{s}.json"
        if f.exists():
            summary = json.loads(f.read_text(encoding="utf-8"))
            if summary.get("key") == key:
                done[s] = summary
    return done


def _seed_job(cfg_json: str, seed: int, device: str, run_dir: str) -> str:
    """Worker process entry: one seed, written to run_dir/seed{seed}.json."""
    import torch

    cfg = LabConfig.model_validate_json(cfg_json)
    base = torch.load(Path(run_dir) / "base.pt")
    s = run_seed(cfg, seed, device, base, log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    s["key"] = seed_key(cfg, device)
    path = Path(run_dir) / f"seed{seed}.json"
    path.write_text(json.dumps(s), encoding="utf-8")
    return str(path)


def run_lab(cfg: LabConfig, command: str, log=print) -> Path:
    """All seeds (in parallel processes on a GPU), then results.json, report.md and plots."""
    import scipy.stats  # noqa: F401  (fail before hours of training, not after)

    device = resolve_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cpu_share = max(1, (os.cpu_count() or 1) // max(1, cfg.threads))  # a core per process at 1 thread
    workers = min(len(cfg.seeds), cfg.workers or (8 if device == "cuda" else cpu_share))
    if workers > 1 and cfg.threads == 0:  # one share of the cores per process
        cfg = cfg.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // workers)})
    done = finished_seeds(cfg, device, run_dir)
    todo = [s for s in cfg.seeds if s not in done]
    workers = max(1, min(workers, len(todo)))
    t0, load0 = time.time(), os.getloadavg()
    if done:
        log(f"lab: seeds {sorted(done)} already in {run_dir} with the same settings: reused, not rerun")
    log(f"lab: seeds {todo} on {device}, {workers} process(es); load average {load0[0]:.1f}")
    # What a stopped run's report needs to say how it ran (meta.json is written only at the end; an earlier
    # finished run's meta.json would make --report-only report that run, not this one's seeds).
    (run_dir / "meta.json").unlink(missing_ok=True)
    (run_dir / "started.json").write_text(json.dumps({"command": command, "time": t0, "workers": workers,
                                                      "load": load0[0], "reused_seeds": sorted(done)}),
                                          encoding="utf-8")
    base = load_or_pretrain_base(cfg, device, run_dir, log)
    if workers == 1:
        for s in todo:  # each seed's file is written as it finishes (a long run can be read while it runs)
            done[s] = {**run_seed(cfg, s, device, base, log), "key": seed_key(cfg, device)}
            (run_dir / f"seed{s}.json").write_text(json.dumps(done[s]), encoding="utf-8")
    elif todo:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            futs = {s: ex.submit(_seed_job, cfg.model_dump_json(), s, device, str(run_dir)) for s in todo}
            done.update({s: json.loads(Path(f.result()).read_text(encoding="utf-8")) for s, f in futs.items()})
    summaries = [done[s] for s in cfg.seeds]
    load1 = os.getloadavg()
    meta = {"command": command, "machine": machine(device), "minutes": round((time.time() - t0) / 60, 2),
            "cpu_minutes": round(cpu_seconds() / 60, 2), "workers": workers,
            "load": f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1-minute)", "seeds": [s["seed"] for s in summaries], "config": cfg.model_dump(mode="json"),
            "reused_seeds": sorted(set(cfg.seeds) - set(todo))}
    (run_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return write_results(cfg, summaries, meta, log)


def write_results(cfg: LabConfig, summaries: list[dict], meta: dict, log=print) -> Path:
    """Statistics, MLflow runs (when importable), results.json, report.md and plots from seed summaries."""
    from lema.lab.report import aggregate, track, write_report

    agg = aggregate(cfg, summaries)
    agg.update({k: meta[k] for k in ("command", "machine", "minutes", "workers", "cpu_minutes", "load",
                                     "reused_seeds")
                if k in meta})
    track(cfg, summaries, agg, log)
    report = write_report(cfg, summaries, agg, Path(cfg.report_dir))
    log(f"lab: {meta['minutes']:.1f} min; report {report}")
    return report


def report_from_run_dir(cfg: LabConfig, command: str = "", log=print) -> Path:
    """Rewrite the report from a run's seed files (e.g. a run copied back from a GPU machine).  A run that
    was stopped before its end (no meta.json) is reported from the seeds it finished, and says so."""
    run_dir = Path(cfg.run_dir)
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        done = [s for s in cfg.seeds if (run_dir / f"seed{s}.json").exists()]
        if not done:
            raise FileNotFoundError(f"{meta_path}: no lab run here (run the lab first)")
        meta = interrupted_meta(cfg, run_dir, done, command)
        log(f"lab: {run_dir} was stopped after seeds {done} of {cfg.seeds}; reporting those")
    else:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    summaries = [json.loads((run_dir / f"seed{s}.json").read_text(encoding="utf-8")) for s in meta["seeds"]]
    run_cfg = LabConfig(**{**meta["config"], "report_dir": cfg.report_dir, "tracking_uri": cfg.tracking_uri})
    return write_results(run_cfg, summaries, meta, log)


def interrupted_meta(cfg: LabConfig, run_dir: Path, done: list[int], command: str) -> dict:
    """What a stopped run measured: the base's pretraining plus each seed it finished, wall and CPU.  Seeds it
    reused (finished by an earlier run with the same settings) count in neither."""
    files = {s: run_dir / f"seed{s}.json" for s in done}
    seeds = {s: json.loads(f.read_text(encoding="utf-8")) for s, f in files.items()}
    pre = seeds[done[0]]["base"]["train"]
    own = 0.0 if pre.get("reused") else 1.0  # a reused base was pretrained (and timed) by an earlier run
    started = run_dir / "started.json"
    st = json.loads(started.read_text(encoding="utf-8")) if started.exists() else None
    # started.json names them; one from before that field: the files written before this run started
    reused = set(st.get("reused_seeds", [s for s, f in files.items() if f.stat().st_mtime < st["time"]])
                 if st else [])
    ran = [s for s in done if s not in reused]
    cpu = own * pre.get("cpu_seconds", 0.0) + sum(sum(seeds[s].get("cpu_seconds", {}).values()) for s in ran)
    if st:  # parallel seeds overlap: the wall time is from the start to the last finished seed
        command, workers, load = st["command"], st["workers"], f"{st['load']:.1f} at the start (1-minute)"
        wall = max((files[s].stat().st_mtime for s in ran), default=st["time"]) - st["time"]
    else:  # a run from before started.json: its seeds, one after another
        workers, load = 1, "not recorded (stopped run)"
        wall = own * pre.get("seconds", 0.0) + sum(seeds[s]["seconds"] for s in ran)
    return {"command": f"{command} (stopped after {len(done)} of {len(cfg.seeds)} seeds; report from --report-only)",
            "machine": machine(seeds[done[0]]["device"]), "minutes": round(wall / 60, 2),
            "cpu_minutes": round(cpu / 60, 2), "workers": workers, "load": load, "seeds": done,
            "reused_seeds": sorted(reused), "config": cfg.model_dump(mode="json")}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (seed workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)} (cuda), {os.cpu_count()} CPU cores"
    import torch

    # The kernels torch picks (AVX2, AVX512) change float sums, and the lab's training is sensitive to them.
    return (f"{cpu_model() or platform.processor() or platform.machine()} CPU ({torch.backends.cpu.get_cpu_capability()}"
            f" kernels), {os.cpu_count()} cores, torch {torch.__version__}, Python {sys.version.split()[0]}")


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def add_arguments(p) -> None:
    """The lab's flags, shared by `lema lab` and `python -m lema.lab`."""
    p.add_argument("--quick", action="store_true", help="toy sizes, a minute or two (tests)")
    p.add_argument("--config", dest="lab_config", default=None, help="YAML with a `lab:` section")
    p.add_argument("--seeds", type=int, default=None, help="run seeds 1..N")
    p.add_argument("--rounds", type=int, default=None, help="rounds of LeMa (>= 1)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="parallel seed processes (default: one per seed on cuda, one per core on a cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--out", default=None, help="where report.md, results.json and plots go")
    p.add_argument("--run-dir", dest="run_dir", default=None)
    p.add_argument("--report-only", action="store_true", help="rewrite the report from --run-dir's seed files")


def command_line(args, prog: str) -> str:
    """The command as run, rebuilt from the parsed flags (recorded in results.json)."""
    flags = {"quick": "--quick", "lab_config": "--config", "seeds": "--seeds", "rounds": "--rounds",
             "device": "--device", "workers": "--workers", "threads": "--threads", "out": "--out",
             "run_dir": "--run-dir"}
    parts = [prog]
    for key, flag in flags.items():
        v = getattr(args, key, None)
        if v is True:
            parts.append(flag)
        elif v not in (None, False):
            parts += [flag, str(v)]
    return " ".join(parts)


def main_from_args(args, prog: str) -> int:
    from lema.lab.config import load_lab_config

    cfg = load_lab_config(args.lab_config, quick=args.quick,
                          seeds=list(range(1, args.seeds + 1)) if args.seeds else None, rounds=args.rounds,
                          device=args.device, workers=args.workers, threads=args.threads, report_dir=args.out,
                          run_dir=args.run_dir)
    log = lambda m: print(time.strftime("%H:%M:%S"), m, flush=True)  # noqa: E731
    if getattr(args, "report_only", False):
        report_from_run_dir(cfg, command_line(args, prog).replace(" --report-only", ""), log)
    else:
        run_lab(cfg, command_line(args, prog), log=log)
    return 0
