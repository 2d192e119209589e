"""``lema run``: the stage graph executed by DVC's own engine, one node at a time, so lema can show a
section per stage and a summary while DVC decides what is stale and owns the cache.

Which DVC project runs it:
- the repo-root project (checked-in ``dvc.yaml`` + ``params.yaml``) when ``lema run`` is given exactly that
  ``params.yaml`` with no overrides: ``make run`` and ``dvc repro`` then share one lock file and one cache;
- otherwise a project of its own in the run dir (a git repo, so ``dvc exp run`` and ``dvc exp show`` work
  there), whose ``params.yaml`` is the fully resolved config and whose ``dvc.yaml`` is generated from the same
  declaration; every path in it is relative to the run dir, and it has the enclosing project's remotes.

A run dir has one writer: ``lema run`` locks it (``lema.orchestration.lock``) before it writes anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from lema.config import Config, serialize
from lema.jsonl import write_json
from lema.orchestration import dvc as dvcgen
from lema.orchestration.lock import LOCK_FILE, run_dir_lock
from lema.records import StageReport
from lema.stages import Instance, descendants, instances

OnStage = Callable[[str, StageReport | None, bool], None]


def resolved_params(cfg: Config) -> dict:
    """The config as the stages of the run dir's own project read it: the recipe merged in (so every training
    value is a DVC param: `dvc exp run -S train.learning_rate=...`), paths relative to the run dir."""
    data = serialize.resolved(cfg)
    data["run_dir"] = "."
    data["data"]["dir"] = os.path.relpath(Path(cfg.data.dir).resolve(), cfg.run_path.resolve())
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
        digest = serialize.digest(cfg.model_dump(mode="json", by_alias=True), 8)
        return cfg.model_copy(update={"run_dir": f"{cfg.run_dir.rstrip('/')}-{digest}"})


# lema's own files in a run dir, kept out of its git repo (DVC ignores its outputs itself).
RUN_DIR_GITIGNORE = "\n".join(["/mlflow.db", "/mlartifacts/", "/mlruns/", "/checkpoints/", "/config.json",
                                f"/{LOCK_FILE}", "cache/", "adapter/", ""])


def run_project(cfg: Config) -> Path:
    """Create or refresh the run dir's own DVC project (a git repo, for `dvc exp`, with the enclosing project's
    remotes); returns its root.  Every path in it is relative to it."""
    from dvc.config import Config as DvcConfig
    from dvc.repo import Repo

    root = cfg.run_path.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        _git(root, "init", "-q")
        (root / ".gitignore").write_text(RUN_DIR_GITIGNORE)
    if not (root / ".dvc").is_dir():
        Repo.init(str(root))
    elif DvcConfig(dvc_dir=str(root / ".dvc"), validate=False).load_one("repo")["core"].get("no_scm"):
        with DvcConfig(dvc_dir=str(root / ".dvc")).edit("repo") as conf:  # a run dir made before it was git's
            del conf["core"]["no_scm"]
    _copy_remotes(Path.cwd(), root)
    params = yaml.safe_dump(resolved_params(cfg), sort_keys=False)
    if not (root / "params.yaml").exists() or (root / "params.yaml").read_text() != params:
        (root / "params.yaml").write_text(params)
    (root / "dvc.yaml").write_text(dvcgen.dump(cfg, root=False))
    return root


def _git(root: Path, *args: str) -> str:
    ident = [] if subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True).stdout.strip() \
        else ["-c", "user.name=lema", "-c", "user.email=lema@localhost"]
    return subprocess.run(["git", *ident, *args], cwd=root, check=True, capture_output=True, text=True).stdout


def _copy_remotes(outer: Path, root: Path) -> None:
    """The enclosing DVC project's remotes (and default) in a run dir's project that has none yet (DVC rewrites
    local URLs relative to the config file that holds them)."""
    from dvc.config import Config as DvcConfig

    if not (outer / ".dvc" / "config").exists() or outer.resolve() == root:
        return
    conf = DvcConfig(dvc_dir=str(outer / ".dvc"), validate=False).load_one("repo")
    if conf["remote"] and not DvcConfig(dvc_dir=str(root / ".dvc"), validate=False).load_one("repo")["remote"]:
        with DvcConfig(dvc_dir=str(root / ".dvc")).edit("repo") as mine:
            mine["remote"] = conf["remote"]
            if conf["core"].get("remote"):
                mine["core"]["remote"] = conf["core"]["remote"]


def commit_project(cfg: Config, root: Path) -> None:
    """Record the run in the run dir's git repo (dvc.yaml, params.yaml, dvc.lock, DVC's .gitignore files and
    the uncached metrics and plots): the baseline `dvc exp run` and `dvc exp show` compare against."""
    uncached = {n.fmt(m) for n in instances(cfg) for m in (*n.stage.metrics, *(p.path for p in n.stage.plots))}
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--modified", "-z").split("\0")
    files = [f for f in untracked if f and (f in {"dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"}
                                           or f.startswith(".dvc/") or f.endswith(".gitignore") or f in uncached)]
    if files:
        _git(root, "add", "--", *files)
    if _git(root, "status", "--porcelain", "--untracked-files=no").strip():
        _git(root, "commit", "-q", "-m", f"lema run ({cfg.run_dir})")


def _report(run_dir: Path, node: Instance) -> StageReport | None:
    f = run_dir / node.report
    return StageReport.model_validate_json(f.read_text()) if f.exists() else None


def run_all(cfg: Config, on_stage: OnStage | None = None, force: bool = False,
            config_path: str | Path | None = None, overrides: dict | None = None
            ) -> list[tuple[str, StageReport | None, bool]]:
    """Every node in order through DVC; returns (name, report, skipped) per node.  The run dir is locked
    first (RunDirBusy when another run holds it); one `dvc status` over the graph decides what may be stale,
    and only those nodes and their descendants go through ``Repo.reproduce``."""
    from dvc.repo import Repo

    run_dir = cfg.run_path.resolve()
    with run_dir_lock(run_dir):
        root = _root_project(cfg, config_path, overrides)
        project = root or run_project(cfg)
        # DVC runs each stage as a shell command (`lema <stage> ...`): the lema of this interpreter must be
        # found first, also when it was started as .venv/bin/lema without an activated venv (make run).
        bindir = str(Path(sys.executable).parent)
        if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        write_json(run_dir / "config.json", cfg.model_dump(mode="json", by_alias=True))
        nodes = instances(cfg)
        results = []
        with contextlib.chdir(project), Repo(str(project)) as repo:  # DVC resolves stage paths from the cwd
            todo = {n.name for n in nodes} if force else _stale_and_after(repo, cfg)
            for node in nodes:
                if on_stage:
                    on_stage(node.name, None, False)
                t0 = time.time()
                ran = node.name in todo and repo.reproduce(f"dvc.yaml:{node.name}", single_item=True, force=force)
                report = _report(run_dir, node) if ran else None
                if report is not None and not report.seconds:
                    report.seconds = time.time() - t0
                results.append((node.name, report, not ran))
                if on_stage:
                    on_stage(node.name, report, not ran)
        if root is None:
            commit_project(cfg, project)
    return results


def _stale_and_after(repo, cfg: Config) -> set[str]:
    """The nodes one `dvc status` reports as changed, and their descendants (which DVC then checks again,
    one by one, after their parents ran)."""
    changed = {k.split(":")[-1] for k in repo.status()}
    return set().union(*(descendants(name, cfg) for name in changed)) if changed else set()


def stale(project: str | Path) -> set[str]:
    """Names of the DVC stages that `dvc status` reports as changed."""
    from dvc.repo import Repo

    with contextlib.chdir(project), Repo(str(project)) as repo:
        return {k.split(":")[-1] for k in repo.status()}


def summary(cfg: Config) -> dict:
    return json.loads((cfg.run_path / "summary.json").read_text())
