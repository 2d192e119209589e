"""Loading the one config object: YAML file < recipe < explicit values < `--set`, deep-merged, then validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lema.config.recipes import load_recipe
from lema.config.schema import Config, TrainConfig


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins key by key; nested mappings merge instead of replacing each other."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def drop_defaults(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Keys whose value differs from the model's default (nested models recursively).

    A params file that restates a default (`lora: {enabled: false}`) says nothing about the recipe, so it
    must not undo it; unknown keys are kept for validation to reject."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        field = model.model_fields.get(k)
        if field is None:
            out[k] = v
            continue
        ann = field.annotation
        if isinstance(v, dict) and isinstance(ann, type) and issubclass(ann, BaseModel):
            sub = drop_defaults(v, ann)
            if sub:
                out[k] = sub
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump()
        if v != default:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Config from YAML (``params.yaml`` when it exists), with dotted overrides (`--set`).

    Training layers merge deeply: TrainConfig defaults < recipe < the file's `train:` values that differ
    from the defaults < `--set` overrides (which always win, even when they restate a default)."""
    data: dict[str, Any] = {}
    if path is None and Path("params.yaml").exists():
        path = "params.yaml"
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    base_dir = Path(path).resolve().parent if path else Path.cwd()
    _absolute_eval_paths(data, base_dir)  # the file's relative eval-set paths: against the file's directory
    set_train: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
        if dotted.startswith("train."):
            t = set_train
            for p in parents[1:]:
                t = t.setdefault(p, {})
            t[leaf] = value
    _absolute_eval_paths(data, Path.cwd())  # what --set added: against the working directory
    return config_from_dict(data, Path(path).resolve().parent if path else None, str(path or "<defaults>"),
                            explicit_train=set_train, overrides=overrides)


def _absolute_eval_paths(data: dict[str, Any], base: Path) -> None:
    """Relative `data.eval_sets.<name>.path` values made absolute against `base`, so that every engine (stages
    run in the run dir, DVC, Kubeflow) reads the same file; DVC params then carry the absolute path."""
    sets = (data.get("data") or {}).get("eval_sets") if isinstance(data.get("data"), dict) else None
    for spec in (sets or {}).values() if isinstance(sets, dict) else ():
        if isinstance(spec, dict) and isinstance(spec.get("path"), str) and not Path(spec["path"]).is_absolute():
            spec["path"] = str((base / spec["path"]).resolve())


def _blame(loc: str, where: str, overrides: dict[str, Any] | None) -> str:
    """`--set KEY=VALUE` when the bad field came from an override, else the config file."""
    for key, value in (overrides or {}).items():
        if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
            return f"--set {key}={value!r}" if not isinstance(value, str) else f"--set {key}={value}"
    return where


def config_from_dict(data: dict[str, Any], base_dir: Path | None = None, where: str = "<config>",
                     explicit_train: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
                     ) -> Config:
    """Validate a config mapping, resolving `train.recipe` (relative to cwd, then to base_dir).

    With a recipe, the mapping's `train:` keys override it only where they differ from the defaults;
    `explicit_train` (the `--set train.*` values) overrides it unconditionally."""
    data = dict(data)
    train = data.get("train") or {}
    if isinstance(train, dict) and train.get("recipe"):
        recipe = load_recipe(train["recipe"], base_dir)
        own = drop_defaults({k: v for k, v in train.items() if k != "recipe"}, TrainConfig)
        data["train"] = deep_merge(deep_merge(recipe, own), explicit_train or {}) | {"recipe": train["recipe"]}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = []
        for x in e.errors():
            loc = ".".join(map(str, x["loc"]))
            lines.append(f"{_blame(loc, where, overrides)}: field '{loc}': {x['msg'].removeprefix('Value error, ')}")
        raise ValueError("invalid config\n" + "\n".join(lines)) from None
