# renyilib — build the report, run the tests. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= cpu
# Chapters to run: default every chapter of book/_toc.yml (`generated/<name>`), in
# toc order (later chapters read what earlier ones cached); NOTEBOOKS="zoo spectrum"
# runs those only.
NOTEBOOKS ?=
# The cpu profile's chapters are the committed book/generated/*.ipynb; any other
# profile runs into a copy of the book, build/<profile>-book (never over them).
BOOK_DIR = $(if $(filter cpu,$(PROFILE)),book,build/$(PROFILE)-book)
REPORT := $(BIN)/python -m renyilib.experiments.report
COPY = $(if $(filter cpu,$(PROFILE)),,--copy-from book)
CHAPTERS = $(if $(strip $(NOTEBOOKS)),--notebooks $(NOTEBOOKS))
# Warnings are errors; the book's extension (book/_ext) also stops on a missing or stale chapter.
JB_BUILD := $(BIN)/jupyter-book build --warningiserror --keep-going
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09

.PHONY: install report report-stale notebooks book book-status smoke-book test lint format \
	bench clean core-check mathjax

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test,book]'
	touch $@

# Run the chapters with papermill in $(PROFILE) (printing each chapter, its time and
# an estimate of what is left), then build the book from them.
report: notebooks book
	@echo "Report ($(PROFILE) profile): $(abspath $(BOOK_DIR)/_build/html/index.html)"

notebooks: $(STAMP)
	$(REPORT) --profile $(PROFILE) --book $(BOOK_DIR) $(COPY) $(CHAPTERS)

# Rerun only the chapters that are missing or stale (a _config.yml section they
# read, or their notebook, changed), then build the book.
report-stale: $(STAMP)
	$(REPORT) --profile $(PROFILE) --book $(BOOK_DIR) $(COPY) --stale $(CHAPTERS)
	$(MAKE) book PROFILE=$(PROFILE)

# Each chapter's state: ok, missing, unrecorded or stale (and why).
book-status: $(STAMP)
	$(REPORT) --book $(BOOK_DIR) --check

# The book from its executed chapters, exactly as a fresh clone's
# `jupyter-book build book/` renders it (nothing is executed).
book: $(STAMP)
	rm -rf $(BOOK_DIR)/_build/html $(BOOK_DIR)/_build/.doctrees $(BOOK_DIR)/_build/jupyter_execute
	$(JB_BUILD) $(BOOK_DIR)/

# Every chapter in the smoke profile (seconds each) into build/smoke-book, and that book.
smoke-book:
	$(MAKE) report PROFILE=smoke

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Lint; the committed book as a fresh clone builds it; every chapter in the smoke
# profile and its book; the tests (tests/test_book.py opens both books in Chromium).
test: $(STAMP) lint
	$(MAKE) book
	$(MAKE) smoke-book
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
	$(BIN)/python -m pip install -q pyhessian==0.1 curvlinops-for-pytorch==3.0.1
	$(BIN)/python benchmarks/run_all.py

# Refresh the MathJax shipped with the book (book/_vendor/mathjax, see its README).
mathjax:
	rm -rf build/mathjax && mkdir -p build/mathjax
	cd build/mathjax && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null \
		&& echo "$(MATHJAX_SHA256)  mathjax-$(MATHJAX_VERSION).tgz" | sha256sum -c - \
		&& tar xzf mathjax-$(MATHJAX_VERSION).tgz
	rm -rf book/_vendor/mathjax/tex-chtml-full.js book/_vendor/mathjax/output
	mkdir -p book/_vendor/mathjax/output/chtml/fonts
	cp build/mathjax/package/es5/tex-chtml-full.js book/_vendor/mathjax/
	cp -r build/mathjax/package/es5/output/chtml/fonts/woff-v2 book/_vendor/mathjax/output/chtml/fonts/
	cp build/mathjax/package/LICENSE book/_vendor/mathjax/LICENSE

# Build outputs only: the committed chapters (book/generated) stay.
clean:
	rm -rf book/_build build/
