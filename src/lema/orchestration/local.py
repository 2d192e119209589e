"""``lema run``: the stage graph executed by DVC's own engine, one node at a time, so lema can show a
section per stage and a summary while DVC decides what is stale and owns the cache.

Which DVC project runs it:
- the repo-root project (checked-in ``dvc.yaml`` + ``params.yaml``) when ``lema run`` is given exactly that
  ``params.yaml`` with no overrides: ``make run`` and ``dvc repro`` then share one lock file and one cache;
- otherwise a project of its own in the run dir (``dvc init --no-scm``), whose ``params.yaml`` is the fully
  resolved config and whose ``dvc.yaml`` is generated from the same declaration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from lema.config import Config
from lema.jsonl import write_json
from lema.orchestration import dvc as dvcgen
from lema.records import StageReport
from lema.stages import Instance, instances

OnStage = Callable[[str, StageReport | None, bool], None]


def resolved_params(cfg: Config) -> dict:
    """The config as the stages read it: recipe merged in, run and data dirs absolute."""
    data = cfg.model_dump(mode="json", by_alias=True)
    data["train"].pop("recipe", None)
    data["run_dir"] = str(Path(cfg.run_dir).resolve())
    data["data"]["dir"] = str(Path(cfg.data.dir).resolve())
    return data


def _root_project(cfg: Config, config_path: str | Path | None, overrides: dict | None) -> Path | None:
    """The enclosing repo-root project when this run is exactly its params.yaml; error on a clash."""
    root = Path.cwd()
    if not ((root / ".dvc").is_dir() and (root / "dvc.yaml").exists() and (root / "params.yaml").exists()):
        return None
    root_params = yaml.safe_load((root / "params.yaml").read_text()) or {}
    same_dir = (root / root_params.get("run_dir", "runs/default")).resolve() == cfg.run_path.resolve()
    same_file = Path(config_path or "params.yaml").resolve() == (root / "params.yaml").resolve()
    if same_dir and same_file and not overrides:
        return root
    if same_dir:
        raise ValueError(f"run_dir {cfg.run_dir} belongs to ./dvc.yaml (params.yaml); a run with another config "
                         "or --set overrides needs its own run_dir, e.g. --set run_dir=runs/mine")
    return None


def keyed_run_dir(cfg: Config, config_path: str | Path | None, overrides: dict | None) -> Config:
    """A run that is not exactly ./params.yaml but would write into its run dir (``make run ARGS="--set ..."``)
    gets a run dir of its own, named after its config, so it never overwrites the outputs ``dvc repro`` owns."""
    try:
        _root_project(cfg, config_path, overrides)
        return cfg
    except ValueError:
        digest = hashlib.sha256(json.dumps(cfg.model_dump(mode="json", by_alias=True), sort_keys=True).encode())
        return cfg.model_copy(update={"run_dir": f"{cfg.run_dir.rstrip('/')}-{digest.hexdigest()[:8]}"})


def run_project(cfg: Config) -> Path:
    """Create or refresh the run dir's own DVC project; returns its root."""
    from dvc.repo import Repo

    root = cfg.run_path.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".dvc").is_dir():
        Repo.init(str(root), no_scm=True)
    params = yaml.safe_dump(resolved_params(cfg), sort_keys=False)
    if not (root / "params.yaml").exists() or (root / "params.yaml").read_text() != params:
        (root / "params.yaml").write_text(params)
    (root / "dvc.yaml").write_text(dvcgen.dump(cfg, root=False))
    return root


def _report(run_dir: Path, node: Instance) -> StageReport | None:
    f = run_dir / node.report
    return StageReport.model_validate_json(f.read_text()) if f.exists() else None


def run_all(cfg: Config, on_stage: OnStage | None = None, force: bool = False,
            config_path: str | Path | None = None, overrides: dict | None = None
            ) -> list[tuple[str, StageReport | None, bool]]:
    """Every node in order through ``Repo.reproduce``; returns (name, report, skipped) per node."""
    from dvc.repo import Repo

    project = _root_project(cfg, config_path, overrides) or run_project(cfg)
    os.environ.setdefault("LEMA_HOME", str(Path.cwd()))  # stages run in the project: provenance (git) from here
    # DVC runs each stage as a shell command (`lema <stage> ...`): the lema of this interpreter must be found
    # first, also when it was started as .venv/bin/lema without an activated venv (make run).
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    run_dir = cfg.run_path.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", cfg.model_dump(mode="json", by_alias=True))
    results = []
    with contextlib.chdir(project), Repo(str(project)) as repo:  # DVC resolves stage paths from the cwd
        for node in instances(cfg):
            if on_stage:
                on_stage(node.name, None, False)
            t0 = time.time()
            ran = repo.reproduce(f"dvc.yaml:{node.name}", single_item=True, force=force)
            report = _report(run_dir, node) if ran else None
            if report is not None and not report.seconds:
                report.seconds = time.time() - t0
            results.append((node.name, report, not ran))
            if on_stage:
                on_stage(node.name, report, not ran)
    return results


def stale(project: str | Path) -> set[str]:
    """Names of the DVC stages that `dvc status` reports as changed."""
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo:
        return {k.split(":")[-1] for k in repo.status()}


def summary(cfg: Config) -> dict:
    return json.loads((cfg.run_path / "summary.json").read_text())
