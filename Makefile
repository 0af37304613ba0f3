# One entry point for a fresh machine. `make demo` sets up and runs the demo search;
# `make test` sets up and runs the test suite (what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUDGET ?= 200
PYTEST_ARGS ?=

.PHONY: setup demo test clean

$(BIN)/srnas: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $(BIN)/srnas

setup: $(BIN)/srnas

demo: setup
	$(BIN)/srnas search --budget $(BUDGET)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
