#!/usr/bin/env python3
"""Benchmark: x402 "exact" settlements on Solana through the daemon's facilitator.

    .venv/bin/python scripts/bench_x402_svm.py [--settlements 1000] [--concurrency 32]
                                               [--latency 0.05]

1. The LiteSVM node (verifier/devnet/solana_server.py) in a child process, every HTTP request
   answered after ``--latency`` seconds: USDC, one payee with its ATA, a funded fee payer, payers.
2. The real daemon (`python -m verifier run`, its own process) with X402_FACILITATOR_ADDR and
   X402_SOLANA_SETTLER_KEY_FILE, on a fresh database (DATABASE_URL if set, else the embedded
   PostgreSQL under var/).
3. This process builds each payment as @x402/svm's client does (limit, price, TransferChecked,
   a nonce memo; the payer's signature only; a blockhash fetched once per 50 payments, as a
   client would reuse a recent one) and POSTs it to /settle, ``--concurrency`` at a time.
Printed: settlements per second, /settle p50/p99, the node's RPC requests per settlement (the
client's getLatestBlockhash left out; the watcher's own scan included), transactions per
settlement. Each run checks every answer is success:true with a distinct signature, each landed
once, and x402_payments holds one verified row per settlement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRICE = 10_000
NETWORK = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"


def serve(payers: int, latency: float) -> None:
    """Child: the node and its accounts; answers commands on stdin."""
    from verifier.devnet.solana_server import SolanaServer
    from verifier.devnet.solana_tokens import TokenKit

    with SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        payee = kit.wallet()
        kit.create_ata(payee.pubkey())
        fee_payer = kit.wallet(10**13)
        wallets = [kit.wallet() for _ in range(payers)]
        for w in wallets:
            kit.fund(w.pubkey(), 10**12)
        node.latency = latency
        print(json.dumps({"url": node.url, "payee": str(payee.pubkey()),
                          "slot": node.slot, "fee_payer": list(bytes(fee_payer)),
                          "payers": [list(bytes(w)) for w in wallets]}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps({"calls": dict(node.calls), "errors": dict(node.errors),
                                  "http": node.http_requests, "sent": dict(node.sent),
                                  "landed": len(node.ledger)}), flush=True)
            elif command == "reset":
                node.reset_counts()
                node.sent.clear()
                print("{}", flush=True)
            elif command == "quit":
                break


class Node:
    def __init__(self, payers: int, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(payers), str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())

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


def fresh_database() -> str:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from verifier import db, migrate
    from verifier.sqlfiles import queries

    admin = db.resolve_url(os.environ.get("DATABASE_URL"), REPO / "var")
    q = queries("admin.sql")
    name = "x402_bench_svm"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
        conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    migrate.run(url, say=lambda _m: None)
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(node: Node, n: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    import httpx
    from solders.hash import Hash
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey

    from verifier.devnet import svm_payments as sp

    info = node.info
    payers = [Keypair.from_bytes(bytes(k)) for k in info["payers"]]
    fee_payer = Keypair.from_bytes(bytes(info["fee_payer"]))
    payee = Pubkey.from_string(info["payee"])
    key_file = workdir / "fee-payer.json"
    key_file.write_text(json.dumps(info["fee_payer"]))
    key_file.chmod(0o600)
    token = secrets.token_urlsafe(24)
    token_file = workdir / "facilitator.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    url = fresh_database()
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": url, "X402_CHAINS": "solana",
        "X402_SOLANA_RPC_URLS": info["url"], "X402_SOLANA_PAYMENT_ADDRESS": info["payee"],
        "X402_SOLANA_START_BLOCK": str(info["slot"]), "X402_SOLANA_RPC_CONCURRENCY": "64",
        "X402_SOLANA_NETWORK": NETWORK, "X402_SOLANA_SETTLER_KEY_FILE": str(key_file),
        "X402_FACILITATOR_ADDR": f"127.0.0.1:{port}", "X402_FACILITATOR_TOKEN_FILE":
        str(token_file), "X402_POLL_INTERVAL": "0.05", "X402_METRICS_ADDR": "off",
        "X402_LOG_FORMAT": "json", "X402_FACILITATOR_SETTLE_TIMEOUT": "30",
    }
    log_path = workdir / "daemon_x402_svm.log"
    facilitator = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with open(log_path, "w") as log_file:  # noqa: ASYNC230  (once, before measuring)
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(
                    max_connections=concurrency * 2)) as client:
                for _ in range(300):
                    try:
                        if (await client.get(facilitator + "/supported", headers=headers)
                                ).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if proc.poll() is not None:
                        raise SystemExit(f"daemon exited ({proc.returncode}); see {log_path}")
                    await asyncio.sleep(0.1)
                node.ask("reset")
                blockhash: dict[str, Any] = {"value": None, "uses": 0}
                lock = asyncio.Lock()

                async def recent_blockhash() -> Hash:
                    async with lock:
                        if blockhash["value"] is None or blockhash["uses"] >= 50:
                            r = await client.post(info["url"], json={
                                "jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"})
                            blockhash["value"] = Hash.from_string(
                                r.json()["result"]["value"]["blockhash"])
                            blockhash["uses"] = 0
                        blockhash["uses"] += 1
                        return blockhash["value"]

                latencies: list[float] = []
                answers: list[dict[str, Any]] = []
                gate = asyncio.Semaphore(concurrency)

                async def one(i: int) -> None:
                    async with gate:
                        payer = payers[i % len(payers)]
                        ixs = [*sp.instructions(payer.pubkey(), payee, PRICE),
                               sp.memo(secrets.token_hex(16))]
                        tx = sp.transaction(fee_payer.pubkey(), [payer], ixs,
                                            await recent_blockhash())
                        body = sp.body(tx, sp.requirements(payee, PRICE, fee_payer.pubkey(),
                                                           network=NETWORK))
                        started = time.perf_counter()
                        r = await client.post(facilitator + "/settle", content=body,
                                              headers=headers)
                        latencies.append(time.perf_counter() - started)
                        answers.append(r.json())

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                seconds = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT tx_hash) FROM x402_payments "
                            "WHERE chain = 'solana' AND status = 'verified'").fetchone()
    stats = node.ask("stats")
    failed = [a for a in answers if not a.get("success")]
    sigs = {a.get("transaction") for a in answers if a.get("success")}
    if failed or len(sigs) != n or rows != (n, n):
        raise SystemExit(f"check failed: {len(failed)} not successful (first {failed[:1]}), "
                         f"{len(sigs)} distinct signatures, x402_payments {rows}")
    return {"seconds": seconds, "latencies": sorted(latencies), "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settlements", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--payers", type=int, default=50)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve[0]), float(args.serve[1]))
    workdir = REPO / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(args.payers, args.latency)
    try:
        n = args.settlements
        figures = asyncio.run(run(node, n, args.concurrency, workdir))
    finally:
        node.close()
    lat = figures["latencies"]
    stats = figures["stats"]
    calls = stats["calls"]
    client = calls.get("getLatestBlockhash", 0)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    sent = sum(stats["sent"].values())
    print(f"x402 exact on Solana: {n} settlements, concurrency {args.concurrency}, "
          f"{args.latency * 1000:.0f} ms added to every node request (LiteSVM confirms at once)")
    print(f"  {n / figures['seconds']:.0f} settlements/s ({figures['seconds']:.2f} s); "
          f"/settle p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print(f"  node HTTP requests per settlement {(stats['http'] - client) / n:.2f} "
          f"(by method: " + ", ".join(f"{m} {c / n:.2f}" for m, c in sorted(calls.items())
                                      if m != "getLatestBlockhash") + ")")
    print(f"  sendTransaction per settlement {sent / n:.2f}; transactions landed per "
          f"settlement {stats['landed'] and len(stats['sent']) / n:.2f}; errors "
          f"{stats['errors'] or '-'}")


if __name__ == "__main__":
    main()
