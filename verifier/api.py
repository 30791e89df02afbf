"""For API servers: make a token, claim a payment for it, wait for the verdict, spend requests.

Each function is one SQL call (see sql/api.sql), so a server in any language can do the same:

    token, token_hash = new_token()
    claim = submit_claim(conn, "base", tx_hash, token_hash, proof)    # verifier.submit_claim()
    claim = wait_for_claim(conn, claim.claim_id, timeout=30)          # LISTEN x402_claim_done
    if claim.status == "issued": return token to the client, once
    ...
    use = consume(conn, token, "/v1/data", "GET", 200)                # verifier.consume_request()
    if not use.allowed: answer 402 with use.reason

``conn`` is a psycopg 3 connection in autocommit mode. Only the token's SHA-256 ever reaches
the database; the token itself is returned to the caller and never stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import psycopg

from verifier.sqlfiles import queries


@dataclass(frozen=True)
class ClaimResult:
    claim_id: int | None
    status: str  # waiting | issued | rejected | expired
    reason: str | None


@dataclass(frozen=True)
class Consumption:
    allowed: bool
    requests_remaining: int
    reason: str | None


def new_token() -> tuple[str, str]:
    """A fresh bearer token (256 random bits, URL-safe) and its SHA-256 hex."""
    token = "x402_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def submit_claim(conn: psycopg.Connection, chain: str, tx_hash: str, token_hash: str,
                 proof: str | None = None) -> ClaimResult:
    if _has_nul(chain, tx_hash, token_hash, proof):
        return ClaimResult(None, "rejected", "malformed_input")
    row = conn.execute(queries("api.sql")["submit_claim"], {
        "chain": chain, "tx_hash": tx_hash, "token_hash": token_hash, "proof": proof,
    }).fetchone()
    assert row is not None
    return ClaimResult(*row)


def wait_for_claim(conn: psycopg.Connection, claim_id: int, timeout: float = 30.0,
                   poll: float = 0.5) -> ClaimResult:
    """Waits until the claim is decided (or the timeout passes: status stays 'waiting')."""
    q = queries("api.sql")
    conn.execute(q["listen_claim_done"])
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute(q["claim_status"], {"claim_id": claim_id}).fetchone()
            if row is None:
                return ClaimResult(claim_id, "rejected", "unknown_claim")
            if row[0] != "waiting" or time.monotonic() >= deadline:
                return ClaimResult(claim_id, row[0], row[1])
            wait = min(poll, max(0.0, deadline - time.monotonic()))
            for _ in conn.notifies(timeout=wait, stop_after=1):
                pass
    finally:
        conn.execute(q["unlisten_claim_done"])


def consume(conn: psycopg.Connection, token: str, endpoint: str, method: str, status_code: int,
            response_time_ms: int | None = None, ip_address: str | None = None,
            user_agent: str | None = None) -> Consumption:
    """Checks the token and takes one paid request, atomically, logging the usage row."""
    if _has_nul(token, endpoint, method, ip_address, user_agent):
        return Consumption(False, 0, "malformed_input")
    row = conn.execute(queries("api.sql")["consume_request"], {
        "token_hash": hash_token(token), "endpoint": endpoint, "method": method,
        "status_code": status_code, "response_time_ms": response_time_ms,
        "ip_address": ip_address, "user_agent": user_agent,
    }).fetchone()
    assert row is not None
    return Consumption(*row)


def _has_nul(*values: str | None) -> bool:
    """PostgreSQL text cannot hold NUL: such input is refused clearly, and nothing written
    (psycopg would raise instead). None is left to the SQL functions' own checks."""
    return any(isinstance(v, str) and "\x00" in v for v in values)
