"""Container images the components run in (tags decided in one place: lema.orchestration.images)."""

from lema.orchestration.images import CPU_IMAGE, CUDA_IMAGE, DOCKERFILES, REGISTRY, VERSION

__all__ = ["CPU_IMAGE", "CUDA_IMAGE", "DOCKERFILES", "REGISTRY", "VERSION"]
