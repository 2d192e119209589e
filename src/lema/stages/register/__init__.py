"""Stage `register`: the shell over ``lema.registry`` (MLflow runs, versions, promotion)."""
