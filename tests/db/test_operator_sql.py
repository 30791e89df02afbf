"""sql/operator/*.sql run with psql -f, as an operator runs them, against known data."""

import subprocess
from datetime import timedelta

import pytest

from tests.db import data
from tests.db.data import USDC
from verifier.sqlfiles import data_root

OPERATOR = data_root() / "sql" / "operator"


def psql_file(url: str, name: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(["psql", url, "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1",
                           "-f", str(OPERATOR / name)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def traffic(conn):
    t = data.now()
    a = data.payment(conn, chain="base", amount_units=USDC, requests_allocated=10,
                     requests_used=3)
    b = data.payment(conn, chain="solana", amount_units=2 * USDC, requests_allocated=5,
                     requests_used=2)
    data.payment(conn, chain="base", amount_units=USDC, expires_at=t - timedelta(minutes=5))
    for _ in range(3):
        data.usage(conn, a, endpoint="/api/a")
    data.usage(conn, b, endpoint="/api/b", status_code=500)
    return conn


def test_daily_queries(database_url, pg_env, traffic):
    out = psql_file(database_url, "daily.sql", pg_env)
    assert "base|2|2.000000|110|3|1|1.000000" in out  # includes the not-yet-cleaned expiry
    assert "solana|1|2.000000|5|2|1|2.000000" in out
    assert "active_payments|remaining_requests" in out
    assert "2|10" in out
    assert out.index("/api/a|3|10.00|1|3|0") < out.index("/api/b|1|10.00|1|0|1")


def test_weekly_queries(database_url, pg_env, traffic):
    out = psql_file(database_url, "weekly.sql", pg_env)
    assert out[out.index("expired_count") + 1] == "1"
    sizes = out[out.index("database_size|payments_size|usage_size") + 1].split("|")
    assert len(sizes) == 3 and all(s.endswith(("bytes", "kB", "MB", "GB")) for s in sizes)
    assert data.scalar(traffic, "SELECT count(*) FROM x402_payments WHERE status = 'expired'") == 1
    again = psql_file(database_url, "weekly.sql", pg_env)
    assert again[again.index("expired_count") + 1] == "0"


def test_verification_file_passes_on_the_schema_and_fails_without_it(
        database_url, empty_database_url, pg_env):
    out = psql_file(database_url, "verify.sql", pg_env)
    assert out.count("x402_analytics") == 1 and "update_x402_analytics" in out
    failed = subprocess.run(["psql", empty_database_url, "-X", "-v", "ON_ERROR_STOP=1", "-f",
                             str(OPERATOR / "verify.sql")], env=pg_env, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 3
    assert "0 of 4 tables, 0 of 4 views, 0 of 2 functions" in failed.stderr
