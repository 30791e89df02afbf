"""For API servers: claim a payment for a client's token hash, wait for the verdict, spend
requests.

Each function is one SQL call (see sql/api.sql), so a server in any language can do the same:

    # the client made the token, keeps it, and signed over its hash (verifier.client)
    claim = submit_claim(conn, "base", tx_hash, token_hash, proof)    # verifier.submit_claim()
    claim = wait_for_claim(conn, claim.claim_id, timeout=30)          # LISTEN x402_claim_done
    if claim.status == "issued": the client's token now buys requests
    ...
    use = consume(conn, token, "/v1/data", "GET", 200)                # verifier.consume_request()
    if not use.allowed: answer 402 with use.reason

Submitting the same token hash for the same transaction again returns the same claim, so a
client whose answer was lost simply sends it again. ``conn`` is a psycopg 3 connection in
autocommit mode. Only the token's SHA-256 ever reaches the database. A database failure raises
verifier.errors.DatabaseError (the psycopg error chained as its cause). ``new_token`` (a token
made by the server) is only of use with ``X402_CLAIM_PROOF=none``: a proof signs the token
hash, so the payer must know it before the claim is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from verifier.client import make_token as new_token
from verifier.client import token_hash as hash_token
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


__all__ = ["ClaimResult", "Consumption", "consume", "hash_token", "new_token", "submit_claim",
           "wait_for_claim"]
