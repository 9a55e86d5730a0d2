# The two commands of the README:
#   make demo   set everything up, then run the main job on a generated demo month (DuckDB)
#   make test   set everything up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EVENTS ?= data/events/demo
PYTEST_ARGS ?=
# `make test` runs the test files on this many pytest-xdist workers (one file per worker at a time,
# so a file's module fixtures are built once; the longest files first: tests/pytest/conftest.py).
PYTEST_WORKERS ?= 2
# What `make check` runs: lint + one real build (test_project), dbt's unit tests on it, the model's unit tests.
CHECK_TESTS ?= tests/pytest/test_project.py tests/pytest/test_dbt_tests.py tests/pytest/test_model_units.py tests/pytest/test_structure.py
# The container (docs/deployment.md): a base image made locally (no registry here), the image built on it.
BASE_IMAGE ?= localhost/shopper-segments-base:bookworm
IMAGE ?= shopper-segments

.PHONY: setup demo run report docs docs-serve test check lint clean image redshift-check

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/runtime.txt requirements/warehouses.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/segments demo
	$(BIN)/segments dbt -- docs generate
	$(BIN)/segments report

# The segment report for the business: reports/segment_report.html (one self-contained HTML file).
report: setup
	$(BIN)/segments report

run: setup
	$(BIN)/segments run --events $(EVENTS)

docs: setup
	$(BIN)/segments dbt -- docs generate

docs-serve: docs
	$(BIN)/segments dbt -- docs serve --port 8080

test: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The edit loop (a few minutes): sqlfluff on the models, the unit tests of the Python library, and one
# small real build (load + dbt build with its unit and data tests) of the real October sample.
check: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) $(CHECK_TESTS)

lint: setup
	$(BIN)/sqlfluff lint models tests/dbt

# The offline Redshift checks alone: dbt parse/ls/compile with the redshift target, sqlfluff, DuckDB-only scan.
redshift-check: setup
	$(BIN)/pytest tests/pytest/test_redshift_offline.py

# Build the image with podman; the base image is made once per machine with debootstrap if missing.
image: setup
	cd tests/pytest && $(abspath $(BIN))/python -c "import container_support as c; c.BASE_IMAGE = '$(BASE_IMAGE)'; print(c.ensure_base_image()[0])"
	podman build --isolation=chroot --network host \
		-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

clean:
	rm -rf target logs warehouse data/events
