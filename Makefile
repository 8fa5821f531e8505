# Two commands set up a fresh clone: `make demo` and `make test`. Both (re)create .venv when it
# is missing or when pyproject.toml changed (tracked by a stamp file).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv native native-optional browser-optional deploy-tools-optional demo test test-fast fuzz \
	protos lint contract-baseline bench bench-full clean compose-up compose-down

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

# The native online reader (C++, optional): the data service starts it when installed.
READER := $(VENV)/bin/atlas-online-reader
native: $(READER)

$(READER): $(STAMP) native/online_reader/online_reader.cc native/online_reader/build.sh \
		$(wildcard protos/atlas/data/v1/*.proto protos/atlas/common/v1/*.proto)
	PYTHON=$(PY) native/online_reader/build.sh build/native
	install -m 755 build/native/atlas-online-reader $@

# Without a C++ toolchain and grpc++ the services run on Python alone: not an error.
native-optional: $(STAMP)
	@$(MAKE) --no-print-directory native || echo ">> native online reader not built; online reads are served by Python"

# Headless Chromium for tests/browser, from Debian (Playwright cannot download browsers
# here). Installed as root with apt-get when missing; without it the browser tests skip.
CHROMIUM := /usr/bin/chromium
browser-optional:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing chromium (browser tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
	      || echo ">> chromium not installed: browser tests will be skipped"; \
	  else echo ">> $(CHROMIUM) missing and no apt-get as root: browser tests will be skipped"; fi; }

# tests/deploy: checkov in a venv of its own (its pins conflict with the dev extra's), and
# podman, buildah, runc and debootstrap (images built and run as pods). The Debian packages follow
# chromium's rule: installed as root with apt-get when missing; without them those tests skip.
CHECKOV := build/checkov/bin/checkov
$(CHECKOV):
	@$(PYTHON) -m venv build/checkov && build/checkov/bin/pip install -q 'checkov>=3.2,<4' \
	  || { rm -rf build/checkov; echo ">> checkov not installed: its test will be skipped"; }

deploy-tools-optional:
	@$(MAKE) --no-print-directory $(CHECKOV) || true
	@command -v podman >/dev/null && command -v buildah >/dev/null && command -v runc >/dev/null \
	  && command -v debootstrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing podman buildah runc debootstrap (deploy tests)"; \
	    export DEBIAN_FRONTEND=noninteractive; pkgs="podman buildah runc debootstrap"; \
	    apt-get install -y -q $$pkgs >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null && apt-get install -y -q $$pkgs >/dev/null; } \
	      || echo ">> podman not installed: the container tests will be skipped"; \
	  else echo ">> podman missing and no apt-get as root: the container tests will be skipped"; fi; }

# The whole suite on docker compose (or podman-compose): PostgreSQL, Redis, MinIO, every
# service, two serving replicas, the annotator UI. Credentials are generated once into
# deploy/compose/.env (git-ignored).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo podman-compose)
COMPOSE_ENV := deploy/compose/.env
$(COMPOSE_ENV):
	@umask 077; $(PYTHON) -c 'import secrets; t = secrets.token_urlsafe; \
	print("\n".join(f"{k}={v}" for k, v in [("POSTGRES_PASSWORD", t(18)), ("REDIS_PASSWORD", t(18)), \
	("ATLAS_S3_ACCESS_KEY", "atlas-" + secrets.token_hex(6)), ("ATLAS_S3_SECRET_KEY", t(24)), \
	("ATLAS_ADMIN_TOKEN", t(24)), ("ATLAS_WEB_SESSION_SECRET", t(32))]))' > $@
	@echo ">> generated credentials in $@ (admin token: ATLAS_ADMIN_TOKEN)"

compose-up: $(COMPOSE_ENV)
	cd deploy/compose && $(COMPOSE) up -d --build

compose-down:
	cd deploy/compose && $(COMPOSE) down

demo: $(STAMP) native-optional
	$(PY) demo/run.py

test: $(STAMP) native-optional browser-optional deploy-tools-optional
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) native-optional browser-optional deploy-tools-optional
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# A long fuzzing campaign over every RPC of the running suite and the parsers of user input,
# with fresh randomness (`make test` runs a short seeded one). FUZZ_EXAMPLES per RPC (~100
# RPCs) and per parser test.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP) native-optional
	ATLAS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ATLAS_FUZZ_RANDOM=1 \
	  $(PY) -m pytest -o timeout=3600 tests/integration/test_fuzz_rpcs.py \
	  $(wildcard tests/unit/*/test_fuzz_*.py) $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) -m atlas_core.tools.protos

# Format, lint, types and the contract: what CI and the pre-commit hooks run.
lint: $(STAMP)
	$(VENV)/bin/buf lint protos
	$(VENV)/bin/buf breaking --against protos/baseline.binpb
	$(VENV)/bin/ruff format --check src/atlas_core services tests bench demo
	$(VENV)/bin/ruff check src/atlas_core services tests bench demo
	$(PY) -m atlas_core.tools.protos --check
	$(PY) -m atlas_core.tools.errors_doc --check
	$(VENV)/bin/mypy

# The released contract that `buf breaking` compares against. Refresh it only on purpose: when a
# release ships, or for a service whose contract was never implemented.
contract-baseline: $(STAMP)
	$(VENV)/bin/buf build --exclude-source-info -o protos/baseline.binpb

# Quick versions of every benchmark (minutes; smoke runs, results not kept); `make bench-full`
# runs the full ones (long), writing bench/results/ (bench/README.md says how to accept a figure).
BENCHES := grpc_overhead data_online data_pit automl serving graph final_predict labeling_quality \
	lineage parallel deep chaos
bench: $(STAMP)
	@for b in $(BENCHES); do echo ">> bench/$$b.py --quick"; $(PY) bench/$$b.py --quick || exit 1; done

bench-full: $(STAMP)
	@for b in $(BENCHES); do echo ">> bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
