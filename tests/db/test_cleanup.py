"""cleanup_expired_x402_payments(): expires exactly the right payments, deletes the right tokens,
is idempotent, and loses nothing while requests are being consumed."""

import threading
from datetime import timedelta

import psycopg

from tests.db import data

SNAPSHOT = """
SELECT p.tx_hash, p.status, p.requests_used, t.token_hash IS NOT NULL AS has_token
  FROM x402_payments p LEFT JOIN x402_tokens t ON t.payment_id = p.id
 ORDER BY p.tx_hash
"""


def cleanup(conn) -> int:
    return int(conn.execute("SELECT cleanup_expired_x402_payments()").fetchone()[0])


def state(conn) -> dict[str, tuple[str, bool]]:
    return {tx: (status, has_token) for tx, status, _used, has_token
            in conn.execute(SNAPSHOT).fetchall()}


def test_expires_and_deletes_exactly_the_right_rows(conn):
    past, future = data.now() - timedelta(minutes=1), data.now() + timedelta(hours=1)

    def add(tx, status, expires_at, token_expires_at):
        pid = data.payment(conn, tx_hash=tx, status=status, expires_at=expires_at,
                           requests_allocated=10, requests_used=10 if status == "used" else 0)
        data.token(conn, pid, expires_at=token_expires_at)

    add("a_verified_past", "verified", past, past)
    add("b_verified_past_token_live", "verified", past, future)
    add("c_verified_live", "verified", future, future)
    add("d_verified_live_token_past", "verified", future, past)
    add("e_used_past", "used", past, future)
    add("f_reorged_live", "reorged", future, future)
    add("g_expired_already", "expired", past, future)
    add("h_pending_past", "pending", past, future)
    add("i_underpaid_past", "underpaid", past, future)

    assert cleanup(conn) == 2
    assert state(conn) == {
        "a_verified_past": ("expired", False),
        "b_verified_past_token_live": ("expired", False),
        "c_verified_live": ("verified", True),
        "d_verified_live_token_past": ("verified", False),
        "e_used_past": ("used", True),
        "f_reorged_live": ("reorged", False),
        "g_expired_already": ("expired", False),
        "h_pending_past": ("pending", True),
        "i_underpaid_past": ("underpaid", True),
    }
    before = conn.execute("SELECT * FROM x402_payments ORDER BY id").fetchall()
    assert cleanup(conn) == 0
    assert conn.execute("SELECT * FROM x402_payments ORDER BY id").fetchall() == before


def test_expired_payment_keeps_its_usage_history(conn):
    pid = data.payment(conn, expires_at=data.now() - timedelta(seconds=1))
    data.usage(conn, pid)
    data.usage(conn, pid)
    assert cleanup(conn) == 1
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage WHERE payment_id = %(id)s",
                       {"id": pid}) == 2


def test_cleanup_waits_for_a_consumer_holding_the_row_and_rechecks_it(database_url, conn):
    """A consumer takes the last request while its expiry passes; cleanup must not then mark
    the payment expired over the top of 'used', nor lose the usage row."""
    pid = data.payment(conn, requests_allocated=1,
                       expires_at=data.now() + timedelta(milliseconds=300))
    tok = data.token(conn, pid, expires_at=data.now() + timedelta(hours=1))
    result: list[int] = []
    with psycopg.connect(database_url) as consumer:  # a transaction left open on purpose
        assert data.consume(consumer, tok) == (True, 0, None)
        consumer.execute("SELECT pg_sleep(0.4)")  # now the payment is past expires_at
        worker = threading.Thread(target=lambda: result.append(cleanup_in(database_url)))
        worker.start()
        wait_until_blocked(conn)
        consumer.commit()
        worker.join(timeout=30)
    assert result == [0]
    assert data.scalar(conn, "SELECT status FROM x402_payments WHERE id = %(id)s",
                       {"id": pid}) == "used"
    assert data.scalar(conn, "SELECT count(*) FROM x402_usage") == 1


def cleanup_in(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return cleanup(c)


def wait_until_blocked(conn) -> None:
    """Until some backend of this database waits on a lock (the cleanup behind the consumer)."""
    for _ in range(3000):
        if data.scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND wait_event_type = 'Lock'"):
            return
        conn.execute("SELECT pg_sleep(0.01)")
    raise AssertionError("cleanup never blocked on the consumer's row lock")


def test_concurrent_cleanup_and_consumption_lose_nothing(database_url, conn):
    """Payments expire while 4 consumers hammer them and a fifth connection keeps cleaning up.
    Whatever the interleaving: every allowed request has its usage row, requests_used equals
    the usage rows, nothing is over-allocated, and expired payments took no request after."""
    start = data.now()
    tokens = []
    for i in range(8):
        pid = data.payment(conn, requests_allocated=15,
                           expires_at=start + timedelta(milliseconds=150 + 100 * i))
        tokens.append(data.token(conn, pid, expires_at=start + timedelta(hours=1)))
    allowed = [0] * len(tokens)
    lock = threading.Lock()
    stop = threading.Event()
    expired_total: list[int] = []

    def consumer(offset: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            for n in range(60):
                i = (offset + n) % len(tokens)
                if data.consume(c, tokens[i])[0]:
                    with lock:
                        allowed[i] += 1
                c.execute("SELECT pg_sleep(0.005)")

    def cleaner() -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            while not stop.is_set():
                expired_total.append(cleanup(c))

    threads = [threading.Thread(target=consumer, args=(k,)) for k in range(4)]
    sweeper = threading.Thread(target=cleaner)
    sweeper.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    sweeper.join(timeout=30)
    last_expiry = start + timedelta(milliseconds=150 + 100 * len(tokens))
    conn.execute("SELECT pg_sleep(greatest(0, extract(epoch FROM %(t)s - now())))",
                 {"t": last_expiry})
    # As the cleanup job does (migration 014): the slots of hot tokens merged back, then cleanup.
    conn.execute("SELECT verifier.merge_request_slots()")
    expired_total.append(cleanup(conn))  # everything is past expiry by now

    got = conn.execute(
        "SELECT p.id, p.status, p.requests_used, p.requests_allocated, "
        "       (SELECT count(*) FROM x402_usage u WHERE u.payment_id = p.id) "
        "  FROM x402_payments p ORDER BY p.id").fetchall()
    assert [r[2] for r in got] == allowed
    for _id, status, used, allocated, usage_rows in got:
        assert used == usage_rows <= allocated
        assert status == ("used" if used == allocated else "expired")
    assert sum(expired_total) == sum(1 for r in got if r[1] == "expired")
    assert data.scalar(conn, "SELECT count(*) FROM x402_tokens") == sum(
        1 for r in got if r[1] == "used")
    assert sum(allowed) > 0
