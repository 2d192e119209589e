"""lema: Learning from Mistakes (LeMa) as a reproducible MLOps pipeline."""

__version__ = "0.1.0"
