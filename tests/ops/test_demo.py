"""The full offline demo (`make demo`): anvil, the LiteSVM Solana node, the daemon and a payer,
run to completion with a short --duration, and cut short with Ctrl-C; nothing left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, str(REPO / "scripts" / "demo.py")]


def demo_env(server_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    return {**env, "DATABASE_URL": server_url}


def answers(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


def node_urls(out: str) -> list[str]:
    return re.findall(r"(?:anvil|LiteSVM node) (http://127\.0\.0\.1:\d+)", out)


def test_the_demo_runs_to_completion_and_its_views_show_the_payments(pg_admin_url):
    done = subprocess.run([*DEMO, "--duration", "2"], env=demo_env(pg_admin_url),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for expected in ("eve claims alice's payment with her own key      rejected: bad_proof",
                     "mallory claims her look-alike payment            rejected: wrong_token",
                     "bob claims his underpayment                      rejected: underpaid",
                     "alice claims it again                            rejected: already_claimed",
                     "alice  GET /api/v1/quote    x3: 3 allowed, 997 left",
                     "dave   GET /api/v1/report   x2: 2 allowed, 498 left",
                     "a facilitator settles: verified; claim issued, 1 allowed, 0 left",
                     "analytics: ok", "== v_x402_active_payments", "== v_x402_stats_24h",
                     "== v_x402_top_payers", "== v_x402_endpoint_stats"):
        assert expected in out, expected
    assert re.search(r"alice claims the payment on base\s+issued \(token x402_", out)
    assert re.search(r"dave claims the payment on solana\s+issued \(token x402_", out)
    urls = node_urls(out)
    assert len(urls) == 2 and not any(answers(u) for u in urls)  # both nodes are gone

    url = make_conninfo(pg_admin_url, dbname="x402_demo")
    with psycopg.connect(url) as conn:
        # The scripted payments are all recorded before the payer sends any other.
        scripted = conn.execute(
            "SELECT chain, amount_usdc, status, requests_used FROM (SELECT * FROM x402_payments "
            "ORDER BY id LIMIT 4) first ORDER BY chain, amount_usdc").fetchall()
        assert scripted == [("base", Decimal("0.050000"), "underpaid", 0),
                            ("base", Decimal("1.000000"), "verified", 3),
                            ("solana", Decimal("0.020000"), "underpaid", 0),
                            ("solana", Decimal("0.500000"), "verified", 2)]
        assert conn.execute("SELECT count(*) FROM x402_payments WHERE amount_usdc = 5"
                            ).fetchone()[0] == 0  # the look-alike token is no payment
        stats = dict(conn.execute("SELECT chain, total_payments FROM v_x402_stats_24h"
                                  ).fetchall())
        verified = dict(conn.execute("SELECT chain, count(*) FROM x402_payments "
                                     "WHERE status IN ('verified', 'used') GROUP BY chain"
                                     ).fetchall())  # carol's one request is spent: used
        assert stats == verified and stats["base"] >= 1 and stats["solana"] >= 1
        tokens = conn.execute("SELECT count(*) FROM x402_tokens").fetchone()[0]
        assert tokens == stats["base"] + stats["solana"]  # every valid payment was claimed
        assert conn.execute("SELECT count(*) FROM x402_analytics WHERE hour_bucket = "
                            "date_trunc('hour', now(), 'UTC')").fetchone()[0] == 3
    assert "x402_demo" in out


def test_ctrl_c_ends_the_demo_and_leaves_nothing_running(pg_admin_url):
    with subprocess.Popen([*DEMO, "--duration", "600"], env=demo_env(pg_admin_url),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("== More payments"):
                    break
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    assert "Interrupted: stopping." in out and "== v_x402_stats_24h" in out
    urls = node_urls(out)
    assert len(urls) == 2 and not any(answers(u) for u in urls)
