"""A stage's code, derived, never hand-listed: the static import closure of its package (lema-internal imports,
function-local ones included, with the ``__init__`` of every package on the way) plus the data files those
modules read (``x.py`` reads its sibling folder ``x/``, e.g. ``prompts.py`` -> ``prompts/*.yaml``)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import lema

SRC = Path(lema.__file__).resolve().parent  # the lema package folder (src/lema in a checkout)


def _file(module: str) -> Path | None:
    """The source file of a lema module (a package's ``__init__.py``), None for what is not lema's."""
    parts = module.split(".")
    if parts[0] != "lema":
        return None
    base = SRC.joinpath(*parts[1:])
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.is_file():
            return f
    return None


def _module(file: Path) -> str:
    rel = file.relative_to(SRC).with_suffix("")
    parts = ["lema", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(file: Path) -> set[str]:
    """Every module name an ``import`` anywhere in `file` may load (``from a import b``: ``a`` and ``a.b``)."""
    package = _module(file) if file.name == "__init__.py" else _module(file).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def closure(package: str) -> tuple[Path, ...]:
    """The files of every lema module `package` (``lema.stages.<name>``, all its modules) can import, sorted."""
    folder = SRC.joinpath(*package.split(".")[1:])
    todo = [f for m in _with_parents(package) if (f := _file(m))] + list(folder.rglob("*.py"))
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [g for name in _imported(f) for m in _with_parents(name) if (g := _file(m)) and g not in seen]
    return tuple(sorted(seen))


def _files(folder: Path) -> set[Path]:
    return {f for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts}


def code_files(package: str) -> set[Path]:
    """Every file `package`'s code consists of: its modules' closure and the data folders they read."""
    out = set(closure(package))
    for f in closure(package):
        data = f.with_suffix("")
        if f.name != "__init__.py" and data.is_dir() and not (data / "__init__.py").exists():
            out |= _files(data)
    return out


def code_paths(package: str) -> list[Path]:
    """`package`'s code as DVC deps: a folder where all of it is code of the stage, else single files."""
    files = code_files(package)

    def whole(d: Path) -> bool:
        return _files(d) <= files

    out: list[Path] = []
    for f in sorted(files):
        top = f
        while top.parent != SRC.parent and whole(top.parent):
            top = top.parent
        if top not in out:
            out.append(top)
    return out
