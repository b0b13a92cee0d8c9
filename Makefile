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

.PHONY: quickstart test test-fast lint ruff venv browser clean-quickstart

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch comes from pip (pip's configuration here points at the CPU wheel on disk; uv reads none of it), everything
# else from uv, which downloads and installs in parallel and byte-compiles what it installed; what pip put
# there (torch, sympy, networkx, ...) is then compiled on all cores. Every .pyc matters: with
# PYTHONDONTWRITEBYTECODE set, as on this machine, a process importing a module without one compiles it
# again (importing torch.export, as the model export does: 5.0 s of CPU without sympy's, 2.6 s with them).
# One torch test helper is 3.12 syntax and fails on 3.11, hence the ignored status.
# uv keeps the installed torch: pyproject.toml's range admits it. Measured on fresh clones, 2 cores, cold caches
# (2026-12-07): pip for all, compiling on one core 139 s; pip + compileall -j 0 105 s; this 58 s.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile torch==2.13.0 uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[dev]' \
		--config-settings editable_mode=compat
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m jobs.quickstart $(ARGS)

ruff: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint: ruff
	$(BIN)/mypy pipeline tdn

browser:
	.ci/ensure-chromium

# The project's own .pyc files, written once before the suite starts its 45 job processes and 230-odd Ray
# workers, many of which import the project: where PYTHONDONTWRITEBYTECODE is set, as on this machine, each
# would compile it again (about 0.2 s of CPU each, measured on jobs.train + tdn.training.loop).
# mypy (36 s on one core) runs beside the suite rather than before it: the suite's first minute, its Ray
# clusters and servers starting, leaves a third of the 2 cores idle (vmstat, 2026-12-08). Its report is
# printed after the suite's, and either failing fails the target.
test: ruff browser
	$(BIN)/python -m compileall -qq -j 0 jobs pipeline tdn tests benchmarks
	$(BIN)/mypy pipeline tdn > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q tests -n 2 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS); \
	tests=$$?; wait $$mypy; typed=$$?; echo "$(BIN)/mypy pipeline tdn"; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests -m "not integration and not slow" --durations=10 $(PYTEST_ARGS)

clean-quickstart:
	rm -rf quickstart
