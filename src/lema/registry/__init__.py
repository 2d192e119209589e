"""The model registry: ``store`` (MLflow I/O), ``promote`` (the paired decision), ``card`` (model cards),
``provenance`` (code, data and lineage tags), ``datasets`` (MLflow dataset inputs) and ``serving`` (the pyfunc
serving contract)."""
