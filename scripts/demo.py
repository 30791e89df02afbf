#!/usr/bin/env python3
"""The offline demo (`make demo`): x402-verifier at work, on a laptop with no network.

Full demo (the default): a fresh database `x402_demo` (on the embedded PostgreSQL under var/
when DATABASE_URL is unset, else on DATABASE_URL's server, next to its database, which is never
touched), an anvil chain with id 8453 and USDC at its canonical Base address, the LiteSVM Solana
node with the real USDC mint, and the daemon itself. A payer sends payments (valid, underpaid,
a look-alike token), claims the valid ones with signed proofs, spends requests; then the
analytics job runs and the four views are printed. After the scripted part the payer keeps
paying for --duration seconds. Ctrl-C ends it early; nothing is left running either way.

--sql-only (stage 1): only the database side, in DATABASE_URL's database (or the embedded one):
apply the migrations, record payments on the three chains, issue tokens, spend requests through
verifier.consume_request, run both maintenance functions, print the four views. It touches only
rows paid to the demo payees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import api, config, db, jobs, logs, migrate, rules
from verifier.devnet.evm import sign_claim
from verifier.devnet.solana_tokens import USDC_MINT
from verifier.errors import VerifierError
from verifier.money import base_units_to_usdc, usdc_to_base_units
from verifier.sqlfiles import queries

Q = queries("demo.sql")
PRICE_PER_REQUEST = usdc_to_base_units("0.001")  # the default X402_PRICE_PER_REQUEST_USDC
MIN_PAYMENT = usdc_to_base_units("0.10")  # the default X402_MIN_PAYMENT_USDC
ACCESS_TTL = timedelta(hours=24)
PAYEES = {
    "base": "0x00000000000000000000000000000000000de402",
    "ethereum": "0x00000000000000000000000000000000000de402",
    "solana": "DemoPayee1111111111111111111111111111111402",
}


@dataclass(frozen=True)
class DemoPayment:
    """A payment as the chain watcher would record it. `age` places verification in the past
    as a fraction of the current hour; `days_ago` places it before that."""

    name: str
    chain: str
    payer: str
    amount: str
    status: str
    age: float = 0.5
    days_ago: float = 0.0


PAYMENTS = [
    DemoPayment("alice", "base", "0x71c7656ec7ab88b098defb751b7401b5f6d8976f", "0.250", "verified",
                age=0.9),
    DemoPayment("bob", "base", "0x2546bcd3c84621e976d8185a91a922ae77ecec30", "0.120", "verified",
                age=0.6),
    DemoPayment("carol", "ethereum", "0xbda5747bfd65f08deb54cb465eb87d40e51b197e", "0.100",
                "verified", age=0.5),
    DemoPayment("dave", "solana", "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU", "1.500",
                "verified", age=0.3),
    DemoPayment("erin", "solana", "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", "0.050",
                "underpaid", age=0.2),
    DemoPayment("frank", "base", "0xdd2fd4581271e230360230f9337d5c0430bf44c0", "0.300", "verified",
                days_ago=1.1),
    DemoPayment("grace", "ethereum", "0x8626f6940e2eb28930efb4cef49b2c1f2c9c1199", "0.200",
                "pending", age=0.1),
    DemoPayment("heidi", "base", "0x90f79bf6eb2c4f870365e785982e1f101e93b906", "0.200", "reorged",
                age=0.4),
]

# Who spends what: (payer, endpoint, method, status code, response ms, times).
REQUESTS = [
    ("alice", "/api/v1/quote", "GET", 200, 18, 4),
    ("alice", "/api/v1/search", "POST", 200, 64, 2),
    ("bob", "/api/v1/quote", "GET", 200, 21, 3),
    ("bob", "/api/v1/report", "GET", 404, 5, 1),
    ("carol", "/api/v1/search", "POST", 200, 57, 100),  # all it paid for
    ("carol", "/api/v1/search", "POST", 200, 57, 1),  # one too many: exhausted
    ("dave", "/api/v1/report", "GET", 200, 240, 2),
    ("dave", "/api/v1/quote", "GET", 500, 31, 1),
    ("frank", "/api/v1/quote", "GET", 200, 20, 1),  # past its 24 hours: expired
    ("heidi", "/api/v1/quote", "GET", 200, 20, 1),  # its transfer vanished in a reorg
]


# --- steps --------------------------------------------------------------------------------------

def connect() -> str:
    settings = config.load(os.environ, chains=False)
    if settings.database_url:
        say("Using DATABASE_URL.")
    else:
        say(f"DATABASE_URL is not set: starting the embedded PostgreSQL under "
            f"{settings.embedded_dir}/ ...")
    return db.resolve_url(settings.database_url, settings.embedded_dir)


def apply_migrations(url: str) -> None:
    heading("Migrations")
    migrate.run(url, say=lambda m: say(f"  {m}"))


def forget_previous_run(conn: psycopg.Connection) -> None:
    conn.execute(Q["forget_previous_run"], {"payees": list(set(PAYEES.values()))})


def record_payments(conn: psycopg.Connection, now: datetime) -> dict[str, int]:
    heading("Payments seen on chain (as the watchers record them)")
    hour = now.replace(minute=0, second=0, microsecond=0)
    ids = {}
    for p in PAYMENTS:
        ids[p.name] = one(conn, "insert_payment", payment_row(p, now, hour))[0]
    show(conn, "payments", {"payees": list(set(PAYEES.values()))})
    return ids


def payment_row(p: DemoPayment, now: datetime, hour: datetime) -> dict[str, Any]:
    units = usdc_to_base_units(p.amount)
    verified_at = hour + (now - hour) * (1 - p.age) - timedelta(days=p.days_ago)
    evm = p.chain != "solana"
    return {
        "tx_hash": "0x" + secrets.token_hex(32) if evm else secrets.token_hex(44),
        "chain": p.chain,
        "amount_usdc": base_units_to_usdc(units),
        "from_address": p.payer,
        "to_address": PAYEES[p.chain],
        "block_number": 20_000_000 + secrets.randbelow(1_000_000),
        "block_hash": "0x" + secrets.token_hex(32),
        "confirmations": 0 if p.status == "pending" else 12,
        "status": p.status,
        "requests_allocated": units // PRICE_PER_REQUEST if units >= MIN_PAYMENT else 0,
        "verified_at": None if p.status == "pending" else verified_at,
        "expires_at": verified_at + ACCESS_TTL,
    }


def issue_tokens(conn: psycopg.Connection, ids: dict[str, int]) -> dict[str, str]:
    """A token per claimed payment; only its SHA-256 is stored. Returns name -> token hash."""
    heading("Tokens issued (only their SHA-256 is stored)")
    hashes = {}
    for name in ("alice", "bob", "carol", "dave", "frank", "heidi"):
        token = secrets.token_urlsafe(32)
        hashes[name] = hashlib.sha256(token.encode()).hexdigest()
        conn.execute(Q["insert_token"], {"token_hash": hashes[name], "payment_id": ids[name]})
        say(f"  {name:<6} token {token[:10]}…  stored as sha256 {hashes[name][:16]}…")
    return hashes


def spend_requests(conn: psycopg.Connection, hashes: dict[str, str]) -> None:
    heading("Paid requests through verifier.consume_request()")
    for name, endpoint, method, code, ms, times in REQUESTS:
        outcomes = [consume(conn, hashes[name], endpoint, method, code, ms)
                    for _ in range(times)]
        report(f"{name} {method} {endpoint} x{times}", outcomes)
    report("unknown token", [consume(conn, hashlib.sha256(b"never issued").hexdigest())])
    report("malformed token", [consume(conn, "not-a-token")])


def consume(conn: psycopg.Connection, token_hash: str, endpoint: str = "/api/v1/quote",
            method: str = "GET", status_code: int = 200,
            response_time_ms: int = 10) -> tuple[bool, int, str | None]:
    row = one(conn, "consume_request", {
        "token_hash": token_hash, "endpoint": endpoint, "method": method,
        "status_code": status_code, "response_time_ms": response_time_ms,
        "ip_address": "203.0.113.10", "user_agent": "x402-demo/1.0",
    })
    return bool(row[0]), int(row[1]), row[2]


def report(what: str, outcomes: list[tuple[bool, int, str | None]]) -> None:
    allowed = sum(1 for ok, _, _ in outcomes if ok)
    refused = {reason for ok, _, reason in outcomes if not ok}
    last_remaining = outcomes[-1][1]
    text = f"{allowed} allowed, {last_remaining} left"
    if refused:
        text += f", refused: {', '.join(sorted(str(r) for r in refused))}"
    say(f"  {what:<38} {text}")


def run_maintenance(conn: psycopg.Connection, hour: datetime) -> None:
    heading("Maintenance")
    expired = one(conn, "cleanup")[0]
    say(f"  cleanup_expired_x402_payments(): {expired} payment(s) expired; tokens of expired "
        "and reorged payments deleted")
    conn.execute(Q["update_analytics"], {"hour": hour})
    say(f"  update_x402_analytics('{hour:%Y-%m-%d %H:00}Z'): the hour so far, one row per chain")
    show(conn, "analytics_for_hour", {"hour": hour})
    show(conn, "payments", {"payees": list(set(PAYEES.values()))})


def show_views(conn: psycopg.Connection) -> None:
    for view, query in (("v_x402_active_payments", "active_payments"),
                        ("v_x402_stats_24h", "stats_24h"),
                        ("v_x402_top_payers (top 10)", "top_payers"),
                        ("v_x402_endpoint_stats", "endpoint_stats")):
        heading(view)
        show(conn, query)


# --- output -------------------------------------------------------------------------------------

def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def one(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None) -> tuple:
    row = conn.execute(Q[query], params).fetchone()
    if row is None:
        raise RuntimeError(f"demo: {query} returned no row")
    return row


def show(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None) -> None:
    cur = conn.execute(Q[query], params)
    columns = [c.name for c in cur.description or []]
    say(format_table(columns, cur.fetchall()))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], int | Decimal) for row in rows if row[i] is not None)
               and bool(rows) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return ("  " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                  for v, w, num in zip(values, widths, numeric, strict=True))
                ).rstrip()

    out = [line(columns), "  " + "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in text] or ["  (no rows)"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds the payer keeps paying after the scripted part (default 20)")
    parser.add_argument("--sql-only", action="store_true",
                        help="stage 1: the database side only, no chains and no daemon")
    args = parser.parse_args(argv)
    try:
        if args.sql_only:
            return run()
        return asyncio.run(run_full(max(0.0, args.duration)))
    except (VerifierError, RuntimeError) as exc:  # a bad setting, a step that did not happen
        print(f"demo: {exc}", file=sys.stderr)
        return 1


def run() -> int:
    url = connect()
    apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        now = datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        forget_previous_run(conn)
        ids = record_payments(conn, now)
        hashes = issue_tokens(conn, ids)
        spend_requests(conn, hashes)
        run_maintenance(conn, hour)
        show_views(conn)
    say()
    say("Done. The same views from psql: psql \"$DATABASE_URL\" -c 'SELECT * FROM v_x402_stats_24h'")
    return 0


# --- the full demo: chains, the daemon, a payer ---------------------------------------------------

DEMO_DATABASE = "x402_demo"
EVM_PAYEE = PAYEES["base"]
CONFIRMATIONS = 3
BLOCK_TIME = 1.0  # seconds between the blocks the demo mines on top of automine
WAIT = 60.0  # seconds any one step may take before the demo gives up


@dataclass
class Payer:
    name: str
    chain: str
    address: str
    key: Any  # an eth_account LocalAccount (EVM) or a solders Keypair (Solana)

    def prove(self, tx_hash: str, token_hash: str) -> str:
        message = rules.claim_message(self.chain, tx_hash, token_hash)
        if self.chain == "solana":
            return str(self.key.sign_message(message.encode()))
        return sign_claim(self.key.key, message)


@dataclass
class Demo:
    url: str
    evm: Any  # verifier.devnet.evm.EvmDevnet
    kit: Any  # verifier.devnet.solana_tokens.TokenKit
    sol_payee: Any  # Keypair
    daemon: Any  # verifier.daemon.Daemon
    names: dict[str, str]  # payer address -> name, for the progress lines

    async def pay(self, payer: Payer, units: int, *, token: str | None = None) -> str:
        if payer.chain == "solana":
            return await asyncio.to_thread(self.kit.transfer, payer.key, self.sol_payee.pubkey(),
                                           units)
        return await asyncio.to_thread(self.evm.transfer, payer.key, EVM_PAYEE, units, token)

    async def claim(self, payer: Payer, tx_hash: str, chain: str | None = None
                    ) -> tuple[str, str | None, str]:
        """Submits a claim as an API server does and waits for its verdict: (status, reason,
        token)."""
        token, token_hash = api.new_token()
        q = queries("api.sql")
        async with self.daemon.pool.connection() as conn:
            cur = await conn.execute(q["submit_claim"], {
                "chain": chain or payer.chain, "tx_hash": tx_hash, "token_hash": token_hash,
                "proof": payer.prove(tx_hash, token_hash)})
            claim_id, status, reason = await cur.fetchone()
            deadline = time.monotonic() + WAIT
            while status == "waiting" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                cur = await conn.execute(q["claim_status"], {"claim_id": claim_id})
                status, reason = await cur.fetchone()
        return status, reason, token

    async def spend(self, token: str, endpoint: str, times: int) -> tuple[int, int, str | None]:
        """(allowed, requests left, last refusal) for ``times`` paid requests."""
        allowed, left, refused = 0, 0, None
        async with self.daemon.pool.connection() as conn:
            for i in range(times):
                cur = await conn.execute(Q["consume_request"], {
                    "token_hash": api.hash_token(token), "endpoint": endpoint, "method": "GET",
                    "status_code": 200, "response_time_ms": 15 + 7 * i,
                    "ip_address": "203.0.113.10", "user_agent": "x402-demo/1.0"})
                ok, left, reason = await cur.fetchone()
                allowed += bool(ok)
                refused = refused if ok else reason
        return allowed, left, refused

    async def status_of(self, chain: str, tx_hash: str) -> str | None:
        async with self.daemon.pool.connection() as conn:
            cur = await conn.execute(Q["payment_status"], {"chain": chain, "tx_hash": tx_hash})
            row = await cur.fetchone()
        return row[0] if row else None

    async def until_status(self, chain: str, tx_hash: str, wanted: str) -> None:
        deadline = time.monotonic() + WAIT
        while (found := await self.status_of(chain, tx_hash)) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo: {chain} {tx_hash} is {found}, not {wanted}, "
                                   f"after {WAIT:.0f}s")
            await asyncio.sleep(0.2)


def fresh_demo_database() -> str:
    """Drops and creates `x402_demo` next to DATABASE_URL's database (or in the embedded
    server), so every run starts from nothing and a real database is never touched."""
    settings = config.load(os.environ, chains=False)
    if settings.database_url:
        say(f"DATABASE_URL is set: using a fresh database {DEMO_DATABASE!r} on that server.")
    else:
        say(f"DATABASE_URL is not set: starting the embedded PostgreSQL under "
            f"{settings.embedded_dir}/ ...")
    url = db.resolve_url(settings.database_url, settings.embedded_dir)
    admin = queries("admin.sql")
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        for name in ("drop_database", "create_database"):
            conn.execute(sql.SQL(admin[name]).format(name=sql.Identifier(DEMO_DATABASE)))
    return make_conninfo(url, dbname=DEMO_DATABASE)


def daemon_env(evm_url: str, sol_url: str, sol_payee: str) -> dict[str, str]:
    return {
        "X402_CHAINS": "base,solana",
        "X402_BASE_RPC_URLS": evm_url,
        "X402_BASE_PAYMENT_ADDRESS": EVM_PAYEE,
        "X402_BASE_CONFIRMATIONS": str(CONFIRMATIONS),
        "X402_BASE_START_BLOCK": "0",
        "X402_SOLANA_RPC_URLS": sol_url,
        "X402_SOLANA_PAYMENT_ADDRESS": sol_payee,
        "X402_SOLANA_START_BLOCK": "0",
        "X402_POLL_INTERVAL": "0.3",
        "X402_WORKERS": "2",
        "X402_METRICS_ADDR": "127.0.0.1:0",
        "X402_ANALYTICS_BACKFILL_HOURS": "24",
        "X402_LOG_FORMAT": "console",
    }


async def run_full(duration: float) -> int:
    from verifier.daemon import Daemon
    from verifier.devnet.evm import local_devnet
    from verifier.devnet.solana_server import SolanaServer
    from verifier.devnet.solana_tokens import TokenKit

    logs.configure("console", level=logging.WARNING)  # the demo prints its own progress
    url = fresh_demo_database()
    apply_migrations(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    heading("Chains (offline)")
    with local_devnet("base") as evm, SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        sol_payee = kit.wallet()
        kit.create_ata(sol_payee.pubkey())
        say(f"  base    anvil {evm.url}, chain id {evm.chain_id}, Circle's USDC (FiatTokenV2_2) "
            f"at {evm.usdc}, a look-alike 'USDC' at {evm.lookalike}")
        say(f"  solana  LiteSVM node {node.url}, USDC mint {USDC_MINT}")
        cfg = config.load(daemon_env(evm.url, node.url, str(sol_payee.pubkey())))
        async with Daemon.open(cfg, url) as daemon:
            demo = Demo(url, evm, kit, sol_payee, daemon, names={})
            interrupted = await run_daemon_with(demo, stop, duration)
    say()
    say("Everything is stopped. The demo database stays for psql:")
    say(f"  psql '{url}' -c 'SELECT * FROM v_x402_stats_24h'")
    return 130 if interrupted else 0


async def run_daemon_with(demo: Demo, stop: asyncio.Event, duration: float) -> bool:
    """Runs the daemon, the block producer, the progress printer and the payer; returns
    whether Ctrl-C cut it short."""
    daemon = demo.daemon
    host, port = daemon.metrics_server.address
    heading("Daemon")
    say(f"  x402-verifier run: watching base and solana; metrics on http://{host}:{port}/metrics")
    running = asyncio.create_task(daemon.run(stop))
    helpers = [asyncio.create_task(produce_blocks(demo.evm.url, stop)),
               asyncio.create_task(follow_payments(demo, stop))]
    payer = asyncio.create_task(pay_and_claim(demo, duration))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([payer, stopped, running], return_when=asyncio.FIRST_COMPLETED)
    interrupted = stop.is_set() and not payer.done()
    if interrupted:
        say("\nInterrupted: stopping.")
    payer.cancel()
    await asyncio.gather(payer, return_exceptions=True)
    if payer.done() and not payer.cancelled() and payer.exception():
        stop.set()
        await asyncio.gather(running, *helpers, stopped, return_exceptions=True)
        raise payer.exception()  # type: ignore[misc]
    await wrap_up(demo)
    stop.set()
    await asyncio.gather(running, *helpers, stopped, return_exceptions=True)
    return interrupted


async def produce_blocks(evm_url: str, stop: asyncio.Event) -> None:
    """anvil mines a block per transaction; these extra blocks bring confirmations."""
    from verifier.devnet.anvil import rpc

    while not stop.is_set():
        await asyncio.to_thread(rpc, evm_url, "anvil_mine", ["0x1"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=BLOCK_TIME)


async def follow_payments(demo: Demo, stop: asyncio.Event) -> None:
    """Prints each payment as the daemon records it, and each change of its status."""
    seen: dict[tuple[str, str], str] = {}
    while not stop.is_set():
        async with demo.daemon.pool.connection() as conn:
            rows = await (await conn.execute(Q["payments_seen"])).fetchall()
        for chain, tx_hash, status, amount, payer in rows:
            if seen.get((chain, tx_hash)) != status:
                was = seen.get((chain, tx_hash))
                seen[(chain, tx_hash)] = status
                change = f"{was} -> {status}" if was else f"recorded {status}"
                say(f"  [daemon] {chain:<7} {short(tx_hash)} {amount:>9f} USDC from "
                    f"{demo.names.get(payer, short(payer))}: {change}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.3)


async def pay_and_claim(demo: Demo, duration: float) -> None:
    evm, kit = demo.evm, demo.kit
    alice, bob, mallory, eve = (Payer(n, "base", a.address.lower(), a) for n, a in
                                zip(("alice", "bob", "mallory", "eve"), evm.accounts[1:5],
                                    strict=True))
    dave = await solana_payer(kit, "dave", 5_000_000)
    erin = await solana_payer(kit, "erin", 5_000_000)
    for p in (alice, bob, mallory, eve, dave, erin):
        demo.names[p.address] = p.name
    await asyncio.to_thread(evm.mint, alice.key, 10_000_000)
    await asyncio.to_thread(evm.mint, bob.key, 10_000_000)
    await asyncio.to_thread(evm.mint, mallory.key, 10_000_000, evm.lookalike)

    heading("Payments (the payer)")
    paid = {
        "alice": await demo.pay(alice, 1_000_000),
        "bob": await demo.pay(bob, 50_000),
        "mallory": await demo.pay(mallory, 5_000_000, token=evm.lookalike),
        "dave": await demo.pay(dave, 500_000),
        "erin": await demo.pay(erin, 20_000),
    }
    say("  alice   pays 1.00 USDC on base;  bob pays 0.05 (under the 0.10 minimum)")
    say("  mallory pays 5.00 of a look-alike 'USDC' on base (another contract: not a payment)")
    say("  dave    pays 0.50 USDC on solana; erin pays 0.02 (under the minimum)")
    for chain, name, wanted in (("base", "alice", "verified"), ("base", "bob", "underpaid"),
                                ("solana", "dave", "verified"), ("solana", "erin", "underpaid")):
        await demo.until_status(chain, paid[name], wanted)

    heading("Claims (as an API server submits them, with the payer's signed proof)")
    for who, tx, by in ((eve, paid["alice"], "eve claims alice's payment with her own key"),
                        (mallory, paid["mallory"], "mallory claims her look-alike payment"),
                        (bob, paid["bob"], "bob claims his underpayment")):
        status, reason, _ = await demo.claim(who, tx, chain="base")
        say(f"  {by:<48} {status}: {reason}")
    tokens = {}
    for who in (alice, dave):
        status, reason, token = await demo.claim(who, paid[who.name])
        tokens[who.name] = token
        by = f"{who.name} claims the payment on {who.chain}"
        say(f"  {by:<48} {status}{': ' + reason if reason else ''} "
            f"(token {token[:12]}…, shown once)")
    status, reason, _ = await demo.claim(alice, paid["alice"])
    say(f"  {'alice claims it again':<48} {status}: {reason}")

    heading("Paid requests (verifier.consume_request)")
    for name, endpoint, times in (("alice", "/api/v1/quote", 3), ("dave", "/api/v1/report", 2)):
        allowed, left, _ = await demo.spend(tokens[name], endpoint, times)
        say(f"  {name:<6} GET {endpoint:<16} x{times}: {allowed} allowed, {left} left")

    await exact_payment(demo)

    if duration > 0:
        heading(f"More payments for {duration:g}s (Ctrl-C ends the demo)")
        await keep_paying(demo, time.monotonic() + duration)


async def exact_payment(demo: Demo) -> None:
    """x402's "exact" scheme: the payer signs an EIP-3009 authorization for one request's price
    and a facilitator (here anvil's first account) submits it to Circle's USDC. It is verified
    against X402_EXACT_MIN_PAYMENT_USDC (one request's price), not the 0.10 minimum."""
    evm = demo.evm
    carol = Payer("carol", "base", evm.accounts[9].address.lower(), evm.accounts[9])
    demo.names[carol.address] = carol.name
    heading("An x402 'exact' payment (EIP-3009 transferWithAuthorization, by a facilitator)")
    await asyncio.to_thread(evm.mint, carol.key, 1_000_000)
    tx = await asyncio.to_thread(evm.pay_with_authorization, carol.key, EVM_PAYEE, 1_000,
                                 sender=evm.accounts[0])
    await demo.until_status("base", tx, "verified")
    status, reason, token = await demo.claim(carol, tx)
    allowed, left, _ = await demo.spend(token, "/api/v1/quote", 1)
    say(f"  carol   pays 0.001 USDC (one request) by an authorization a facilitator settles: "
        f"verified; claim {status}{': ' + reason if reason else ''}, {allowed} allowed, "
        f"{left} left")


async def solana_payer(kit: Any, name: str, units: int) -> Payer:
    wallet = await asyncio.to_thread(kit.wallet)
    await asyncio.to_thread(kit.fund, wallet.pubkey(), units)
    return Payer(name, "solana", str(wallet.pubkey()), wallet)


async def keep_paying(demo: Demo, deadline: float) -> None:
    """A payment every couple of seconds, alternating chains, each claimed and used."""
    rng = random.Random(402)
    evm_payers = [Payer(f"payer{i}", "base", a.address.lower(), a)
                  for i, a in enumerate(demo.evm.accounts[5:9], start=1)]
    for p in evm_payers:
        demo.names[p.address] = p.name
        await asyncio.to_thread(demo.evm.mint, p.key, 100_000_000)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if n % 2:
            payer = evm_payers[(n // 2) % len(evm_payers)]
        else:
            payer = await solana_payer(demo.kit, f"sol{n // 2}", 100_000_000)
            demo.names[payer.address] = payer.name
        units = rng.randrange(100_000, 2_000_001, 10_000)
        tx = await demo.pay(payer, units)
        status, reason, token = await demo.claim(payer, tx)
        allowed, left, _ = await demo.spend(token, "/api/v1/quote", rng.randint(1, 3)) \
            if status == "issued" else (0, 0, None)
        say(f"  {payer.name:<7} paid {units / 1e6:.2f} USDC on {payer.chain:<6} -> claim "
            f"{status}{': ' + reason if reason else ''}, {allowed} request(s) used, {left} left")


async def wrap_up(demo: Demo) -> None:
    heading("Analytics job (as scheduled at minute 5, here for the current hour)")
    runner = jobs.Jobs(demo.daemon.pool, backfill_hours=0, retention_days=90)
    run = await runner.run("analytics", hour=datetime.now(UTC))
    say(f"  analytics: {run.status} for {run.detail.get('first')} in {run.seconds:.3f}s")
    with psycopg.connect(demo.url, autocommit=True) as conn:
        show(conn, "analytics_for_hour", {"hour": datetime.now(UTC)})
        heading("Payments recorded")
        show(conn, "all_payments")
        show_views(conn)


def short(value: str) -> str:
    return f"{value[:8]}…{value[-4:]}" if len(value) > 14 else value


if __name__ == "__main__":
    raise SystemExit(main())
