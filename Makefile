# `make demo` and `make test` (plus `make test-fast` and `make quality` while developing). Each
# creates a project-local .venv on first use (torch first, from the local CPU wheel, then
# everything else constrained to it) and is cheap to re-run once it exists.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error

.PHONY: install demo test test-fast quality bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0 $(if $(wildcard /opt/wheels),-f /opt/wheels,)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[face,test]"
	# the openai-whisper backend without triton (pyproject.toml's openai-whisper extra says why)
	$(PIP) install -q -c $(CONSTRAINTS) --no-deps openai-whisper
	$(PIP) install -q -c $(CONSTRAINTS) numba tiktoken more-itertools
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepmlf demo --out $(DEMO_DIR)

# -rs lists every skipped test with its reason (a missing optional package is never silent).
test: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs --durations=10 tests

# The suite without the end-to-end runs marked slow (several seconds each).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs -m "not slow" tests

# Lint and format-check the whole tree (120 columns), type-check models/ and extractors/ (rules and
# paths: pyproject.toml). `ruff format .` applies the formatting.
quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
