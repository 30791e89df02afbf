#!/usr/bin/env python3
"""Benchmark: Solana payments found and verified through the LiteSVM test node over HTTP.

    .venv/bin/python scripts/bench_solana.py [--payments 2000] [--latency 0.05] [--no-daemon]

1. The node (verifier/devnet/solana_server.py, in its own process so it does not share the GIL
   with what is measured) executes N USDC payments to one payee from several payers, then
   answers every HTTP request after an added ``--latency`` seconds.
2. The adapter's scan loop (SolanaAdapter.scan until done, as the watcher drives it), in this
   process: time until every payment is found and judged, RPC use per payment. Run with JSON-RPC
   batches of getTransaction (the default) and with one call per HTTP request.
3. The real daemon (`python -m verifier run`, its own process) on a fresh database, starting
   from the first payment's slot: time until every payment is `verified` in x402_payments.
   Uses DATABASE_URL if set, else the embedded PostgreSQL under var/.
Each run checks that every payment was found exactly once with its amount.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from verifier.chains.solana import SolanaAdapter  # noqa: E402
from verifier.config import ChainConfig  # noqa: E402

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


# --- the node, in a child process ------------------------------------------------------------


def serve(payments: int, payers: int, latency: float) -> None:
    """Child: builds the ledger, prints what the parent needs, answers commands on stdin."""
    from verifier.devnet.solana_server import SolanaServer
    from verifier.devnet.solana_tokens import TokenKit

    with SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        payee = kit.wallet()
        kit.create_ata(payee.pubkey())
        wallets = [kit.wallet() for _ in range(payers)]
        for w in wallets:
            kit.fund(w.pubkey(), 10**12)
        started = time.perf_counter()
        plan = [(wallets[i % payers], 100_000 + i) for i in range(payments)]
        sigs = [kit.transfer(w, payee.pubkey(), amount) for w, amount in plan]
        made = time.perf_counter() - started
        node.latency = latency
        print(json.dumps({
            "url": node.url, "payee": str(payee.pubkey()),
            "first_slot": node.landed(sigs[0]).slot, "seconds": made,
            "payments": {s: a for s, (_, a) in zip(sigs, plan, strict=True)},
        }), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps({"calls": dict(node.calls), "errors": dict(node.errors),
                                  "http": node.http_requests}), flush=True)
            elif command == "reset":
                node.reset_counts()
                print("{}", flush=True)
            elif command == "quit":
                break


class Node:
    def __init__(self, payments: int, payers: int, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(payments), str(payers), str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url: str = info["url"]
        self.payee: str = info["payee"]
        self.first_slot: int = info["first_slot"]
        self.setup_seconds: float = info["seconds"]
        self.payments: dict[str, int] = info["payments"]
        self.order = list(self.payments)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


# --- 2. the adapter's scan loop ----------------------------------------------------------


def config(node: Node, concurrency: int) -> ChainConfig:
    return ChainConfig(
        name="solana", kind="solana", rpc_urls=(node.url,), payment_addresses=(node.payee,),
        usdc=USDC, chain_id=None, confirmations=0, finality="finalized",
        start_block=node.first_slot, rpc_concurrency=concurrency, rpc_timeout=30.0)


async def scan_loop(node: Node, *, batch_size: int, concurrency: int) -> dict[str, Any]:
    adapter = SolanaAdapter(config(node, concurrency), batch_size=batch_size)
    await adapter.open()
    node.ask("reset")
    started = time.perf_counter()
    try:
        cursors = await adapter.initial_cursors(node.first_slot, await adapter.view())
        found = []
        steps = 0
        while True:
            result = await adapter.scan(cursors, await adapter.view())
            found += result.payments
            cursors = result.cursors
            steps += 1
            if result.done:
                break
        seconds = time.perf_counter() - started
    finally:
        await adapter.close()
    check([(p.tx_hash, p.amount) for p in found], node)
    return {"seconds": seconds, "steps": steps, **node.ask("stats")}


def check(found: list[tuple[str, int]], node: Node) -> None:
    if [s for s, _ in found] != node.order:
        missing = set(node.order) - {s for s, _ in found}
        raise SystemExit(f"wrong payments: {len(found)} found, {len(missing)} missing, "
                         f"{len(found) - len(set(found))} repeated, or out of order")
    wrong = [s for s, a in found if node.payments[s] != a]
    if wrong:
        raise SystemExit(f"{len(wrong)} payments with a wrong amount, e.g. {wrong[0]}")


# --- 3. the daemon ---------------------------------------------------------------------------


def run_daemon(node: Node, concurrency: int, workdir: Path) -> dict[str, Any]:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from verifier import db, migrate
    from verifier.sqlfiles import queries

    admin = db.resolve_url(os.environ.get("DATABASE_URL"), REPO / "var")
    q = queries("admin.sql")
    name = "x402_bench_solana"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
        conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    migrate.run(url, say=lambda _m: None)
    env = {
        **os.environ, "DATABASE_URL": url, "X402_CHAINS": "solana",
        "X402_SOLANA_RPC_URLS": node.url, "X402_SOLANA_PAYMENT_ADDRESS": node.payee,
        "X402_SOLANA_START_BLOCK": str(node.first_slot),
        "X402_SOLANA_RPC_CONCURRENCY": str(concurrency),
        "X402_POLL_INTERVAL": "0.05", "X402_METRICS_ADDR": "off", "X402_LOG_FORMAT": "json",
    }
    log_path = workdir / "daemon_solana.log"
    node.ask("reset")
    verified = "SELECT count(*) FROM x402_payments WHERE chain = 'solana' AND status = 'verified'"
    started = time.perf_counter()
    ready_at = None
    with open(log_path, "w") as log_file, psycopg.connect(url, autocommit=True) as conn:
        proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"daemon exited early ({proc.returncode}); see {log_path}")
                if ready_at is None and '"daemon_running"' in log_path.read_text():
                    ready_at = time.perf_counter()
                row = conn.execute(verified).fetchone()
                if row and row[0] >= len(node.payments):
                    break
                time.sleep(0.01)
            done_at = time.perf_counter()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        rows = conn.execute("SELECT tx_hash, amount_usdc FROM x402_payments "
                            "WHERE chain = 'solana' ORDER BY block_number").fetchall()
    check([(tx, int(amount * 10**6)) for tx, amount in rows], node)
    return {"seconds": done_at - started,
            "after_ready": done_at - (ready_at if ready_at is not None else started),
            **node.ask("stats")}


# --- report ----------------------------------------------------------------------------------


def line(label: str, n: int, figures: dict[str, Any]) -> str:
    calls = figures["calls"]
    return (f"{label:46s} {figures['seconds']:6.2f} s  {n / figures['seconds']:6.0f} pay/s  "
            f"HTTP requests/payment {figures['http'] / n:.3f}  "
            f"getTransaction/payment {calls.get('getTransaction', 0) / n:.3f}  "
            f"getSignaturesForAddress {calls.get('getSignaturesForAddress', 0)}  "
            f"errors {figures['errors'] or '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2_000)
    parser.add_argument("--payers", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="X402_SOLANA_RPC_CONCURRENCY (default as configured: 8)")
    parser.add_argument("--no-daemon", action="store_true")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2]))

    workdir = REPO / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(args.payments, args.payers, args.latency)
    try:
        n = len(node.payments)
        print(f"setup: {n} USDC payments from {args.payers} payers executed in LiteSVM in "
              f"{node.setup_seconds:.1f}s; {args.latency * 1000:.0f} ms added to every HTTP "
              f"request; RPC concurrency {args.concurrency}")
        runs = [
            ("adapter scan loop, batches of 20", 20, args.concurrency),
            ("adapter scan loop, 1 call per request", 1, args.concurrency),
            ("adapter scan loop, 1 call per request, c=64", 1, 64),
        ]
        for label, batch, concurrency in runs:
            print(line(label, n, asyncio.run(scan_loop(node, batch_size=batch,
                                                       concurrency=concurrency))), flush=True)
        if not args.no_daemon:
            figures = run_daemon(node, args.concurrency, workdir)
            print(line("daemon -> PostgreSQL, all verified", n, figures))
            print(f"{'':46s} ({figures['after_ready']:.2f} s after daemon_running)")
    finally:
        node.close()


if __name__ == "__main__":
    main()
