# Commonwatt. `make run` starts the demo grid on the embedded default (SQLite);
# `make test` runs every test on PostgreSQL (DATABASE_URL, default below).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/commonwatt
export DATABASE_URL ?= $(PG_URL)

.PHONY: venv node run test test-unit lint bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# Front-end and toolchain packages from npm (never committed): chart.js and
# htmx for the web app, solc and anvil for the chain mirror, MicroPython
# (WebAssembly) to run the firmware's core.
NPM_DIRS := web contracts firmware
NPM_STAMPS := $(foreach d,$(NPM_DIRS),$(d)/node_modules/.installed)
%/node_modules/.installed: %/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is required"; exit 1; }
	npm ci --prefix $* --no-audit --no-fund --loglevel=error
	touch $@

node: $(NPM_STAMPS)

# The demo: SQLite under var/, seeded grid, dev server on :8000.
run: venv web/node_modules/.installed
	DATABASE_URL= $(BIN)/python manage.py demo --serve

test: venv node
	$(BIN)/python scripts/ensure_db.py "$$DATABASE_URL"
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy settlement/domain utility/lib
	$(BIN)/pytest -p no:cacheprovider -q

test-unit: venv
	$(BIN)/pytest -p no:cacheprovider -q -m "not django_db and not services"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy settlement/domain utility/lib

# Each prints its figures beside the raw limit it compares against (README table).
bench: venv node
	$(BIN)/python -m bench.settlement --sizes 1000,10000,100000
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.decisions
	$(BIN)/python -m bench.chain --accounts 10000
	$(BIN)/python -m bench.web

clean:
	rm -rf $(VENV) var $(foreach d,$(NPM_DIRS),$(d)/node_modules)
