"""Commands that never talk to a chain load no chain library: `--help`, `migrate`, `jobs` and
`status` without chains start in a fraction of the time web3 alone takes to import (issue 9,
item 7). What is asserted is the set of modules a real run imported, not a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHAIN_LIBRARIES = ("web3", "eth_utils", "eth_abi", "eth_account", "eth_keys", "solana", "solders",
                   "aiohttp", "verifier.chains", "verifier.rpc", "verifier.daemon")

# Runs the real entry point, then reports every module loaded, even when main() exits.
PROBE = ("import atexit, json, sys\n"
         "atexit.register(lambda: print('MODULES=' + json.dumps(sorted(sys.modules)),"
         " file=sys.stderr))\n"
         "from verifier.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def loaded(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    run = subprocess.run([sys.executable, "-c", PROBE, *args], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    line = next(x for x in run.stderr.splitlines() if x.startswith("MODULES="))
    return run, set(json.loads(line.removeprefix("MODULES=")))


def chain_modules(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in CHAIN_LIBRARIES
                  or m.startswith(CHAIN_LIBRARIES))


def test_help_loads_no_chain_library():
    run, modules = loaded("--help")
    assert run.returncode == 0 and "migrate" in run.stdout
    assert chain_modules(modules) == []
    assert "psycopg" not in modules  # not even the database driver


@pytest.mark.parametrize("args", [["migrate"], ["migrate", "--dry-run"],
                                  ["jobs", "run", "cleanup"], ["jobs", "run", "analytics"],
                                  ["status", "--json"]])
def test_database_commands_load_no_chain_library(database_url, args):
    run, modules = loaded(*args, DATABASE_URL=database_url, X402_LOG_FORMAT="json")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "psycopg" in modules  # it did reach the database
    assert chain_modules(modules) == []


def test_the_probe_sees_a_chain_library_when_one_is_loaded(database_url):
    # The check above would pass vacuously if the probe saw nothing: `verify` must load web3.
    _run, modules = loaded("verify", "--chain", "base", "--tx", "0x" + "ab" * 32,
                          DATABASE_URL=database_url, X402_BASE_RPC_URLS="http://127.0.0.1:9",
                          X402_BASE_PAYMENT_ADDRESS="0x" + "11" * 20, X402_BASE_RPC_TIMEOUT="0.5")
    assert "web3" in modules or "eth_abi" in modules or "aiohttp" in modules
