# Two commands do all set-up on a fresh machine:
#   make run   - the whole LeMa loop on the embedded default model (creates .venv first)
#   make test  - every test (creates .venv first)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lema-installed
CONFIG ?= params.yaml
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test venv bench lint clean compile

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (CPU torch 2.13.0 wheels are cp311)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps -r requirements.lock
	@# PyPI torchvision/torchaudio/torchcodec break `import vllm` next to the CPU torch wheel.
	-$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, vllm, trl, mlflow, kfp, great_expectations, lema; print('environment ok: torch', torch.__version__)"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lema run --config $(CONFIG) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/corrector.py

clean:
	rm -rf runs .pytest_cache
