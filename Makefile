# Two commands for a fresh machine: `make run` (the benchmark) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SPEC   ?= specs/default.yaml
OUT    ?= runs/latest

.PHONY: run test lint bench floor compile-golden clean install

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/orchbench run --spec $(SPEC) --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy orchbench results_schema steps pipelines serving

bench: $(STAMP)
	$(PY) benchmarks/serving_bench.py
	$(VENV)/bin/orchbench floor

golden: $(STAMP)
	ORCHBENCH_REGEN_GOLDEN=1 $(PY) -m pytest -q tests/test_pipelines_golden.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
