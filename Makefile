# renyilib — build the report, run the tests. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= cpu
# Notebooks in build order (later chapters read what earlier ones cached).
NOTEBOOKS ?= estimator zoo spectrum correlation cifar rsam bounds
GENERATED := book/generated

.PHONY: install report notebooks book test lint format bench clean core-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test,book]'
	touch $@

# Run every notebook with papermill in $(PROFILE), then build the book from the outputs.
report: notebooks book
	@echo "Report ($(PROFILE) profile): $(abspath book/_build/html/index.html)"

notebooks: $(STAMP)
	$(BIN)/python -m renyilib.experiments.report --profile $(PROFILE) --notebooks $(NOTEBOOKS) --dst $(GENERATED)

book: $(STAMP)
	rm -rf book/_build
	$(BIN)/jupyter-book build book/ --warningiserror --keep-going

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) lint
	$(MAKE) report PROFILE=smoke
	$(BIN)/pytest
	$(MAKE) core-check

# The core library alone: a venv with only its declared dependencies and the
# oldest torch it supports (2.13, CPU build), running the core's contract tests.
CORE_VENV := .venv-core
core-check:
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q torch==2.13.0 pytest
	$(CORE_VENV)/bin/python -m pip install -q -e .
	cd tests && ../$(CORE_VENV)/bin/python -m pytest -q -p no:cacheprovider -c /dev/null --rootdir=.. test_core_only.py test_layers.py

bench: $(STAMP)
	$(BIN)/python -m pip install -q pyhessian==0.1
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf book/_build $(GENERATED)
