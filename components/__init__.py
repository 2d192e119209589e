"""Kubeflow components, one per stage: generated in the library (``lema.orchestration.kfp``) from the stage
declaration; this package only re-exports them (CPU images) for tools that look for ``components/``."""

from lema.orchestration.kfp import components as _components

_all = _components(gpu=False)
globals().update({name.replace("-", "_"): comp for name, comp in _all.items()})
__all__ = [name.replace("-", "_") for name in _all]
