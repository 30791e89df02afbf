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
the database; the token itself is returned to the caller and never stored. A database failure
raises verifier.errors.DatabaseError (the psycopg error chained as its cause).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import psycopg

from verifier.store import api as gateway


@dataclass(frozen=True)
class ClaimResult:
    claim_id: int | None
    status: str  # waiting | issued | rejected | expired | revoked
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
    return ClaimResult(*gateway.submit_claim(conn, {
        "chain": chain, "tx_hash": tx_hash, "token_hash": token_hash, "proof": proof,
    }))


def wait_for_claim(conn: psycopg.Connection, claim_id: int, timeout: float = 30.0,
                   poll: float = 0.5) -> ClaimResult:
    """Waits until the claim is decided (or the timeout passes: status stays 'waiting')."""
    gateway.listen_claim_done(conn, True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = gateway.claim_status(conn, claim_id)
            if row is None:
                return ClaimResult(claim_id, "rejected", "unknown_claim")
            if row[0] != "waiting" or time.monotonic() >= deadline:
                return ClaimResult(claim_id, row[0], row[1])
            wait = min(poll, max(0.0, deadline - time.monotonic()))
            gateway.wait_notify(conn, wait)
    finally:
        gateway.listen_claim_done(conn, False)


def consume(conn: psycopg.Connection, token: str, endpoint: str, method: str, status_code: int,
            response_time_ms: int | None = None, ip_address: str | None = None,
            user_agent: str | None = None) -> Consumption:
    """Checks the token and takes one paid request, atomically, logging the usage row."""
    if _has_nul(token, endpoint, method, ip_address, user_agent):
        return Consumption(False, 0, "malformed_input")
    return Consumption(*gateway.consume_request(conn, {
        "token_hash": hash_token(token), "endpoint": endpoint, "method": method,
        "status_code": status_code, "response_time_ms": response_time_ms,
        "ip_address": ip_address, "user_agent": user_agent,
    }))


def _has_nul(*values: str | None) -> bool:
    """PostgreSQL text cannot hold NUL: such input is refused clearly, and nothing written
    (psycopg would raise instead). None is left to the SQL functions' own checks."""
    return any(isinstance(v, str) and "\x00" in v for v in values)
