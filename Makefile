# crystaljax: set-up, main job and tests. On a fresh Debian machine:
#   make demo   installs everything, then runs the main job
#   make test   installs everything, then runs the default (fast) test suite
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
APT_PACKAGES := quantum-espresso cp2k-data python3-venv python3-dev build-essential
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# PyTorch for the chgnet package (CHGNet weights, reference tests): the CPU build, installed
# before the package so that chgnet's torch requirement is already met.
TORCH_VERSION ?= 2.13.0
# test processes (pytest-xdist; 0 = one process). Compilation is single-threaded: one per core.
TEST_WORKERS ?= 2

.PHONY: setup system python demo test test-all lint bench benchmark-table clean

setup: system python

# System packages: Quantum ESPRESSO (pw.x, and ld1.x, which generates the Na pseudopotential)
# and CP2K's GTH pseudopotential data.
system:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Python environment with the package (editable), CHGNet (torch CPU) and test tools.
python: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "crystaljax needs Python >= 3.11"'
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[test,mlip]"
	touch $@

demo: setup
	$(PY) -m crystaljax.training.main_job configs/main_job.yaml

test: setup lint
	$(PY) -m pytest -m "not slow" -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-all: setup lint
	$(PY) -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Style and common bugs (pyproject.toml [tool.ruff]); part of `make test`.
lint: setup
	$(PY) -m ruff check crystaljax scripts tests

bench: setup
	$(PY) scripts/bench_env.py

# The baseline results table (benchmarks/results.md + .png): every agent x property x cell.
benchmark-table: setup
	$(PY) scripts/benchmark_table.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
