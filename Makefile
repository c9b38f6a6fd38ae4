# One entry point: `make run` for the demo on the simulator, `make test` for the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DRCTL_STATE_DIR ?= .drctl

.PHONY: run test lint clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "drctl needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/drctl fabric init examples/inventory.yaml
	$(BIN)/drctl apply specs/
	$(BIN)/drctl status specs/

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/mypy reconciler

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py

clean:
	rm -rf $(VENV) .drctl .mypy_cache .pytest_cache .ruff_cache
