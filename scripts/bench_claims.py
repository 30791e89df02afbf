#!/usr/bin/env python3
"""Benchmark: a real claim's latency with and without a flood of claims for unknown hashes.

    .venv/bin/python scripts/bench_claims.py [--junk 1500] [--window 45]

anvil (chain id 8453) behind a counting JSON-RPC proxy; the daemon (`python -m verifier run`,
its own process, default claim settings: 4 workers, 2 s poll, 60 s not-found grace) on a fresh
database. Two USDC payments are made and recorded by the watcher. Then:

1. a claim of the first payment, alone: seconds from submit to its decision;
2. --junk claims for random transaction hashes (what any anonymous client of a README-style API
   can send), then at once a claim of the second payment: its latency, how many junk claims
   were still waiting when it was decided, and eth_getTransactionReceipt calls so far;
3. receipt calls over --window seconds from the start of the flood.

Uses DATABASE_URL if set, else the embedded PostgreSQL under var/.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from verifier import api, db, migrate, rules  # noqa: E402
from verifier.devnet.anvil import Anvil  # noqa: E402
from verifier.devnet.evm import USDC_BASE, EvmDevnet, sign_claim  # noqa: E402
from verifier.devnet.faults import FaultProxy  # noqa: E402
from verifier.sqlfiles import queries  # noqa: E402

PAYEE = "0x2222222222222222222222222222222222222222"
RECEIPT = "eth_getTransactionReceipt"


def fresh_database(admin_url: str, name: str) -> str:
    q = queries("admin.sql")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
        conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    migrate.run(url, say=lambda _m: None)
    return url


def wait_for(probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def timed_claim(conn: psycopg.Connection, tx: str, key: str) -> tuple[float, api.ClaimResult]:
    _, token_hash = api.new_token()
    proof = sign_claim(key, rules.claim_message("base", tx, token_hash))
    started = time.perf_counter()
    claim = api.submit_claim(conn, "base", tx, token_hash, proof)
    if claim.claim_id is not None and claim.status == "waiting":
        claim = api.wait_for_claim(conn, claim.claim_id, timeout=120, poll=0.01)
    return time.perf_counter() - started, claim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junk", type=int, default=1_500)
    parser.add_argument("--window", type=float, default=45.0)
    args = parser.parse_args()

    workdir = REPO / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    admin = db.resolve_url(os.environ.get("DATABASE_URL"), REPO / "var")
    url = fresh_database(admin, "x402_bench_claims")
    log_path = workdir / "bench_claims.log"

    with Anvil(chain_id=8453, accounts=3) as node, FaultProxy(node.url, rate=0.0) as proxy:
        devnet = EvmDevnet(node.url)
        devnet.install_usdc(USDC_BASE)
        payer = devnet.accounts[1]
        devnet.mint(payer, 10_000_000)
        txs = [devnet.transfer(payer, PAYEE, 1_000_000 + i) for i in range(2)]
        devnet.mine(3)
        env = {**os.environ, "DATABASE_URL": url, "X402_CHAINS": "base",
               "X402_BASE_RPC_URLS": proxy.url, "X402_BASE_PAYMENT_ADDRESS": PAYEE,
               "X402_BASE_START_BLOCK": "0", "X402_BASE_CONFIRMATIONS": "1",
               "X402_METRICS_ADDR": "off", "X402_LOG_FORMAT": "json",
               "X402_CLEANUP_CRON": "off", "X402_ANALYTICS_CRON": "off"}
        with open(log_path, "w") as log_file, psycopg.connect(url, autocommit=True) as conn:
            proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env,
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file)
            try:
                wait_for(lambda: conn.execute(
                    "SELECT count(*) FROM x402_payments WHERE status = 'verified'"
                ).fetchone()[0] == 2, 60, "the payments to be recorded")
                alone, first = timed_claim(conn, txs[0], payer.key)

                flood = time.perf_counter()
                before = proxy.calls[RECEIPT]
                for _ in range(args.junk):
                    api.submit_claim(conn, "base", "0x" + secrets.token_hex(32),
                                     api.new_token()[1])
                submitted = time.perf_counter() - flood
                behind, second = timed_claim(conn, txs[1], payer.key)
                at_decision = proxy.calls[RECEIPT] - before
                waiting = conn.execute("SELECT count(*) FROM verifier.claims "
                                       "WHERE status = 'waiting'").fetchone()[0]
                time.sleep(max(0.0, args.window - (time.perf_counter() - flood)))
                in_window = proxy.calls[RECEIPT] - before
                decided = conn.execute("SELECT count(*) FROM verifier.claims WHERE status <> "
                                       "'waiting' AND tx_hash <> ALL(%(t)s)",
                                       {"t": txs}).fetchone()[0]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)

    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"real claim alone:                 {alone:.3f} s ({first.status})")
    print(f"{args.junk} junk claims submitted in {submitted:.2f} s")
    print(f"real claim behind the junk:       {behind:.3f} s ({second.status}); "
          f"{waiting} junk claims still waiting then, {at_decision} receipt calls so far")
    print(f"receipt calls in {args.window:.0f} s from the flood: {in_window} "
          f"({decided} junk claims decided by then)")


if __name__ == "__main__":
    main()
