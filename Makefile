# make demo: set up (find Python 3.12+, create .venv, install) and run a paper trading cycle offline.
# make test: set up and run the whole test suite on three workers (PostgreSQL and Redis on loopback).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DB := var/demo.db

.PHONY: demo test setup lint bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml tools/find-python.sh
	@PY=$$(tools/find-python.sh) || exit 1; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(0 if sys.version_info >= (3,12) else 1)'; then \
	  echo "creating $(VENV) with $$PY"; rm -rf $(VENV); $$PY -m venv $(VENV) || exit 1; fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p var
	@rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	QUORUM_DATABASE_URL=sqlite:///$(CURDIR)/$(DEMO_DB) $(BIN)/quorum demo

# three workers (pytest-xdist): most tests wait on local servers and subprocesses, so on two cores three
# workers take 7 min where two take 9.5-10 and one 15; each worker has its own Prefect test server.
# PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 3
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# Debian's chromium for the dashboard's browser tests (playwright drives it; `playwright install`
# cannot download here). Idempotent: skipped when present; installs only as root (CI).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (apt) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: /usr/bin/chromium missing (sudo make browser); the browser tests will skip (fail under CI=true)"; fi

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/cycle.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/prefect_overhead.py
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
