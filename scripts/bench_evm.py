#!/usr/bin/env python3
"""Benchmark: the daemon against a naive verifier on the same anvil chain, side by side.

    .venv/bin/python scripts/bench_evm.py [--payments 10000] [--payers 200] [--blocks 2000]

1. anvil (chain id 8453, USDC at its canonical address) gets N USDC payments from P payers
   spread over B blocks, then enough blocks for every payment to be final.
2. The daemon (`python -m verifier run`, its own process) starts from block 0 on a fresh
   database: time until every payment is verified, payments/s, RPC requests per payment
   (its own count, logged at exit), peak RSS (VmHWM).
3. The naive verifier (how the original x402 verifier worked: one receipt and one block-number
   call per transaction, one INSERT per payment) runs in its own process on another fresh
   database over the same transactions: the same figures.
4. Claim latency: C claims for confirmed payments, with valid payer proofs, submitted at R/s to
   a running daemon; latency from submit to token row (both stamped by PostgreSQL).
Uses DATABASE_URL if set, else the embedded PostgreSQL under var/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
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
from verifier.sqlfiles import queries  # noqa: E402

PAYEE = "0x2222222222222222222222222222222222222222"
CONFIRMATIONS = 10
MIN_PAYMENT = 100_000


def fresh_database(admin_url: str, name: str) -> str:
    q = queries("admin.sql")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
        conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    migrate.run(url, say=lambda _m: None)
    return url


def scalar(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_env(node_url: str, db_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "X402_CHAINS": "base",
        "X402_BASE_RPC_URLS": node_url,
        "X402_BASE_PAYMENT_ADDRESS": PAYEE,
        "X402_BASE_START_BLOCK": "0",
        "X402_BASE_CONFIRMATIONS": str(CONFIRMATIONS),
        "X402_POLL_INTERVAL": "0.05",
        "X402_METRICS_ADDR": "off",
        "X402_LOG_FORMAT": "json",
        "X402_WORKERS": "4",
    }


def run_daemon_until(env: dict[str, str], done, log_path: Path, on_ready=None) -> dict:
    """Starts the daemon, waits for `done()`; times from spawn and from its "daemon_running"."""
    started = time.perf_counter()
    ready_at = None
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            while ready_at is None or not done():
                if proc.poll() is not None:
                    raise SystemExit(f"daemon exited early ({proc.returncode}); see {log_path}")
                if ready_at is None and '"daemon_running"' in log_path.read_text():
                    ready_at = time.perf_counter()
                    if on_ready:
                        on_ready()
                time.sleep(0.005)
            elapsed = time.perf_counter() - started
            after_ready = time.perf_counter() - ready_at
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    requests = 0
    for line in log_path.read_text().splitlines():
        if '"rpc_totals"' in line:
            requests += json.loads(line)["requests"]
    return {"seconds": elapsed, "after_ready": after_ready, "rss_mb": rss,
            "rpc_requests": requests}


def naive_worker(node_url: str, db_url: str, hashes_file: str) -> None:
    """One receipt and one eth_blockNumber per transaction; one INSERT per payment."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(node_url))
    hashes = json.loads(Path(hashes_file).read_text())
    transfer = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    requests = 0
    started = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as conn:
        for tx in hashes:
            receipt = w3.eth.get_transaction_receipt(tx)
            head = w3.eth.block_number
            requests += 2
            if receipt["status"] != 1:
                continue
            amount, sender = 0, None
            for entry in receipt["logs"]:
                topics = entry["topics"]
                if (entry["address"].lower() == USDC_BASE and len(topics) == 3
                        and topics[0].to_0x_hex() == transfer
                        and "0x" + topics[2].hex()[-40:] == PAYEE):
                    amount += int(entry["data"].hex(), 16)
                    sender = sender or "0x" + topics[1].hex()[-40:]
            confirmations = head - receipt["blockNumber"] + 1
            if amount and confirmations >= CONFIRMATIONS:
                status = "verified" if amount >= MIN_PAYMENT else "underpaid"
                conn.execute(
                    queries("bench_evm.sql")["naive_insert"],
                    {"tx": tx, "amount": amount, "sender": sender, "payee": PAYEE,
                     "block": receipt["blockNumber"], "confirmations": confirmations,
                     "status": status, "requests": amount // 1_000},
                )
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "rpc_requests": requests,
                      "rss_mb": peak_rss_mb(os.getpid())}))


def run_naive(node_url: str, db_url: str, hashes: list[str], workdir: Path) -> dict:
    hashes_file = workdir / "naive_hashes.json"
    hashes_file.write_text(json.dumps(hashes))
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--naive-worker", node_url, db_url, str(hashes_file)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    # Like the daemon's: wall time from process start; its own loop time is "after start-up".
    figures["after_ready"] = figures["seconds"]
    figures["seconds"] = time.perf_counter() - started
    return figures


