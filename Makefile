# Two commands on a fresh machine:
#   make quickstart   set up .venv, then run the whole pipeline end to end on embedded defaults
#   make test         set up .venv (and Chromium), then lint (ruff check + format check, mypy) and the whole
#                     test suite, what CI runs (.ci/run)
#   make test-fast    the inner loop: ruff, then the unit tests but the slow ones (no Ray, no servers;
#                     tests/tiers.py)
# torch==2.13.0 is installed before the project so pip never resolves a CUDA build of several GB.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-fast lint venv browser clean-quickstart

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m jobs.quickstart $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipeline tdn

browser:
	.ci/ensure-chromium

test: lint browser
	$(BIN)/python -m pytest -q tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests -m "not integration and not slow" --durations=10 $(PYTEST_ARGS)

clean-quickstart:
	rm -rf quickstart
