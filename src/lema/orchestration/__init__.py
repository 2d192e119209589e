"""Orchestration adapters, side by side, all generated from ``lema.stages``: ``dvc`` (dvc.yaml),
``local`` (``lema run`` through DVC's engine) and ``kfp`` (the Kubeflow pipeline and its components)."""
