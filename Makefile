# Depot: `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-quick test-pg bench install install-dev clean

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
## unless DEPOT_TEST_* point elsewhere)
test: $(VENV)/.installed-dev
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

## test-quick: the edit loop: the tests that start no process and no browser (everything not
## marked `slow`), on SQLite + embedded Redis as `make test`
test-quick: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow"

## bench: performance against well-known tools, printed as ratios
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/rescan.py
	$(BIN)/python bench/copy.py
	$(BIN)/python bench/cloud.py
	$(BIN)/python bench/download.py
	$(BIN)/python bench/agents.py

clean:
	rm -rf $(VENV) .pytest_cache bench/.work
