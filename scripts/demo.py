#!/usr/bin/env python3
"""The offline demo (`make demo`), stage 1: the database side of x402-verifier at work.

With DATABASE_URL unset it starts the embedded PostgreSQL under var/ (nothing to install);
with it set, it uses that database and touches only rows paid to the demo payees. Steps: apply
the migrations, record payments on the three chains, issue tokens, spend requests through
verifier.consume_request, run both maintenance functions, print the four views.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import config, db, migrate
from verifier.config import base_units_to_usdc, usdc_to_base_units
from verifier.errors import VerifierError
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
    settings = config.load_database(os.environ)
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


def main() -> int:
    try:
        return run()
    except VerifierError as exc:  # a bad setting, or migrations that cannot be applied
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


if __name__ == "__main__":
    raise SystemExit(main())
