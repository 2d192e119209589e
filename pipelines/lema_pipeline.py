"""The LeMa pipeline for Kubeflow Pipelines v2, built from the stage declaration by
``lema.orchestration.kfp.build_pipeline``.  Compile: ``lema pipeline compile`` (-> lema_pipeline.yaml);
run locally: ``lema pipeline run --local``; submit: ``lema pipeline submit --host URL``."""

from lema.orchestration.kfp import build_pipeline

__all__ = ["build_pipeline"]
