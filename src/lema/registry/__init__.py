"""The model registry: ``store`` (MLflow I/O), ``promote`` (the paired decision), ``card`` (model cards),
``provenance`` (code, data and lineage tags)."""
