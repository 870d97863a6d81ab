# One command sets everything up and runs the main job; one sets up and runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, CPU build from the local file, so nothing pulls another torch
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loopml run

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# Evidently (bench_drift's comparison) pins plotly < 6 and fails with pandas 3: its own venv
EVIDENTLY := bench/.evidently
$(EVIDENTLY)/.installed:
	$(PYTHON) -m venv $(EVIDENTLY)
	$(EVIDENTLY)/bin/pip install -q evidently "pandas<3"
	touch $@

bench: $(STAMP) $(EVIDENTLY)/.installed
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) loopml-digits .pytest_cache
