"""scripts/demo.py --sql-only (stage 1 of `make demo`) against a fresh database: it runs, twice,
and shows the truth. The full demo (chains and the daemon) is tested in tests/ops/test_demo.py."""

import subprocess
import sys

from tests.db import data
from verifier.sqlfiles import data_root

DEMO = data_root() / "scripts" / "demo.py"


def run_demo(url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), "--sql-only"], env={**env, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=300)


def test_demo_runs_and_can_run_again(empty_database_url, pg_env, conn_of):
    first = run_demo(empty_database_url, pg_env)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for expected in ("100 allowed, 0 left", "refused: exhausted", "refused: expired",
                     "refused: payment_reorged", "refused: unknown_token",
                     "refused: malformed_token", "1 payment(s) expired", "== v_x402_stats_24h",
                     "== v_x402_active_payments", "== v_x402_top_payers",
                     "== v_x402_endpoint_stats"):
        assert expected in out, expected

    second = run_demo(empty_database_url, pg_env)
    assert second.returncode == 0, second.stderr
    c = conn_of(empty_database_url)
    assert data.scalar(c, "SELECT count(*) FROM x402_payments") == 8  # the first run's are gone
    assert data.scalar(c, "SELECT count(*) FROM v_x402_active_payments") == 3
    assert data.scalar(c, "SELECT count(*) FROM x402_usage") == 113
    assert data.scalar(c, "SELECT count(*) FROM x402_tokens") == 4  # expired, reorged: deleted
    assert c.execute("SELECT status, count(*) FROM x402_payments GROUP BY 1 ORDER BY 1"
                     ).fetchall() == [("expired", 1), ("pending", 1), ("reorged", 1),
                                      ("underpaid", 1), ("used", 1), ("verified", 3)]
    assert data.scalar(c, "SELECT count(*) FROM x402_analytics WHERE hour_bucket = "
                          "(SELECT max(hour_bucket) FROM x402_analytics)") == 3
