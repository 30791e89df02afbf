"""Security: a bearer token exists only in the hands of whoever it was given to; the SQL
functions cannot be steered through search_path; the API's run as their NOLOGIN owner, the rest
with the caller's rights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.daemon import query
from tests.evm.chain import daemon_env, fresh_chain
from tests.reliability.support import pay_many, proof
from verifier import api
from verifier.devnet.postgres import RestartablePostgres
from verifier.sqlfiles import queries

AUDIT = queries("audit.sql")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def logged_postgres() -> Iterator[tuple[RestartablePostgres, str]]:
    """A server of its own whose log records every statement, with its parameters."""
    with RestartablePostgres() as server:
        url = server.database()
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("ALTER DATABASE x402 SET log_statement = 'all'")
        yield server, url


def test_plaintext_tokens_never_reach_the_logs_or_the_database(logged_postgres, tmp_path):
    server, url = logged_postgres
    log_file = tmp_path / "daemon.log"
    with fresh_chain() as chain:
        paid = pay_many(chain, 4, seed="secrets")
        chain.devnet.mine(3)
        env = {**os.environ, **daemon_env(chain.url, X402_LOG_FORMAT="json"),
               "DATABASE_URL": url, "X402_CLAIM_NOT_FOUND_GRACE_SECONDS": "0"}
        with log_file.open("wb") as out:
            daemon = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env,
                                      cwd=REPO, stdout=out, stderr=out)
        try:
            tokens = _claims_and_use(url, chain, paid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
    logs = log_file.read_text(encoding="utf-8")
    server_log = (server.pgdata / "log").read_text(encoding="utf-8", errors="replace")
    assert "claim_decided" in logs and "verifier.consume_request" in server_log  # both logged
    issued, refused = tokens
    for token in [*issued, *refused]:
        secret = token.removeprefix("x402_")
        assert secret not in logs
        assert secret not in server_log
        assert _rows_containing(url, secret) == {}
    # The search does find what is there: the hashes of the issued tokens.
    for token in issued:
        assert _rows_containing(url, api.hash_token(token)) == {
            "verifier.claims.token_hash": 1, "public.x402_tokens.token_hash": 1}


def _claims_and_use(url: str, chain, paid) -> tuple[list[str], list[str]]:
    """Claims every payment (the first with a forged proof first), spends each token twice,
    and tries two tokens that were never issued."""
    issued, refused = [], []
    with psycopg.connect(url, autocommit=True) as conn:
        for i, p in enumerate(paid):
            if i == 0:
                token, token_hash = api.new_token()
                forged = proof(chain.devnet.accounts[9], p.tx_hash, token_hash)
                result = _claim(conn, p.tx_hash, token_hash, forged)
                assert (result.status, result.reason) == ("rejected", "bad_proof")
                refused.append(token)
            token, token_hash = api.new_token()
            result = _claim(conn, p.tx_hash, token_hash, proof(p.signer, p.tx_hash, token_hash))
            assert result.status == "issued", result
            issued.append(token)
            for _ in range(2):
                use = api.consume(conn, token, "/v1/secret", "GET", 200, 3, "203.0.113.5", "ua")
                assert use.allowed, use
        for _ in range(2):
            stranger = api.new_token()[0]
            use = api.consume(conn, stranger, "/v1/secret", "GET", 200)
            assert (use.allowed, use.reason) == (False, "unknown_token")
            refused.append(stranger)
    return issued, refused


def _claim(conn: psycopg.Connection, tx: str, token_hash: str, proof_: str) -> api.ClaimResult:
    submitted = api.submit_claim(conn, "base", tx, token_hash, proof_)
    assert submitted.claim_id is not None, submitted
    return api.wait_for_claim(conn, submitted.claim_id, timeout=60)


def _rows_containing(url: str, needle: str) -> dict[str, int]:
    found = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for schema, table, column in conn.execute(AUDIT["text_columns"]).fetchall():
            statement = sql.SQL(AUDIT["rows_containing"]).format(
                table=sql.Identifier(schema, table), column=sql.Identifier(column))
            count = conn.execute(statement, {"needle": needle}).fetchone()[0]
            if count:
                found[f"{schema}.{table}.{column}"] = count
    return found


API_FUNCTIONS = {"verifier.submit_claim", "verifier.consume_request", "verifier.claim_status"}


def test_sql_functions_set_search_path_and_only_the_api_runs_as_its_owner(database_url):
    rows = query(database_url, AUDIT["function_security"])
    names = {f"{schema}.{name}" for schema, name, _definer, _config in rows}
    assert API_FUNCTIONS | {"public.cleanup_expired_x402_payments",
                            "public.update_x402_analytics"} <= names
    for schema, name, definer, config in rows:
        assert definer is (f"{schema}.{name}" in API_FUNCTIONS), f"{schema}.{name}: definer"
        paths = [c for c in config or [] if c.startswith("search_path=")]
        assert paths, f"{schema}.{name} does not set search_path"
        assert "$user" not in paths[0], f"{schema}.{name}: {paths[0]}"
        if definer:  # a temporary object of the caller's must never shadow one of ours
            assert paths[0].endswith("pg_temp"), f"{schema}.{name}: {paths[0]}"


def test_a_callers_temporary_table_cannot_steer_a_definer_function(database_url):
    """pg_temp is searched first unless named last: an x402_api login's temporary x402_tokens
    would otherwise stand in for the real one inside consume_request."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE x402_tokens (token_hash text, payment_id bigint, "
                     "expires_at timestamptz, last_used_at timestamptz)")
        conn.execute("INSERT INTO pg_temp.x402_tokens VALUES (repeat('f', 64), 1, 'infinity')")
        row = conn.execute("SELECT allowed, reason FROM verifier.consume_request("
                           "repeat('f', 64), '/', 'GET', 200)").fetchone()
    assert row == (False, "unknown_token")
