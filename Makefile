# Depot: `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-browser test-waitress test-quick bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dpnode.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: install, migrate, create the first admin, start web (:8080), a worker and the scheduler
run: $(VENV)/.installed
	$(BIN)/python -m portal.launcher

## test: the import contract (.importlinter), then the whole suite (SQLite + embedded Redis
## unless DEPOT_TEST_* point elsewhere) on TEST_PROCESSES pytest-xdist workers (each with its
## own database and Redis database; most tests wait on servers and workers, so two per core pay),
## then the DP node's own tests once more under waitress (the server it runs with on Windows)
## (CI's run on PostgreSQL sets TEST_ARGS='--ignore=tests/e2e -m "not once"' and TEST_WAITRESS=0:
## what tests/conftest.py marks `once` and the browser tests run in the SQLite run only; CI runs
## `make test-waitress` and `make test-browser` after the PostgreSQL run, to even the two out)
TEST_PROCESSES ?= 2
TEST_ARGS ?=
TEST_WAITRESS ?= 1
test: $(VENV)/.installed-dev
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist worksteal $(TEST_ARGS)
	if [ "$(TEST_WAITRESS)" = 1 ]; then $(MAKE) --no-print-directory test-waitress; fi

## test-browser: the browser tests only (CI runs them after its PostgreSQL run, on SQLite)
test-browser: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) tests/e2e

## test-waitress: the DP node's own tests under waitress only (CI runs it beside the suite)
test-waitress: $(VENV)/.installed-dev
	DEPOT_TEST_DP_SERVER=waitress $(BIN)/python -m pytest -q -n $(TEST_PROCESSES) tests/dpnode

## test-quick: the edit loop (about 40 s): the tests that start no process and no browser (not
## marked `slow`), without the storage contract suite and the cloud providers' tests, which run
## every provider's protocol server (`pytest tests/storage tests/cloud -m "not slow"` for those)
test-quick: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" --ignore=tests/storage --ignore=tests/cloud

## bench: performance against well-known tools, printed as ratios
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/rescan.py
	$(BIN)/python bench/copy.py
	$(BIN)/python bench/delta.py
	$(BIN)/python bench/cloud.py
	$(BIN)/python bench/download.py
	$(BIN)/python bench/agents.py
	$(BIN)/python bench/central_load.py

clean:
	rm -rf $(VENV) .pytest_cache bench/.work
