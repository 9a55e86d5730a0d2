# The two commands of the README:
#   make demo   set everything up, then run the main job on a generated demo month (DuckDB)
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EVENTS ?= data/events/demo

.PHONY: setup demo run docs docs-serve test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/runtime.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/segments demo
	$(BIN)/segments dbt -- docs generate

run: setup
	$(BIN)/segments run --events $(EVENTS)

docs: setup
	$(BIN)/segments dbt -- docs generate

docs-serve: docs
	$(BIN)/segments dbt -- docs serve --port 8080

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/sqlfluff lint models tests/dbt

clean:
	rm -rf target logs warehouse data/events
