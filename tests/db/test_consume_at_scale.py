"""Migration 014: consume_request's slots for a hot token, exact under any interleaving, merged
back by the cleanup job; last_used_at written at most once a second."""

import threading
import time

import psycopg
from psycopg_pool import ConnectionPool

from tests import pgbouncer
from tests.db import data

PAYMENT = "SELECT status, requests_used FROM x402_payments WHERE id = %(id)s"
SLOTS = "SELECT coalesce(sum(requests_left), 0), count(*) FROM verifier.request_slots"
MERGE = "SELECT verifier.merge_request_slots()"


def hammer(database_url: str, tok: str, callers: int, rounds: int = 1,
           connections: int | None = None) -> list[tuple[bool, int, str | None]]:
    """`callers` threads started together, each calling `rounds` times, over one connection each
    (or, with `connections`, over a pool of that many, as an API server does)."""
    ready = threading.Barrier(callers)
    results: list[tuple[bool, int, str | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    kwargs = {"autocommit": True, "prepare_threshold": None}
    pool = (ConnectionPool(database_url, min_size=connections, max_size=connections,
                           kwargs=kwargs, open=True, timeout=120) if connections else None)
    own = [] if pool else [psycopg.connect(database_url, **kwargs) for _ in range(callers)]

    def call(i: int) -> None:
        try:
            ready.wait(timeout=120)
            for _ in range(rounds):
                if pool:
                    with pool.connection() as c:
                        outcome = data.consume(c, tok)
                else:
                    outcome = data.consume(own[i], tok)
                with lock:
                    results.append(outcome)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        for c in own:
            c.close()
        if pool:
            pool.close()
    assert not errors, errors[0]
    return results


def assert_exactly(conn: psycopg.Connection, pid: int, results: list, paid: int) -> None:
    """Exactly `paid` allowed, every other call refused exhausted, each logged once, and the
    payment used up with nothing left in slots once merged."""
    assert sum(1 for r in results if r[0]) == paid
    assert {r for r in results if not r[0]} == {(False, 0, "exhausted")}
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage") == paid
    conn.execute(MERGE)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("used", paid)
    assert conn.execute(SLOTS).fetchone() == (0, 0)


def test_five_hundred_concurrent_consumers_on_two_hundred_requests(database_url, conn):
    """500 consumer threads at once over 60 connections (the server allows 100)."""
    pid = data.payment(conn, requests_allocated=200)
    tok = data.token(conn, pid)
    results = hammer(database_url, tok, callers=500, connections=60)
    assert len(results) == 500
    assert_exactly(conn, pid, results, 200)


def test_five_hundred_connections_of_two_api_servers_through_pgbouncer(database_url, conn):
    """Two API servers of 250 connections each, through PgBouncer in transaction mode, on one
    token of 200 requests: 500 client connections, 20 server connections."""
    pid = data.payment(conn, requests_allocated=200)
    tok = data.token(conn, pid)
    with pgbouncer.transaction_pooler(database_url, pool_size=20) as url:
        results: list = []
        servers = [threading.Thread(target=lambda: results.extend(
            hammer(url, tok, callers=250, rounds=2))) for _ in range(2)]
        for s in servers:
            s.start()
        for s in servers:
            s.join(timeout=600)
    assert len(results) == 1000
    assert_exactly(conn, pid, results, 200)


def test_a_hot_token_is_split_into_slots_and_merged_back_exactly(database_url, conn):
    pid = data.payment(conn, requests_allocated=100_000)
    tok = data.token(conn, pid)
    results = hammer(database_url, tok, callers=16, rounds=30)
    assert len(results) == 480 and all(r[0] for r in results)
    left, slots = conn.execute(SLOTS).fetchone()
    _status, used = conn.execute(PAYMENT, {"id": pid}).fetchone()
    assert used == 480 + left  # the slots' requests count as used until merged
    assert data.consume(conn, tok)[:1] == (True,)
    assert conn.execute(MERGE).fetchone()[0] == slots
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 481)
    assert conn.execute(SLOTS).fetchone() == (0, 0)
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage") == 481


def test_a_caller_of_a_held_token_refills_a_slot_then_takes_it_without_waiting(
        database_url, conn, conn_of):
    pid = data.payment(conn, requests_allocated=100)
    tok = data.token(conn, pid)
    first, second = conn_of(database_url), conn_of(database_url)
    result: list = []
    with first.transaction():
        assert data.consume(first, tok) == (True, 99, None)  # holds the payment row
        waiter = threading.Thread(target=lambda: result.append(data.consume(second, tok)))
        waiter.start()  # nothing in slots yet: it waits for the row, then refills
        time.sleep(0.5)
        assert result == []
    waiter.join(timeout=30)
    assert result == [(True, 98, None)]
    assert conn.execute(SLOTS).fetchone() == (32, 1)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 34)
    with first.transaction():
        assert data.consume(first, tok)[0]  # holds the payment row again
        second.execute("SET statement_timeout = '5s'")
        assert data.consume(second, tok)[0]  # from the slot: no wait for the row lock
        second.execute("RESET statement_timeout")
    assert conn.execute(SLOTS).fetchone() == (31, 1)
    conn.execute(MERGE)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 4)
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage") == 4


def test_a_payment_fully_moved_into_slots_is_served_then_merged_back(conn):
    pid = data.payment(conn, requests_allocated=10)
    tok = data.token(conn, pid)
    # As a refill leaves it: every request moved into slots, the payment reads 'used'.
    conn.execute("UPDATE x402_payments SET requests_used = 10, status = 'used' WHERE id = %s",
                 (pid,))
    conn.execute("INSERT INTO verifier.request_slots VALUES (%s, 1, 3), (%s, 2, 4)", (pid, pid))
    assert data.consume(conn, tok) == (True, 6, None)
    conn.execute(MERGE)
    assert conn.execute(PAYMENT, {"id": pid}).fetchone() == ("verified", 4)
    for remaining in range(5, -1, -1):
        assert data.consume(conn, tok) == (True, remaining, None)
    assert data.consume(conn, tok) == (False, 0, "exhausted")


def test_a_slot_of_a_reorged_or_expired_payment_is_refused(conn):
    pid = data.payment(conn, requests_allocated=10)
    tok = data.token(conn, pid)
    conn.execute("UPDATE x402_payments SET requests_used = 10, status = 'reorged' WHERE id = %s",
                 (pid,))
    conn.execute("INSERT INTO verifier.request_slots VALUES (%s, 1, 5)", (pid,))
    assert data.consume(conn, tok) == (False, 5, "payment_reorged")
    conn.execute("UPDATE x402_payments SET status = 'used', expires_at = now() WHERE id = %s",
                 (pid,))
    assert data.consume(conn, tok) == (False, 5, "expired")
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage") == 0


def test_last_used_at_is_written_at_most_once_a_second(conn):
    pid = data.payment(conn, requests_allocated=100)
    tok = data.token(conn, pid)
    assert data.consume(conn, tok)[0]
    first = data.scalar(conn, "SELECT last_used_at FROM x402_tokens")
    xmin = data.scalar(conn, "SELECT xmin::text FROM x402_tokens")
    for _ in range(5):
        assert data.consume(conn, tok)[0]
    if data.scalar(conn, "SELECT now() - %s < interval '1 second'", (first,)):
        assert data.scalar(conn, "SELECT xmin::text FROM x402_tokens") == xmin  # not rewritten
    time.sleep(1.1)
    assert data.consume(conn, tok)[0]
    assert data.scalar(conn, "SELECT last_used_at FROM x402_tokens") > first
