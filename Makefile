# Two commands set up a fresh clone: `make demo` and `make test`. Both (re)create .venv when it
# is missing or when pyproject.toml changed (tracked by a stamp file).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast protos lint bench bench-full clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo ">> creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing ATLAS and its dependencies into $(VENV)."
	@echo "   The first install downloads torch 2.2.1 (a CUDA build, about 2.5 GB) and its nvidia"
	@echo "   wheels: expect 3-6 minutes. pip prints each package as it goes."
	$(PY) -m pip install --upgrade --progress-bar on pip >/dev/null
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)
	@echo ">> $(VENV) ready"

demo: $(STAMP)
	$(PY) demo/run.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) -m atlas_core.tools.protos

lint: $(STAMP)
	$(VENV)/bin/buf lint protos
	$(VENV)/bin/ruff check src/atlas_core services tests bench demo
	$(PY) -m atlas_core.tools.protos --check

# Quick versions of every benchmark (minutes); `make bench-full` runs the full ones (long).
BENCHES := grpc_overhead data_online data_pit automl serving graph
bench: $(STAMP)
	@for b in $(BENCHES); do echo ">> bench/$$b.py --quick"; $(PY) bench/$$b.py --quick || exit 1; done

bench-full: $(STAMP)
	@for b in $(BENCHES); do echo ">> bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
