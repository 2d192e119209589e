# Two commands do all set-up on a fresh machine:
#   make run   - the whole LeMa loop on the embedded default model (creates .venv first)
#   make test  - every test that needs no Docker (creates .venv and .venv-tools first)
# make test-containers runs the rest (the images built once by `make images`, then the tests that run them).
# Environments are built with uv from the package index (see BENCHMARKS.md, "Environment set-up").
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lema-installed
# Tool venv: uv itself plus the linters (checkov, kubernetes-validate, yamllint), whose pins clash with the lock.
TOOLS  ?= .venv-tools
UV     := $(TOOLS)/bin/uv
TOOLS_STAMP := $(TOOLS)/.tools-installed
CONFIG ?= params.yaml
ARGS ?=
PYTEST_ARGS ?=

# uv must see the same indexes as pip on this machine (pip config: index-url, extra-index-url, find-links).
PIP_CFG = $(shell $(PYTHON) -m pip config get global.$(1) 2>/dev/null)
INDEX_URL    := $(or $(PIP_INDEX_URL),$(call PIP_CFG,index-url))
EXTRA_INDEXES := $(or $(PIP_EXTRA_INDEX_URL),$(call PIP_CFG,extra-index-url))
FIND_LINKS   := $(or $(PIP_FIND_LINKS),$(call PIP_CFG,find-links))
UV_INDEX_ARGS := --index-strategy unsafe-best-match $(if $(INDEX_URL),--index-url $(INDEX_URL)) \
	$(foreach u,$(EXTRA_INDEXES),--extra-index-url $(u)) $(foreach l,$(FIND_LINKS),--find-links $(l))
export UV_PYTHON_DOWNLOADS := never
# Same platform flags as the locks were compiled for.
LOCK_FLAGS := --python-platform x86_64-manylinux_2_28 --no-header --no-annotate

.PHONY: run test test-containers venv tools bench lint locks clean generate uv-index-args base-image images image-cuda image-tags infra-images stack stack-down

$(TOOLS_STAMP): images/locks/tools.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "$$(grep '^uv==' images/locks/tools.lock)"
	$(UV) pip install -q --python $(TOOLS)/bin/python $(UV_INDEX_ARGS) -r images/locks/tools.lock
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

$(STAMP): requirements.lock pyproject.toml src/lema/orchestration/dvc_dry_run.py | $(TOOLS_STAMP)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (CPU torch 2.13.0 wheels are cp311)"; exit 1; }
	$(UV) venv -q --allow-existing --seed --python $(PYTHON) $(VENV)
	@# The lock is the whole closure (tests/test_infra.py proves it), so no resolution happens here.
	@# --compile-bytecode: as pip does; without it every import recompiles when PYTHONDONTWRITEBYTECODE is set.
	$(UV) pip install -q --python $(BIN)/python $(UV_INDEX_ARGS) --no-deps --compile-bytecode -r requirements.lock
	@# PyPI torchvision/torchaudio/torchcodec break `import vllm` next to the CPU torch wheel.
	-$(UV) pip uninstall -q --python $(BIN)/python torchvision torchaudio torchcodec 2>/dev/null
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	@# `dvc repro --dry` on a fresh clone (treeverse/dvc#9818): src/lema/orchestration/dvc_dry_run.py says how.
	$(BIN)/python -m lema.orchestration.dvc_dry_run
	$(BIN)/python -c "import torch, vllm, trl, mlflow, kfp, great_expectations, boto3, lema; print('environment ok: torch', torch.__version__)"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/lema run --config $(CONFIG) $(ARGS)

# Two pytest-xdist workers (tests/conftest.py groups the tests that share a tiny run, a module fixture or Docker);
# WORKERS=0 runs in one process.
WORKERS ?= 2
PYTEST := LEMA_TOOLS_VENV=$(abspath $(TOOLS)) LEMA_UV_INDEX_ARGS="$(UV_INDEX_ARGS)" $(BIN)/python -m pytest -q -rfEs \
	--durations=25 -n $(WORKERS) $(if $(filter-out 0,$(WORKERS)),--dist loadgroup)

# MARKERS= (empty) runs every test in one session (CI: the shared tiny run is made once).
MARKERS ?= not container
test: $(STAMP) $(TOOLS_STAMP)
	$(PYTEST) $(if $(MARKERS),-m "$(MARKERS)") $(PYTEST_ARGS)

