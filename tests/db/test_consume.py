"""verifier.consume_request(): one paid request per call, atomically, never more than paid for."""

import threading
from datetime import timedelta
from ipaddress import IPv4Address

import psycopg
import pytest

from tests.db import data

USAGE_COUNT = "SELECT count(*) FROM x402_usage"
PAYMENT = "SELECT status, requests_used FROM x402_payments WHERE id = %(id)s"


def test_an_allowed_request_is_counted_and_logged(conn):
    pid = data.payment(conn, requests_allocated=3)
    tok = data.token(conn, pid)
    assert data.consume(conn, tok, endpoint="/api/quote", method="POST", status_code=201,
                        response_time_ms=42, ip_address="198.51.100.4",
                        user_agent="curl/8") == (True, 2, None)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 1)
    usage = conn.execute("SELECT payment_id, endpoint, method, status_code, response_time_ms, "
                         "ip_address, user_agent FROM x402_usage").fetchall()
    assert usage == [(pid, "/api/quote", "POST", 201, 42, IPv4Address("198.51.100.4"), "curl/8")]
    assert data.scalar(conn, "SELECT last_used_at IS NOT NULL FROM x402_tokens") is True


def test_the_last_request_marks_the_payment_used_then_refuses(conn):
    pid = data.payment(conn, requests_allocated=2)
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (True, 1, None)
    assert data.consume(conn, tok) == (True, 0, None)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("used", 2)
    assert data.consume(conn, tok) == (False, 0, "exhausted")
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("used", 2)
    assert data.scalar(conn, USAGE_COUNT) == 2


def test_a_verified_payment_with_nothing_left_is_exhausted(conn):
    pid = data.payment(conn, requests_allocated=4, requests_used=4)  # status still 'verified'
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (False, 0, "exhausted")
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 4)


def test_fifty_concurrent_calls_on_twenty_requests(database_url, conn):
    pid = data.payment(conn, requests_allocated=20)
    tok = data.token(conn, pid)
    callers = 50
    connections = [psycopg.connect(database_url, autocommit=True) for _ in range(callers)]
    ready = threading.Barrier(callers)
    results: list[tuple[bool, int, str | None]] = []
    lock = threading.Lock()

    def call(c: psycopg.Connection) -> None:
        ready.wait(timeout=60)
        outcome = data.consume(c, tok)
        with lock:
            results.append(outcome)

    try:
        threads = [threading.Thread(target=call, args=(c,)) for c in connections]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for c in connections:
            c.close()

    assert len(results) == callers
    allowed = [r for r in results if r[0]]
    assert len(allowed) == 20
    assert sorted(r[1] for r in allowed) == list(range(20))  # each remaining count exactly once
    assert {r for r in results if not r[0]} == {(False, 0, "exhausted")}
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("used", 20)
    assert data.scalar(conn, USAGE_COUNT) == 20


def test_an_expired_token_is_refused(conn):
    pid = data.payment(conn)
    tok = data.token(conn, pid, expires_at=data.now() - timedelta(seconds=1))
    assert data.consume(conn, tok) == (False, 100, "expired")


def test_a_payment_past_expiry_is_refused_before_cleanup_runs(conn):
    pid = data.payment(conn, expires_at=data.now() - timedelta(seconds=1))
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (False, 100, "expired")
    conn.execute("SELECT cleanup_expired_x402_payments()")
    assert data.consume(conn, tok) == (False, 0, "unknown_token")  # cleanup deleted it


def test_an_expired_payment_is_refused(conn):
    pid = data.payment(conn, status="expired", requests_used=5)
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (False, 95, "expired")


def test_a_reorged_payment_is_refused(conn):
    pid = data.payment(conn, status="reorged")
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (False, 100, "payment_reorged")


@pytest.mark.parametrize("status", ["pending", "underpaid"])
def test_an_unverified_payment_is_refused(conn, status):
    pid = data.payment(conn, status=status)
    tok = data.token(conn, pid)
    assert data.consume(conn, tok) == (False, 100, "payment_not_verified")


def test_an_unknown_token_is_refused(conn):
    data.token(conn, data.payment(conn))
    assert data.consume(conn, data.token_hash("never issued")) == (False, 0, "unknown_token")


@pytest.mark.parametrize("bad", [None, "", "not-a-hash", "AB" * 32, "ab" * 31, "ab" * 33,
                                 " " + "ab" * 32])
def test_a_malformed_token_is_refused(conn, bad):
    pid = data.payment(conn)
    data.token(conn, pid)
    assert data.consume(conn, bad) == (False, 0, "malformed_token")


def test_refusals_write_nothing(conn):
    pid = data.payment(conn, status="reorged")
    tok = data.token(conn, pid)
    before = conn.execute("SELECT * FROM x402_payments").fetchall()
    for t in (tok, data.token_hash("nope"), "junk"):
        assert data.consume(conn, t)[0] is False
    assert conn.execute("SELECT * FROM x402_payments").fetchall() == before
    assert data.scalar(conn, USAGE_COUNT) == 0
    assert data.scalar(conn, "SELECT last_used_at FROM x402_tokens") is None


@pytest.mark.parametrize("endpoint, method, user_agent, stored", [
    ("/" + "a" * 20_000, "GET", "curl/8", ("/" + "a" * 1023, "GET", "curl/8")),
    # 4-byte characters: cut between characters, at most 1,024 bytes (256 of them)
    ("/" + "\U0001F600" * 5_000, "GET", None, ("/" + "\U0001F600" * 255, "GET", None)),
    ("/x", "PROPPATCHXYZ", "u" * 20_000_000, ("/x", "PROPPATCHX", "u" * 1024)),
    (None, None, "é" * 600, ("", "", "é" * 512)),
])
def test_usage_fields_are_capped_never_an_error(conn, endpoint, method, user_agent, stored):
    """An endpoint beyond ~2.7 kB broke the covering index (ProgramLimitExceeded), a user agent
    of 20 MB was stored whole, a long method or a NULL raised: now each is cut (or stored
    empty) and the request is served."""
    tok = data.token(conn, data.payment(conn, requests_allocated=3))
    assert data.consume(conn, tok, endpoint=endpoint, method=method,
                        user_agent=user_agent) == (True, 2, None)
    assert conn.execute("SELECT endpoint, method, user_agent FROM x402_usage").fetchone() == stored
