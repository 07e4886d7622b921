# Two entry points a fresh machine needs: `make run` and `make test`.
# Both create .venv and install the package into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sim run scenarios/energy-dashboard.toml --port 3002

test: $(STAMP)
	$(BIN)/ruff check simulator tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check simulator tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/generate_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
