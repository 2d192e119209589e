"""Checks a run's inputs before its first stage: the CLI calls `preflight` so that a bad eval set fails in
seconds, naming file, line and field, instead of minutes later inside a stage."""

from __future__ import annotations

from pathlib import Path

from lema.config.schema import Config, EvalSetConfig


class PreflightError(ValueError):
    """What is wrong with a run's inputs, one line per problem."""


def check_eval_sets(cfg: Config, data_dir: str | Path | None = None) -> list[str]:
    """Load every configured eval set as the stages will (the rows evaluation uses, the questions the leakage
    check reads); returns one line per set ("name: n rows (k skipped: lines ...)"), raises PreflightError."""
    from lema.data import HUB_SPLITS, load_eval_set
    from lema.jsonl import DataError

    notes, errors = [], []
    data_dir = data_dir or cfg.data.dir
    for name, spec in cfg.data.eval_sets.items():
        if not isinstance(spec, EvalSetConfig) and cfg.data.source == "hub" and name in HUB_SPLITS:
            notes.append(f"{name}: from the hub (read by the stages; not checked here)")
            continue
        if isinstance(spec, EvalSetConfig) and spec.path is not None and not Path(spec.path).is_file():
            errors.append(f"data.eval_sets.{name}.path: file not found: {spec.path}")
            continue
        if isinstance(spec, EvalSetConfig) and spec.hub is not None:
            notes.append(f"{name}: hub dataset {spec.hub} (read by the stages; not checked here)")
            continue
        skipped: list[tuple[int, str]] = []
        try:
            used = load_eval_set(name, spec, cfg.data.source, data_dir, skipped=skipped)
            if isinstance(spec, EvalSetConfig) and spec.limit is not None:
                load_eval_set(name, spec, cfg.data.source, data_dir, full=True)  # leakage check: all questions
        except (DataError, FileNotFoundError, ValueError) as e:
            errors.append(str(e))
            continue
        line = f"{name}: {len(used)} rows"
        if skipped:
            shown = ", ".join(str(n) for n, _ in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
            line += f", {len(skipped)} skipped (on_invalid: skip; lines {shown})"
        notes.append(line)
    if errors:
        raise PreflightError("\n".join(errors))
    return notes


def preflight(cfg: Config, data_dir: str | Path | None = None) -> list[str]:
    """Everything a run reads that can be checked without running a stage (the config itself was validated
    when it loaded: keys, types, value ranges)."""
    return check_eval_sets(cfg, data_dir)
