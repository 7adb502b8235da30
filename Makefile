# p3m-lightning: every target installs what it needs into ./.venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format bench bench-gpu clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create ./.venv and install the package with its test and dev extras

train: $(STAMP) ## Train on the embedded default data (CPU, a few minutes)
	$(PY) train.py

test: $(STAMP) ## Run the whole test suite (what CI runs)
	$(PY) -m pytest

test-fast: $(STAMP) ## Run the tests without the slow ones
	$(PY) -m pytest -m "not slow"

lint: $(STAMP) ## Lint and check formatting with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Format and fix with ruff
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP) ## Print speed figures (model, metrics, data, prediction, training step)
	$(PY) -m p3m_lightning.bench

bench-gpu: $(STAMP) ## GPU training/prediction figures to bench_gpu.json (a CPU dry run without CUDA)
	$(PY) -m p3m_lightning.bench gpu

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
