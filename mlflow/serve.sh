#!/usr/bin/env bash
# MLflow tracking server + registry with a PostgreSQL backend store and a proxied artifact store.
#   MLFLOW_DB_URI                  postgresql://user:pass@host:5432/mlflow   (required)
#   MLFLOW_ARTIFACTS_DESTINATION   s3://bucket/prefix or a local path       (default: ./mlartifacts)
#   MLFLOW_HOST / MLFLOW_PORT      bind address                              (default: 127.0.0.1:5000)
set -euo pipefail
: "${MLFLOW_DB_URI:?set MLFLOW_DB_URI to the PostgreSQL backend store URI}"
exec mlflow server \
  --backend-store-uri "$MLFLOW_DB_URI" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}"
