# The one entry point: make install | test | lint | demo | chaos | bench | clean
# Every target bootstraps what it needs, so each works alone on a fresh clone.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
ANVIL_VERSION := 1.7.1
SOLC_VERSION := 0.8.37
PYTEST_ARGS ?=
DEMO_ARGS ?=
CHAOS_ARGS ?=
# `make bench` sizes: minutes, not the figures' full scale (see each script's --help for that).
BENCH_EVM_ARGS ?= --payments 1000 --payers 50 --blocks 200 --claims 100
BENCH_SOLANA_ARGS ?= --payments 300 --payers 10
BENCH_SQL_ARGS ?= --scale 0.1 --runs 100
BENCH_REQUESTS_ARGS ?= --seconds 6 --rounds 3

.PHONY: install test lint demo chaos bench clean pgbouncer

install: $(VENV)/.installed $(TOOLS)/.installed pgbouncer

# PgBouncer (Debian package) for the pooler tests: installed with apt-get when it is missing and
# this runs as root on a machine with apt-get; otherwise install the pgbouncer package yourself.
pgbouncer:
	@command -v pgbouncer > /dev/null || test -x /usr/sbin/pgbouncer || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer > /dev/null; \
	else echo "pgbouncer is not installed (apt-get install pgbouncer): the pooler tests need it" >&2; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# anvil (EVM node) and solc-js (Solidity compiler) from npm, into the ignored .tools/ folder.
$(TOOLS)/.installed:
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error \
		@foundry-rs/anvil@$(ANVIL_VERSION) solc@$(SOLC_VERSION)
	$(TOOLS)/node_modules/.bin/anvil --version > /dev/null
	touch $@

test: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy verifier

demo: install
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# The chaos soak (bounded to 10 minutes): faults, kills, a PostgreSQL restart, reorgs; exit 1 on
# any difference between the database and the chains.
chaos: install
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

# The four benchmarks, one after the other: the daemon against a naive verifier on anvil, Solana
# through the LiteSVM node, the SQL statements on a tenth of the guide's 30-day data, the request
# path (consume_request) beside a bare INSERT at 1 to 64 clients.
bench: install
	$(BIN)/python scripts/bench_evm.py $(BENCH_EVM_ARGS)
	$(BIN)/python scripts/bench_solana.py $(BENCH_SOLANA_ARGS)
	$(BIN)/python scripts/bench_sql.py $(BENCH_SQL_ARGS)
	$(BIN)/python scripts/bench_requests.py $(BENCH_REQUESTS_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .ruff_cache .mypy_cache
