"""Container images the components run in (built from images/Dockerfile.cpu and images/Dockerfile.cuda)."""

import os

REGISTRY = os.environ.get("LEMA_IMAGE_REGISTRY", "ghcr.io/lema-mlops")
VERSION = "0.1.0"
CPU_IMAGE = f"{REGISTRY}/lema-cpu:{VERSION}"
CUDA_IMAGE = f"{REGISTRY}/lema-cuda:{VERSION}"
# Dockerfile each image is built from (checked by tests/test_orchestration.py).
DOCKERFILES = {CPU_IMAGE: "images/Dockerfile.cpu", CUDA_IMAGE: "images/Dockerfile.cuda"}
