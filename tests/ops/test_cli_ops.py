"""`x402-verifier doctor` and `x402-verifier status` as an operator runs them: real anvil, the
LiteSVM Solana node, real PostgreSQL, a subprocess per command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from solders.keypair import Keypair

from tests.db import data
from tests.ops.harness import PAYEE
from verifier.devnet.evm import EvmDevnet, local_devnet
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import TokenKit


@pytest.fixture
def devnet() -> Iterator[EvmDevnet]:
    with local_devnet("base") as d:
        yield d


@pytest.fixture
def solana() -> Iterator[SolanaServer]:
    with SolanaServer() as node:
        TokenKit(node).create_usdc()
        yield node


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-m", "verifier", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def chains_env(evm_url: str, solana_url: str | None = None) -> dict[str, str]:
    env = {"X402_CHAINS": "base", "X402_BASE_RPC_URLS": evm_url,
           "X402_BASE_PAYMENT_ADDRESS": PAYEE, "X402_LOG_FORMAT": "json"}
    if solana_url:
        env.update(X402_CHAINS="base,solana", X402_SOLANA_RPC_URLS=solana_url,
                   X402_SOLANA_PAYMENT_ADDRESS=str(Keypair().pubkey()))
    return env


def verdicts(stdout: str) -> list[tuple[str, str]]:
    """(OK|FAIL, check name) per line, the summary line left out."""
    found = [re.match(r"(OK|FAIL)\s+(.+?)\s{2,}", line) for line in stdout.splitlines()
             if not line.startswith("doctor:")]
    return [(m.group(1), m.group(2)) if m else ("?", "?") for m in found]


def test_doctor_passes_a_sound_installation(devnet, solana, database_url):
    done = cli("doctor", DATABASE_URL=database_url, **chains_env(devnet.url, solana.url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts(done.stdout) == [("OK", "config"), ("OK", "database"), ("OK", "migrations"),
                                     ("OK", "rpc base"), ("OK", "rpc solana")]
    lines = done.stdout.splitlines()
    assert f"chain id 8453, USDC {devnet.usdc} has" in lines[3]
    assert f"head {devnet.head()}" in lines[3]
    assert "healthy, USDC mint EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v present" in lines[4]
    assert "migrations" in lines[2] and "none pending, none edited" in lines[2]
    assert lines[-1] == "doctor: 5 of 5 checks passed"


def test_doctor_names_each_failure(devnet, empty_database_url):
    with local_devnet("ethereum") as other, SolanaServer() as bare:  # bare: no USDC mint
        env = chains_env(f"{devnet.url},{other.url},http://127.0.0.1:9", bare.url)
        done = cli("doctor", DATABASE_URL=empty_database_url, **env)
    assert done.returncode == 1
    assert verdicts(done.stdout) == [
        ("OK", "config"), ("OK", "database"), ("FAIL", "migrations"), ("OK", "rpc base"),
        ("FAIL", "rpc base"), ("FAIL", "rpc base"), ("FAIL", "rpc solana")]
    lines = done.stdout.splitlines()
    assert "pending: 001_verifier_schema.sql" in lines[2]
    assert f"{other.url}: chain id 1, expected 8453 (X402_BASE_CHAIN_ID)" in lines[4]
    assert "http://127.0.0.1:9: " in lines[5]
    assert "does not exist there" in lines[6]
    assert lines[-1] == "doctor: 3 of 7 checks passed, 4 failed"


def test_doctor_reports_bad_configuration_and_an_edited_migration(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE verifier.schema_migrations SET sha256 = repeat('0', 64) "
                     "WHERE filename = '004_verifier_daemon.sql'")
    done = cli("doctor", DATABASE_URL=database_url, X402_WORKERS="lots",
               X402_BASE_RPC_URLS="http://127.0.0.1:9", X402_BASE_PAYMENT_ADDRESS=PAYEE)
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("FAIL", "config"), ("OK", "database"),
                                     ("FAIL", "migrations")]
    assert "X402_WORKERS: 'lots' is not a whole number" in done.stdout
    assert "004_verifier_daemon.sql changed after it was applied" in done.stdout


def test_status_shows_heads_cursors_lag_pending_claims_and_last_jobs(devnet, database_url):
    devnet.mine(20)
    head = devnet.head()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO verifier.cursors (chain, position) VALUES ('base', 7)")
        data.payment(conn, status="pending")
        data.payment(conn, status="pending", chain="ethereum")
        conn.execute("SELECT * FROM verifier.submit_claim('base', %(tx)s, %(h)s)",
                     {"tx": "0x" + "ab" * 32, "h": "cd" * 32})
    assert cli("jobs", "run", "cleanup", DATABASE_URL=database_url).returncode == 0
    env = chains_env(devnet.url)

    done = cli("status", "--json", DATABASE_URL=database_url, **env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [base] = report["chains"]
    assert base | {"cursor_updated_at": None} == {
        "chain": "base", "head": head, "head_error": None, "cursor": 7, "lag": head - 7,
        "cursor_updated_at": None, "pending_payments": 1, "waiting_claims": 1, "quarantined": 0}
    [job] = report["jobs"]
    assert (job["job"], job["status"], job["detail"]["expired"]) == ("cleanup", "ok", 0)
    assert job["last_ok_at"] is not None
    assert report["quarantined"] == []

    table = cli("status", DATABASE_URL=database_url, **env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["chain", "head", "cursor", "lag", "cursor", "updated", "pending",
                                "payments", "waiting", "claims"]
    assert lines[1].split()[:4] == ["base", str(head), "7", str(head - 7)]
    assert any(line.startswith("cleanup") and " ok " in line for line in lines)

    no_chains = json.loads(cli("status", "--json", DATABASE_URL=database_url).stdout)
    assert no_chains["chains"][0] | {"cursor_updated_at": None} == {
        "chain": "base", "head": None, "head_error": None, "cursor": 7, "lag": None,
        "cursor_updated_at": None, "pending_payments": 1, "waiting_claims": 1, "quarantined": 0}
