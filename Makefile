# Two commands for a newcomer: `make demo` runs the product on a synthetic world,
# `make test` runs the test suite. Both create the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test coverage test-all lint bench install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/kam demo

# two workers, each test file whole on one of them (its module fixtures are built once)
PYTEST_WORKERS ?= -n 2 --dist loadfile

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy kam
	$(BIN)/pytest -m "not slow" $(PYTEST_WORKERS)

# coverage follows the files where they lie (kam/features etc. are links to the top-level folders)
coverage: install
	$(BIN)/pytest -m "not slow" $(PYTEST_WORKERS) --cov=kam --cov=features --cov=models --cov=training --cov=serving --cov-report=term:skip-covered

test-all: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/features.py
