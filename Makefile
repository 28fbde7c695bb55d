# Two commands for a newcomer: `make demo` runs the product on a synthetic world,
# `make test` runs the test suite. Both create the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint bench install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/kam demo

# coverage follows the files where they lie (kam/features etc. are links to the top-level folders)
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy kam
	$(BIN)/pytest -m "not slow" --cov=kam --cov=features --cov=models --cov=training --cov=serving --cov-report=term:skip-covered

test-all: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/features.py
