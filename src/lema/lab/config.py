"""The lab's settings (also `Config.lab`).  Defaults are the paper's protocol at a 2-core CPU's size: a
2-layer, width-64 Llama on word tokens, pretrained on 20k related problems (never the task), fine-tuned on
1000 CoT questions of the 2-3-step task with numbers up to 30."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from lema.lab.arms import ARMS

ArmName = Literal["cot", "lema", "cot_extra_tokens", "cot_extra_examples", "lema_no_expl", "lema_informative"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabModel(_Strict):
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_length: int = 192


class LabTrain(_Strict):
    epochs: float = 3.0
    learning_rate: float = 3e-3
    batch_size: int = 32
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0          # AdamW's decoupled weight decay (none by default)


class LabConfig(_Strict):
    """`lema lab`: LeMa's claims, and LeMa in rounds, on a synthetic task a tiny model learns on a CPU."""

    run_dir: str = "runs/lab"
    report_dir: str = "docs/lab"
    seeds: list[int] = [1, 2, 3]
    data_seed: int = 0                 # the same questions for every seed and arm
    n_pretrain: int = 20000            # related problems the base learns from (facts, one-step, other templates)
    n_train: int = 1000                # CoT questions every arm fine-tunes on; the generator samples on them
    n_collect: int = 300               # fresh questions per round from round 2 on
    n_extra: int = 3000                # CoT candidates for the matched extra-CoT arms
    n_test: int = 1000                 # pools are drawn in order: more test questions, other training ones
    min_steps: int = 2
    max_steps: int = 3
    max_number: int = 5
    max_value: int = 30
    distractors: float = 0.3
    model: LabModel = LabModel()
    pretrain: LabTrain = LabTrain()
    finetune: LabTrain = LabTrain(epochs=7.0, learning_rate=3e-3)
    temperature: float = 1.0           # sampling the generator's own paths
    samples: int = 2                   # paths per fresh question: <= 1 wrong one corrected, distinct right ones kept
    max_new_tokens: int = 60
    token_tolerance: float = 0.02      # matched arms: |tokens / LeMa's correction tokens - 1| <= this
    arms: list[ArmName] = list(ARMS)
    wrong_step_rates: list[float] = [0.25, 0.5]   # correctors naming a wrong step this often (one arm each)
    rounds: int = 2                    # LeMa in rounds (round 1 reuses the arms' data)
    bootstrap_iters: int = 2000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int = 0                   # parallel seed processes; 0 = one per seed on cuda (max 8), on a cpu
                                       # one per `threads` cores (2 on a 2-core machine)
    threads: int = 1                   # torch CPU threads per process (0 = torch default; 2 threads on a loaded
                                       # 2-core machine burned about 4x the CPU time of 1 on these tiny matrices)
    experiment: str = "lema-lab"
    tracking_uri: str | None = None    # MLflow, only when importable; default sqlite in run_dir

    def knobs(self) -> dict:
        return dict(min_steps=self.min_steps, max_steps=self.max_steps, max_number=self.max_number,
                    distractors=self.distractors, max_value=self.max_value)


QUICK = {"seeds": [1], "n_pretrain": 300, "n_train": 40, "n_collect": 40, "n_extra": 300, "n_test": 40,
         "max_steps": 3, "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                                   "max_length": 256},
         "pretrain": {"epochs": 1.0, "learning_rate": 3e-3, "batch_size": 32},
         "finetune": {"epochs": 1.0, "learning_rate": 1e-3, "batch_size": 32},
         "max_new_tokens": 50, "samples": 1, "rounds": 2, "bootstrap_iters": 200, "run_dir": "runs/lab-quick",
         "report_dir": "runs/lab-quick/report"}


def load_lab_config(path: str | Path | None = None, quick: bool = False, **overrides) -> LabConfig:
    """Defaults, then `--quick`, then a YAML file (its `lab:` section, or the whole file), then flags."""
    data: dict = dict(QUICK) if quick else {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping with a `lab:` section")
        data.update(loaded.get("lab", loaded))
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return LabConfig(**data)
    except Exception as e:
        raise ValueError(f"{path or 'lab settings'}: {e}") from e
