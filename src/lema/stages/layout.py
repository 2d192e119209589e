"""The run-dir layout: where each stage's artifacts live (round 1 in the run dir, round r under rounds/<r>/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lema.config import Config

VARIANTS = ("cot", "lema")
BASE_DIR = "models/base"


def _artifact(stage: str, variant: str | None = None) -> str:
    """The directory the declaration (``lema.stages.graph``) gives `stage`: the one spelling of the layout."""
    from lema.stages.graph import BY_NAME

    return BY_NAME[stage].artifact.format(variant=variant)


@dataclass(frozen=True)
class Paths:
    """A round's artifact locations, resolved from the stage declaration: round 1 in the run dir itself, round
    r under ``rounds/<r>/``."""

    root: Path
    round: int = 1

    @property
    def dir(self) -> Path: return self.root / round_dir(self.round)
    @property
    def base_model(self) -> Path: return self.root / BASE_DIR
    @property
    def generator(self) -> Path: return self.dir / _artifact("champion")
    @property
    def collect(self) -> Path: return self.dir / _artifact("collect")
    @property
    def correct(self) -> Path: return self.dir / _artifact("correct")
    @property
    def validate(self) -> Path: return self.dir / _artifact("validate")
    @property
    def pool(self) -> Path: return self.dir / _artifact("pool")
    @property
    def sft(self) -> Path: return self.dir / _artifact("build-sft")
    def train(self, variant: str) -> Path: return self.dir / _artifact("train", variant)
    def model(self, variant: str) -> Path: return self.train(variant) / "model"
    def eval(self, variant: str) -> Path: return self.dir / _artifact("evaluate", variant)
    @property
    def register(self) -> Path: return self.dir / _artifact("register")
    @property
    def report(self) -> Path: return self.dir / _artifact("report")

    def file(self, rel: str, variant: str | None = None) -> Path:
        """A declared path of this round, spelled as the declaration spells it (``validate/valid.jsonl``,
        ``train/{variant}/loss.json``): a path no stage declares is an error, so nothing is written or read that
        DVC and Kubeflow do not know about."""
        from lema.stages.graph import DECLARED

        if rel not in DECLARED:
            raise KeyError(f"{rel!r} is not declared by any stage in lema.stages.graph")
        return self.dir / (rel.format(variant=variant) if variant else rel)

    def cumulative(self) -> tuple[Path, Path]:
        """(validated corrections, right paths) of every round up to this one."""
        if self.round == 1:
            return self.file("validate/valid.jsonl"), self.file("collect/right.jsonl")
        return self.file("pool/valid.jsonl"), self.file("pool/right.jsonl")


def paths(cfg: Config, rnd: int = 1) -> Paths:
    return Paths(cfg.run_path, rnd)


def round_dir(rnd: int) -> str:
    """A round's directory inside the run dir: round 1 is the run dir itself."""
    return "" if rnd == 1 else f"rounds/{rnd}/"


def pool_file(rnd: int, name: str) -> str:
    """Round `rnd`'s cumulative data file (valid.jsonl or right.jsonl); round 1's pool is its own outputs."""
    if rnd == 1:
        return {"valid.jsonl": "validate/valid.jsonl", "right.jsonl": "collect/right.jsonl"}[name]
    return f"{round_dir(rnd)}pool/{name}"