def claims_phase(node_url: str, db_url: str, signed: list[tuple[str, str, str]], rate: float,
                 log_path: Path) -> dict:
    """signed: (tx_hash, token_hash, proof). Submits at `rate`/s to a running daemon."""
    def submit() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            start = time.perf_counter()
            for i, (tx, token_hash, proof) in enumerate(signed):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                result = api.submit_claim(conn, "base", tx, token_hash, proof)
                assert result.claim_id is not None, result

    env = daemon_env(node_url, db_url)
    submitter = threading.Thread(target=submit)
    decided = "SELECT count(*) FROM verifier.claims WHERE status <> 'waiting'"

    figures = run_daemon_until(env, lambda: scalar(db_url, decided) >= len(signed), log_path,
                               on_ready=submitter.start)
    submitter.join()
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(queries("bench_evm.sql")["claim_latencies"]).fetchall()
        issued = scalar(db_url, "SELECT count(*) FROM verifier.claims WHERE status = 'issued'")
    latencies = sorted(float(ms) for (ms,) in rows)
    figures.update(issued=issued, p50_ms=percentile(latencies, 50),
                   p99_ms=percentile(latencies, 99))
    return figures


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, round(pct / 100 * len(values) + 0.5) - 1))
    return values[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--payers", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=2_000)
    parser.add_argument("--claims", type=int, default=1_000)
    parser.add_argument("--claim-rate", type=float, default=200.0)
    parser.add_argument("--no-naive", action="store_true",
                        help="skip the naive verifier (its figures are then not printed)")
    parser.add_argument("--naive-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_worker:
        return naive_worker(*args.naive_worker)

    workdir = REPO / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    admin = db.resolve_url(os.environ.get("DATABASE_URL"), REPO / "var")
    daemon_db = fresh_database(admin, "x402_bench_evm_daemon")
    naive_db = fresh_database(admin, "x402_bench_evm_naive")

    with Anvil(chain_id=8453, accounts=2) as node:
        devnet = EvmDevnet(node.url)
        devnet.install_usdc(USDC_BASE)
        payers = devnet.new_accounts(args.payers)
        devnet.mint_many([(p, 10**12) for p in payers])
        plan = [(payers[i % len(payers)], PAYEE, 100_000 + (i % 900_000))
                for i in range(args.payments)]
        per_block = max(1, -(-args.payments // args.blocks))
        t = time.perf_counter()
        hashes = devnet.bulk_transfers(plan, per_block=per_block)
        devnet.mine(CONFIRMATIONS + 1)
        print(f"setup: {len(hashes)} payments from {len(payers)} payers in "
              f"{-(-len(hashes) // per_block)} blocks (head {devnet.head()}), "
              f"generated in {time.perf_counter() - t:.1f}s")

        verified = "SELECT count(*) FROM x402_payments WHERE status = 'verified'"
        ours = run_daemon_until(daemon_env(node.url, daemon_db),
                                lambda: scalar(daemon_db, verified) >= len(hashes),
                                workdir / "daemon.log")
        if args.no_naive:
            print(f"\ndaemon: {len(hashes)} payments verified in {ours['seconds']:.2f}s "
                  f"({ours['after_ready']:.2f}s after start-up), "
                  f"{ours['rpc_requests'] / len(hashes):.4f} RPC/payment, "
                  f"peak RSS {ours['rss_mb']:.0f} MB")
        else:
            naive = run_naive(node.url, naive_db, hashes, workdir)
            assert scalar(naive_db, verified) == len(hashes), "naive verifier missed payments"
            report("verify all payments from block 0", len(hashes), ours, naive)

        by_tx = dict(zip(hashes, (payer for payer, _, _ in plan), strict=True))
        chosen = hashes[: args.claims]
        signed = []
        for tx in chosen:
            _, token_hash = api.new_token()
            proof = sign_claim(by_tx[tx].key, rules.claim_message("base", tx, token_hash))
            signed.append((tx, token_hash, proof))
        claims = claims_phase(node.url, daemon_db, signed, args.claim_rate,
                              workdir / "daemon-claims.log")
        print(f"\nclaims: {len(signed)} submitted at {args.claim_rate:.0f}/s, "
              f"{claims['issued']} issued; submit -> token row p50 {claims['p50_ms']:.1f} ms, "
              f"p99 {claims['p99_ms']:.1f} ms (targets 50 / 250 ms); daemon peak RSS "
              f"{claims['rss_mb']:.0f} MB")


def report(title: str, n: int, ours: dict, naive: dict) -> None:
    rows = [
        ("time to all verified (s)", f"{ours['seconds']:.2f}", f"{naive['seconds']:.2f}"),
        ("  of which after start-up", f"{ours['after_ready']:.2f}",
         f"{naive['after_ready']:.2f}"),
        ("payments / s", f"{n / ours['seconds']:.0f}", f"{n / naive['seconds']:.0f}"),
        ("payments / s after start-up", f"{n / ours['after_ready']:.0f}",
         f"{n / naive['after_ready']:.0f}"),
        ("RPC requests / payment", f"{ours['rpc_requests'] / n:.4f}",
         f"{naive['rpc_requests'] / n:.4f}"),
        ("peak RSS (MB)", f"{ours['rss_mb']:.0f}", f"{naive['rss_mb']:.0f}"),
    ]
    print(f"\n{title}: {n} payments")
    print(f"{'':28}{'daemon':>12}{'naive':>12}")
    for name, a, b in rows:
        print(f"{name:28}{a:>12}{b:>12}")
    print(f"speed-up: {naive['seconds'] / ours['seconds']:.1f}x from process start, "
          f"{naive['after_ready'] / ours['after_ready']:.1f}x after start-up "
          f"(targets: >= 2000 payments/s, >= 20x, <= 0.02 RPC/payment, RSS <= 150 MB)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")


if __name__ == "__main__":
    main()