# The container tier (marker `container`): Docker running, the images built once, then every test that runs them.
test-containers: $(STAMP) $(TOOLS_STAMP) images
	LEMA_REQUIRE_DOCKER=1 $(PYTEST) -m container $(PYTEST_ARGS)

# Regenerate both locks from pyproject.toml (existing pins are kept where they still resolve).
locks: $(TOOLS_STAMP)
	$(UV) pip compile -q pyproject.toml images/locks/cpu.in --extra ops --extra test \
	  --overrides images/locks/cpu-overrides.txt --python-version 3.11 $(LOCK_FLAGS) $(UV_INDEX_ARGS) \
	  -o requirements.lock
	$(UV) pip compile -q pyproject.toml images/locks/cuda.in --extra vllm --extra qlora --extra ops \
	  --python-version 3.11 $(LOCK_FLAGS) $(UV_INDEX_ARGS) -o requirements-cuda.lock.new
	@# Compiled fresh: with the old CUDA lock as preferences uv 0.13.8 can fail to find a torchvision wheel.
	mv requirements-cuda.lock.new requirements-cuda.lock
	@sed -i '1i # CPU environment and images/Dockerfile.cpu: `make locks` (uv pip compile of pyproject.toml [ops,test] + images/locks/cpu.in).\n# torchvision/torchaudio/torchcodec are dropped on purpose (images/locks/cpu-overrides.txt).' requirements.lock
	@sed -i '1i # images/Dockerfile.cuda (linux x86_64, CUDA, Python 3.11): `make locks` (uv pip compile of pyproject.toml [vllm,qlora,ops] + images/locks/cuda.in).' requirements-cuda.lock

# ---- container images (README "Containers"); tags from src/lema/orchestration/images.py (lock + source hashes) ----
IMAGE_TAG = $(shell $(PYTHON) src/lema/orchestration/images.py $(1))
# CUDA base: any Debian/Ubuntu image whose apt has python3.11 (the CUDA lock's Python); the CUDA libraries come
# with the torch/nvidia wheels and the NVIDIA runtime injects the driver.  Default: the offline Debian base.
# With a registry: make image-cuda CUDA_BASE=debian:bookworm-slim (or your mirror of it).
CUDA_BASE ?= $(call IMAGE_TAG,lema-base)

image-tags:
	@$(PYTHON) src/lema/orchestration/images.py

# The kustomize image tags (infra/images/tags.yaml, a transformer of infra/base and the overlays): the manifests run
# the images `make images` builds.  Rerun after changing a lock or the sources (tests/test_orchestration.py).
infra-images:
	$(PYTHON) src/lema/orchestration/images.py --kustomize > infra/images/tags.yaml

# Every generated file a source, lock or config change can make stale (the staleness tests check each one).
generate: $(STAMP) infra-images
	$(BIN)/lema dvc generate
	$(BIN)/lema pipeline compile

# No registry needed: bootstrap the Debian base offline (debootstrap from the apt mirror), once per script version.
base-image:
	@docker image inspect $(call IMAGE_TAG,lema-base) >/dev/null 2>&1 || nice images/base-image.sh $(call IMAGE_TAG,lema-base)

images: base-image
	PYTHON=$(PYTHON) images/build.sh lema-cpu
	PYTHON=$(PYTHON) images/build.sh lema-s3
	PYTHON=$(PYTHON) images/build.sh lema-postgres

image-cuda: $(if $(filter lema-base:%,$(CUDA_BASE)),base-image)
	PYTHON=$(PYTHON) BASE_IMAGE=$(CUDA_BASE) images/build.sh lema-cuda

# The production services as containers (infra/compose): PostgreSQL, S3 (moto), MLflow, vLLM; waits for health.
STACK_ENV = LEMA_CPU_IMAGE=$(call IMAGE_TAG,lema-cpu) LEMA_S3_IMAGE=$(call IMAGE_TAG,lema-s3) \
	LEMA_POSTGRES_IMAGE=$(call IMAGE_TAG,lema-postgres)
COMPOSE = docker-compose -f infra/compose/docker-compose.yaml

stack: images
	@test -f infra/compose/.env || { cp infra/compose/example.env infra/compose/.env; \
	  echo "created infra/compose/.env from example.env: change its secrets"; }
	$(STACK_ENV) $(COMPOSE) up -d
	$(STACK_ENV) infra/compose/wait-healthy.sh

stack-down:
	$(STACK_ENV) $(COMPOSE) down

uv-index-args:
	@echo $(UV_INDEX_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/corrector.py

clean:
	rm -rf runs .pytest_cache
