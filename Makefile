# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml setup.py transport/_fastwire.c streams/_speedups.c
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rillet run

lint: $(STAMP)
	$(BIN)/ruff check streams transport tests examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q --cov --cov-report=term

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_pipeline.py
	$(BIN)/python tests/benchmarks/bench_sinks.py

clean:
	rm -rf $(VENV) build *.egg-info
