# Two commands: `make demo` and `make test`. Both create a project-local .venv
# on first use (torch first, from the local CPU wheel, then everything else
# constrained to it) and are cheap to re-run once it exists.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0 $(if $(wildcard /opt/wheels),-f /opt/wheels,)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[face,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepmlf demo --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --durations=10 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
