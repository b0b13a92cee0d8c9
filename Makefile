# Two commands on a fresh machine:
#   make quickstart   set up .venv, then run the whole pipeline end to end on embedded defaults
#   make test         set up .venv, then lint (ruff check + format check, mypy) and the whole test suite
# torch==2.13.0 is installed before the project so pip never resolves a CUDA build of several GB.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint venv clean-quickstart

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

test: lint
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

clean-quickstart:
	rm -rf quickstart
