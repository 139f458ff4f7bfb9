# One command sets up and runs each job on a fresh clone with only Python 3.11 and pip.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test demo bench bench-quick lint typecheck mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP) $(BENCH_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check connex_async tests benchmarks examples tools
	$(BIN)/ruff format --check connex_async tests benchmarks examples tools

typecheck: $(STAMP)
	$(BIN)/mypy --strict connex_async

## make test: set up .venv, then ruff, mypy --strict and the whole pytest suite, on 4 xdist workers (most
## tests sleep; those marked `timing` all run on one worker, one at a time: tests/conftest.py).
PYTEST_WORKERS ?= 4
test: lint typecheck
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

## make mutate: break the package one line at a time (tools/breakages.toml, each in a scratch copy) and check
## that a listed test fails every time; prints what survived (~3 min). Not part of make test.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

## make demo: set up .venv, then poll a few hundred simulated sub-portfolios for ~15 s.
demo: $(STAMP)
	$(BIN)/connex-async demo --portfolios 300 --duration 15

## make bench: set up .venv with the bench extra, then run every benchmark (~8 min, each in a fresh interpreter); tables, JSON
## and plots go to benchmarks/results/ (latest.json, latest.md, *.png).
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

## make bench-quick: the same, tiny sizes and durations (< 30 s): a smoke run of every code path.
bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
