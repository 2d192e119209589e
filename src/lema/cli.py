"""``lema`` command line: thin wrappers over the stage functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def _overrides(args) -> dict:
    overrides = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _config(args):
    from lema.config import load_config

    return load_config(args.config, _overrides(args))


def _preflight(cfg, data_dir=None) -> None:
    """Every input a run reads, checked before its first stage (errors end the command with exit 2)."""
    from rich.console import Console

    from lema.config.preflight import preflight

    for note in preflight(cfg, data_dir):
        Console(stderr=True).print(f"[dim]checked eval set {note}[/]", highlight=False)


def _print_report(report) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold]{report.stage}[/]: in {report.n_in}, out {report.n_out}, "
                               f"quarantined {report.n_quarantined} ({report.seconds:.1f}s)")
    print(report.model_dump_json())


def cmd_grade(args) -> int:
    from lema.grading.grade import grade_file

    summary = grade_file(args.file, args.task, args.out, None if args.min_decimals < 0 else args.min_decimals)
    print(json.dumps(summary))
    return 0


def cmd_stage(args, cfg=None) -> int:
    """One node of the declared graph; its report lands where the declaration says (DVC tracks it)."""
    from lema.jsonl import write_json
    from lema.stages import BY_NAME, Instance, in_round

    cfg = cfg or _config(args)
    stage = BY_NAME[args.command]
    if not in_round(stage, args.round):
        raise SystemExit(f"stage {stage.name} has no instance in round {args.round} (rounds: {stage.rounds})")
    for v in (args.variant or stage.variants) if stage.variants else (None,):
        node = Instance(stage, v, args.round)
        report = node.run(cfg)
        write_json(cfg.run_path / node.report, report)
        _print_report(report)
    return 0


def cmd_validate(args) -> int:
    from lema.stages import common as pl
    from lema.stages.validate.validate import run_validate, validate_file

    cfg = _config(args)
    _preflight(cfg)
    if args.input is None:
        if args.kind != "corrections":
            raise SystemExit("--kind paths|sft needs --input FILE")
        return cmd_stage(args, cfg)
    out = Path(args.output or Path(args.input).with_suffix(".valid.jsonl"))
    quarantine = Path(args.quarantine or out.with_suffix(".quarantine.jsonl"))
    questions = [q.question for ps in pl.eval_sets(cfg, full=True).values() for q in ps]
    v = cfg.validate_
    if args.kind == "corrections":
        report = run_validate(args.input, out, quarantine, out.with_suffix(".ge.json"), v.min_pass_rate,
                              eval_questions=questions, leakage_ngram=v.leakage_ngram,
                              leakage_threshold=v.leakage_threshold, step_mostly=v.step_check.mostly,
                              step_action=v.step_check.action)
    else:
        report = validate_file(args.kind, args.input, out, quarantine, out.with_suffix(".ge.json"), questions,
                               v.leakage_ngram, v.leakage_threshold, v.min_pass_rate)
    _print_report(report)
    return 0


def cmd_correct(args) -> int:
    from lema.stages import common as pl
    from lema.stages.correct.correct import run_correct

    cfg = _config(args)
    if args.corrector:
        cfg.corrector.kind = args.corrector
    if args.model:
        cfg.corrector.model = args.model
    if args.input is None:
        return cmd_stage(args, cfg)
    out = Path(args.output or Path(args.input).with_suffix(".corrected.jsonl"))
    quarantine = Path(args.quarantine or out.with_suffix(".quarantine.jsonl"))
    cache = Path(args.cache_dir or out.parent / "correct-cache")
    _print_report(run_correct(args.input, out, quarantine, pl.corrector_for(cfg, cache)))
    return 0


def cmd_run(args) -> int:
    from lema.orchestration.runner import run_with_display

    cfg = _config(args)
    _preflight(cfg)
    return run_with_display(cfg, force=args.force, config_path=args.config, overrides=_overrides(args))


def cmd_dvc(args) -> int:
    from lema.orchestration.dvc import generate

    print(f"wrote {generate(args.config or 'params.yaml', args.out)}")
    return 0


def cmd_pipeline(args) -> int:
    from lema.config import load_config
    from lema.orchestration import kfp_cli

    config, overrides = args.config or "params.yaml", _overrides(args)
    cfg = load_config(config, overrides)
    if args.action == "run" or Path(cfg.data.dir).is_dir():
        _preflight(cfg, args.data_dir if args.action == "run" else None)
    else:  # compiling away from the data (the images carry it): the tasks read the sets when they run
        print(f"data dir {cfg.data.dir} not here: eval sets are checked when the pipeline runs", file=sys.stderr)
    if args.action == "compile":
        out = kfp_cli.compile_pipeline(config, args.out, num_shards=args.shards, gpu=args.gpu,
                                       cache_root=args.cache_root, overrides=overrides)
        print(f"compiled {out}")
    elif args.action == "run":
        if not args.local:
            raise SystemExit("lema pipeline run needs --local (use `submit --host URL` for a cluster)")
        kfp_cli.run_local(config, args.pipeline_root, num_shards=args.shards, data_dir=args.data_dir,
                          cache_root=args.cache_root, overrides=overrides, runner=args.runner)
        print(f"local pipeline run finished; artifacts under {args.pipeline_root}")
    else:
        if not args.host:
            raise SystemExit("lema pipeline submit needs --host URL")
        params = {}
        for item in args.param or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--param expects name=value, got {item!r}")
            params[key] = yaml.safe_load(value)
        run = kfp_cli.submit(args.host, config, overrides, params=params, run_name=args.run_name,
                             experiment=args.experiment, namespace=args.namespace, num_shards=args.shards,
                             gpu=args.gpu, cache_root=args.cache_root, package=args.package)
        print(f"submitted run {run.run_id}")
    return 0


def cmd_lab(args) -> int:
    from lema.lab.run import main_from_args

    return main_from_args(args, "lema lab")


def cmd_registry(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from lema.registry.store import history, tracking_uri

    cfg = _config(args)
    rows = history(tracking_uri(cfg.register_.tracking_uri, cfg.run_dir), cfg.register_.model_name)
    if args.json:
        print(json.dumps(rows))
        return 0
    table = Table(title=f"{cfg.register_.model_name}: promotion history")
    for col in ("version", "round", "parent", "variant", "aliases", "decision", "against", "p", "reason", "at"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["version"]), r.get("round") or "", r.get("parent") or "", r["variant"] or "",
                      ",".join(r["aliases"]), r["decision"] or "",
                      r["against"] or "", r["p_value"] or "", r["reason"] or "", r["at"] or "")
    Console().print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lema", description="Learning from Mistakes: collect, correct, "
                                     "validate, fine-tune, evaluate, register.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", default=None, help="YAML config (default: params.yaml)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.epochs=1")
        return p

    g = sub.add_parser("grade", help="grade a JSONL file of predictions")
    g.add_argument("--task", required=True, choices=["gsm8k", "math", "lab", "time", "text"])
    g.add_argument("--min-decimals", type=int, default=2, help="decimal rule: a prediction with at least this many "
                   "decimals matches a longer decimal gold rounded to them (-1: exact only)")
    g.add_argument("file")
    g.add_argument("--out", default=None, help="write each row with `correct` and `pred_answer`")
    g.set_defaults(fn=cmd_grade)

    from lema.stages import STAGES

    parsers = {}
    for st in STAGES:  # one subcommand per declared stage
        p = with_config(sub.add_parser(st.name, help=(st.fn.__doc__ or f"run the {st.name} stage").split("\n")[0]))
        if st.variants:
            p.add_argument("--variant", action="append", choices=list(st.variants))
        p.add_argument("--round", type=int, default=1, help="which round's instance (rounds: N in the config)")
        p.set_defaults(fn=cmd_stage, variant=None)
        parsers[st.name] = p
    v = parsers["validate"]  # ... which also validates any paths/sft file
    v.add_argument("--kind", choices=["corrections", "paths", "sft"], default="corrections")
    v.add_argument("--input")
    v.add_argument("--output")
    v.add_argument("--quarantine")
    v.set_defaults(fn=cmd_validate)

    c = parsers["correct"]  # ... which also corrects any JSONL of wrong paths
    c.add_argument("--corrector", choices=["reference", "llm", "hybrid"])
    c.add_argument("--input", help="JSONL with id, task, question, gold_solution, gold_answer, path, generator")
    c.add_argument("--output")
    c.add_argument("--quarantine")
    c.add_argument("--model", help="corrector model (llm/hybrid)")
    c.add_argument("--cache-dir")
    c.set_defaults(fn=cmd_correct)

    r = with_config(sub.add_parser("run", help="all stages; unchanged stages are skipped"))
    r.add_argument("--force", action="store_true", help="rerun every stage")
    r.set_defaults(fn=cmd_run)

    d = with_config(sub.add_parser("dvc", help="generate dvc.yaml from the stage declaration"))
    d.add_argument("action", choices=["generate"])
    d.add_argument("--out", default="dvc.yaml")
    d.set_defaults(fn=cmd_dvc)

    from lema.lab.run import add_arguments as lab_arguments

    lab = sub.add_parser("lab", help="LeMa's claims and LeMa in rounds on a synthetic task (tiny model; CPU or GPU)")
    lab_arguments(lab)
    lab.set_defaults(fn=cmd_lab)

    g = with_config(sub.add_parser("registry", help="model registry: promotion history"))
    g.add_argument("action", choices=["history"])
    g.add_argument("--json", action="store_true")
    g.set_defaults(fn=cmd_registry)

    k = with_config(sub.add_parser("pipeline", help="Kubeflow: compile, run locally, or submit to a cluster"))
    k.add_argument("action", choices=["compile", "run", "submit"])
    k.add_argument("--out", default="pipelines/lema_pipeline.yaml")
    k.add_argument("--shards", type=int, default=2)
    k.add_argument("--gpu", action="store_true", help="collect/train/evaluate on the CUDA image with one GPU each")
    k.add_argument("--local", action="store_true", help="run here with kfp.local (see --runner)")
    k.add_argument("--runner", choices=["subprocess", "docker"], default="subprocess",
                   help="--local: SubprocessRunner (this venv) or DockerRunner (every task in the lema-cpu image)")
    k.add_argument("--pipeline-root", default="runs/kfp-local")
    k.add_argument("--data-dir", default="data")
    k.add_argument("--cache-root", default=None, help="corrector cache (default: the mount path of the "
                   "kubeflow.cache_pvc volume; for --local: PIPELINE_ROOT/cache)")
    k.add_argument("--host", help="KFP API endpoint for submit (token of a multi-user deployment: "
                   "$KF_PIPELINES_TOKEN)")
    k.add_argument("--run-name", default=None, help="submit: the run's name (default: lema-<run_dir name>)")
    k.add_argument("--experiment", default=None, help="submit: KFP experiment (default: register.experiment)")
    k.add_argument("--namespace", default=None, help="submit: where the run's pods start (default: kubeflow.namespace of the config, `lema`)")
    k.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="submit: a pipeline parameter, e.g. min_accuracy=0.3")
    k.add_argument("--package", default=None, help="submit: also keep the compiled YAML at this path")
    k.set_defaults(fn=cmd_pipeline)

    args = parser.parse_args(argv)
    from lema.jsonl import DataError
    from lema.orchestration.lock import RunDirBusy
    from lema.stages.validate.validate import ValidationFailed

    try:
        return args.fn(args)
    except (DataError, FileNotFoundError, ValueError, ValidationFailed, RunDirBusy) as e:
        print(f"lema {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
