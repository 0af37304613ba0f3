# One entry point for a fresh machine. `make demo` installs what the demo search needs (srnas and
# its base dependencies, no extras) and runs it; `make test` adds the extras the test suite needs
# and runs it (what .ci/run calls). pip's own output shows what is being downloaded and installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
BUDGET ?= 200
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (the tests that share PostgreSQL or SLURM run on one of them,
# tests/conftest.py); PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2

.PHONY: setup demo test lint browser slurm clean

$(BIN)/python:
	@echo ">>> creating the virtual environment $(VENV) ($(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"

# torch first, on its own line, pinned: its wheel is the large download (see README, "On a fresh machine").
$(VENV)/.demo-deps: $(BIN)/python pyproject.toml constraints.txt
	@echo ">>> installing PyTorch (pinned in constraints.txt; the first install downloads for minutes)"
	$(PIP) install -c constraints.txt torch
	@echo ">>> installing srnas and its base dependencies (Optuna, optuna-dashboard, scikit-image, ...)"
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.test-deps: $(VENV)/.demo-deps
	@echo ">>> installing the extras of the test suite: nni, export (onnx, onnxruntime), postgres, s3, tensorboard, test (moto)"
	$(PIP) install -c constraints.txt -e ".[all]"
	@touch $@

setup: $(VENV)/.demo-deps

demo: $(VENV)/.demo-deps
	@echo ">>> srnas search --budget $(BUDGET) (demo photographs, tiny space; re-run to resume)"
	$(BIN)/srnas search --budget $(BUDGET)

# The browser tests drive a headless Chromium (no browser download: the system's). Debian's is
# installed where none is found and apt-get can run; elsewhere those tests are skipped, with the reason.
CHROMIUM_FOUND = command -v chromium || command -v chromium-browser || command -v google-chrome
browser:
	@if ! { $(CHROMIUM_FOUND); } >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo ">>> installing chromium (Debian's) for the browser tests"; \
			{ DEBIAN_FRONTEND=noninteractive apt-get update -qq \
				&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
				|| echo ">>> chromium could not be installed: the browser tests will be skipped"; \
		else \
			echo ">>> no Chromium found (apt-get install chromium): the browser tests will be skipped"; \
		fi; \
	fi

# The SLURM tests (tests/test_slurm.py) submit examples/cluster/ to a one-node SLURM on 127.0.0.1:
# Debian's slurm-wlm and munge are installed where missing and apt-get can run, and .ci/slurm.sh
# starts the cluster (as root); elsewhere those tests are skipped, with the reason.
SLURM_DIR ?= /tmp/srnas-slurm
slurm:
	@if ! command -v slurmctld >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo ">>> installing slurm-wlm and munge (Debian's) for the SLURM tests"; \
			{ DEBIAN_FRONTEND=noninteractive apt-get update -qq \
				&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge procps >/dev/null; } \
				|| echo ">>> slurm-wlm could not be installed: the SLURM tests will be skipped"; \
		else \
			echo ">>> no SLURM (apt-get install slurm-wlm munge, as root): the SLURM tests will be skipped"; \
		fi; \
	fi
	@if command -v slurmctld >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo ">>> starting a one-node SLURM cluster on 127.0.0.1 (.ci/slurm.sh $(SLURM_DIR))"; \
		bash .ci/slurm.sh $(SLURM_DIR) >/dev/null || echo ">>> SLURM did not start: the SLURM tests will be skipped"; \
	fi

# The linter (ruff) and the type checker (mypy, over srnas/) first: settings in pyproject.toml.
lint: $(VENV)/.test-deps
	$(BIN)/ruff check srnas tests benchmarks examples
	$(BIN)/mypy

# SLURM_CONF: the test cluster's, unless one is set. The doctests of srnas/ run with the tests.
test: $(VENV)/.test-deps lint browser slurm
	if [ -z "$${SLURM_CONF:-}" ] && [ -f $(SLURM_DIR)/etc/slurm.conf ]; then export SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf; fi; \
		$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
