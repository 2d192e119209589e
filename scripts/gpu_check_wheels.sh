#!/usr/bin/env bash
# Wheels that scripts/gpu_check.sh needs on a CUDA PyTorch machine without network (which already has torch,
# transformers, peft and accelerate): trl and datasets for training, bitsandbytes for QLoRA, pydantic for the
# config, math-verify for grading.  Downloaded here for CPython 3.12 on x86_64 Linux into .whl/ (WHEEL_DIR);
# pins follow requirements.lock, except antlr4 (4.13.2, which math-verify's latex parser is built against)
# and bitsandbytes (CUDA only, so not in the CPU lock).  Install there with
#   pip install --no-deps .whl/*.whl && pip install --no-deps -e .
# EXTRA adds wheels the machine may lack, e.g. EXTRA="pyarrow==25.0.1 pandas==3.1.1" (about 55 MiB more).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="${WHEEL_DIR:-$here/.whl}"
pip="${PIP:-python -m pip}"
pin() {  # the exact pin of a package in requirements.lock
  local line
  line=$(grep -i -m1 -E "^$1==" "$here/requirements.lock") || { echo "gpu_check_wheels: $1 not in requirements.lock" >&2; exit 1; }
  echo "$line"
}
wheels=(
  "$(pin trl)" "$(pin datasets)" "$(pin dill)" "$(pin multiprocess)" "$(pin xxhash)"
  "$(pin math-verify)" "$(pin latex2sympy2_extended)" "antlr4-python3-runtime==4.13.2"
  "$(pin pydantic)" "$(pin pydantic_core)" "$(pin annotated-types)" "$(pin typing-inspection)"
  "bitsandbytes==0.50.2"
)
# shellcheck disable=SC2206
extra=(${EXTRA:-})
mkdir -p "$dest"
$pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform linux_x86_64 \
  -d "$dest" "${wheels[@]}" "${extra[@]}"
total=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "gpu_check_wheels: $(ls "$dest"/*.whl | wc -l) wheels, $((total / 1048576)) MiB in $dest"
