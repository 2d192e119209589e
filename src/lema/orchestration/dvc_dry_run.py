"""`dvc repro --dry` on a fresh clone: DVC 3.x (3.67.1 included) asks its run cache about every stage it would
run, and the run cache hashes the stage's dependencies, so a dry run stops at the first stage whose input an
earlier stage makes ("No such file or directory", treeverse/dvc#9818).  The fix proposed upstream
(treeverse/dvc#11100) skips run-cache hashing when a dependency is missing; this module does the same, and only
that: a stage with a missing local dependency is "not in the run cache", which is what a real run concludes too.

`make venv` writes a one-line `.pth` file (`PTH_LINE`) into the environment, so every Python process there (`dvc`
included) runs `install()`: an import hook that patches `dvc.stage.cache` when DVC imports it, never before (a
process that does not use DVC pays for importing this module only)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

TARGET = "dvc.stage.cache"
PTH_NAME = "lema-dvc-dry-run.pth"
# A .pth line runs at every interpreter start: look before importing, so that a PYTHONPATH holding another lema
# (or none) starts quietly.
PTH_LINE = ("import importlib.util as u; u.find_spec('lema') and u.find_spec('lema.orchestration.dvc_dry_run') "
            "and __import__('lema.orchestration.dvc_dry_run', fromlist=['install']).install()\n")


def patch(module) -> None:
    """Wrap `_can_hash` so that a missing local dependency means "cannot hash" instead of an exception."""
    original = module._can_hash
    if getattr(original, "lema_dry_run", False):
        return

    def _can_hash(stage) -> bool:
        if any(dep.protocol == "local" and dep.def_path and not dep.exists for dep in stage.deps):
            return False
        return original(stage)

    _can_hash.lema_dry_run = True
    module._can_hash = _can_hash


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)          # let the normal finders locate DVC's module
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    """Patch DVC now if it is loaded, else when it is imported; idempotent."""
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def write_pth() -> str:
    """Put `PTH_LINE` into this interpreter's site-packages (`make venv` runs this module)."""
    import sysconfig
    from pathlib import Path

    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    path.write_text(PTH_LINE, encoding="utf-8")
    return str(path)


if __name__ == "__main__":
    print(f"dvc dry-run fix: {write_pth()}")
