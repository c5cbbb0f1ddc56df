# Two commands for a fresh machine: `make run` (the benchmark) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SPEC   ?= specs/default.yaml
OUT    ?= runs/latest
# KServe's Python model server (local.model_server: kserve) runs from its own virtual environment:
# kserve's pins (protobuf < 7, psutil < 6) clash with orchbench's. Built from PyPI on demand.
KSERVE_VENV ?= $(VENV)-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.orchbench-kserve
export ORCHBENCH_KSERVE_VENV := $(abspath $(KSERVE_VENV))

.PHONY: run test test-full lint bench floor compile-golden clean install kserve-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(KSERVE_STAMP): orchbench/core/platform/kserve_local.py | $(STAMP)
	$(PY) -m orchbench.core.platform.kserve_local --venv $(KSERVE_VENV)
	@touch $(KSERVE_STAMP)

kserve-venv: $(KSERVE_STAMP)

run: $(STAMP)
	$(VENV)/bin/orchbench run --spec $(SPEC) --out $(OUT)

test: $(STAMP) $(KSERVE_STAMP)
	$(PY) -m pytest -q -m "not full" --durations=25

# every test, the full fault matrices included (another ~10 minutes here)
test-full: $(STAMP) $(KSERVE_STAMP)
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
	rm -rf $(VENV) $(KSERVE_VENV) $(KSERVE_VENV).lock $(KSERVE_VENV)-build.log build *.egg-info .pytest_cache .mypy_cache .ruff_cache
