"""Hand-built rows for the database tests, written with the same parameterised SQL a client uses.

Amounts are integers of USDC base units; times are aware UTC datetimes (or offsets from now).
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from verifier.money import base_units_to_usdc

USDC = 1_000_000  # base units in one USDC

INSERT_PAYMENT = """
INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, block_number,
                           confirmations, status, requests_allocated, requests_used,
                           verified_at, expires_at)
VALUES (%(tx_hash)s, %(chain)s, %(amount_usdc)s, %(from_address)s, %(to_address)s,
        %(block_number)s, %(confirmations)s, %(status)s, %(requests_allocated)s,
        %(requests_used)s, %(verified_at)s, %(expires_at)s)
RETURNING id
"""

INSERT_TOKEN = """
INSERT INTO x402_tokens (token_hash, payment_id, expires_at)
VALUES (%(token_hash)s, %(payment_id)s, %(expires_at)s)
"""

INSERT_USAGE = """
INSERT INTO x402_usage (payment_id, endpoint, method, status_code, response_time_ms, created_at)
VALUES (%(payment_id)s, %(endpoint)s, %(method)s, %(status_code)s, %(response_time_ms)s,
        %(created_at)s)
"""

CONSUME = """
SELECT allowed, requests_remaining, reason
  FROM verifier.consume_request(%(token_hash)s, %(endpoint)s, %(method)s, %(status_code)s,
                                %(response_time_ms)s, %(ip_address)s, %(user_agent)s)
"""

_serial = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def payment(conn: psycopg.Connection, **fields: Any) -> int:
    """Inserts a payment (verified, 1 USDC, 100 requests, expiring in an hour unless told)."""
    n = next(_serial)
    row = {
        "tx_hash": f"0x{n:064x}",
        "chain": "base",
        "amount_units": USDC,
        "from_address": "0x" + "aa" * 20,
        "to_address": "0x" + "bb" * 20,
        "block_number": 1000 + n,
        "confirmations": 12,
        "status": "verified",
        "requests_allocated": 100,
        "requests_used": 0,
        "verified_at": None,
        "expires_at": now() + timedelta(hours=1),
    }
    unknown = set(fields) - set(row)
    assert not unknown, f"unknown payment fields {unknown}"
    row.update(fields)
    row["amount_usdc"] = base_units_to_usdc(row.pop("amount_units"))
    return int(conn.execute(INSERT_PAYMENT, row).fetchone()[0])


def token(conn: psycopg.Connection, payment_id: int, *, name: str | None = None,
          expires_at: datetime | None = None) -> str:
    """Issues a token for a payment and returns its hash (what consume_request takes)."""
    h = token_hash(name or f"token-{payment_id}-{next(_serial)}")
    conn.execute(INSERT_TOKEN, {"token_hash": h, "payment_id": payment_id,
                                "expires_at": expires_at or now() + timedelta(hours=1)})
    return h


def usage(conn: psycopg.Connection, payment_id: int, *, endpoint: str = "/api/data",
          status_code: int = 200, response_time_ms: int | None = 10,
          created_at: datetime | None = None, method: str = "GET") -> None:
    conn.execute(INSERT_USAGE, {"payment_id": payment_id, "endpoint": endpoint, "method": method,
                                "status_code": status_code, "response_time_ms": response_time_ms,
                                "created_at": created_at or now()})


def consume(conn: psycopg.Connection, token_hash_: str | None, *, endpoint: str = "/api/data",
            method: str = "GET", status_code: int = 200, response_time_ms: int | None = 12,
            ip_address: str | None = "203.0.113.7",
            user_agent: str | None = "pytest") -> tuple[bool, int, str | None]:
    row = conn.execute(CONSUME, {"token_hash": token_hash_, "endpoint": endpoint,
                                 "method": method, "status_code": status_code,
                                 "response_time_ms": response_time_ms, "ip_address": ip_address,
                                 "user_agent": user_agent}).fetchone()
    return bool(row[0]), int(row[1]), row[2]


def scalar(conn: psycopg.Connection, query: str, params: dict[str, Any] | None = None) -> Any:
    return conn.execute(query, params).fetchone()[0]
