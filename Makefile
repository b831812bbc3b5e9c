# Commonwatt. `make run` starts the demo grid on the embedded default (SQLite);
# `make test` runs every test on PostgreSQL (DATABASE_URL, default below).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/commonwatt
export DATABASE_URL ?= $(PG_URL)

.PHONY: venv run test test-unit lint bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# The demo: SQLite under var/, seeded grid, dev server on :8000.
run: venv
	DATABASE_URL= $(BIN)/python manage.py demo --serve

test: venv
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

bench: venv
	$(BIN)/python -m bench.settlement --sizes 1000,10000,100000

clean:
	rm -rf $(VENV) var
