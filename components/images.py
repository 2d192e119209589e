"""Container images the components run in (built from images/Dockerfile.cpu and images/Dockerfile.cuda)."""

from lema.orchestration.kfp import CPU_IMAGE, CUDA_IMAGE, DOCKERFILES, REGISTRY, VERSION

__all__ = ["CPU_IMAGE", "CUDA_IMAGE", "DOCKERFILES", "REGISTRY", "VERSION"]
