"""Kubeflow Pipelines components, one per stage.

Each is a lightweight Python component whose base image is built from ``images/``
and whose body only calls ``lema.artifacts.run_stage`` (the same stage function
``lema run`` and DVC use).  Lightweight components also run under
``kfp.local.SubprocessRunner``, so the local pipeline run exercises them as they are.
"""

from .base_model import base_model
from .build_sft import build_sft
from .collect import collect, merge_collect
from .correct import correct, merge_correct
from .evaluate import evaluate
from .gate import gate
from .register import register
from .report import report
from .train import train
from .validate import validate

__all__ = ["base_model", "collect", "merge_collect", "correct", "merge_correct", "validate", "build_sft", "train",
           "evaluate", "gate", "register", "report"]
