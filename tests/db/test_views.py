"""The four v_x402_* views against hand-built data whose answers are known."""

from datetime import timedelta
from decimal import Decimal

from tests.db import data
from tests.db.data import USDC

ALICE, BOB, CAROL = "0x" + "a1" * 20, "0x" + "b0" * 20, "SoLCaroL1111111111111111111111111111111111"


def rows(conn, query, params=None):
    return conn.execute(query, params).fetchall()


def test_active_payments_are_verified_unexpired_with_requests_left(conn):
    t = data.now()
    active = data.payment(conn, requests_allocated=10, requests_used=3)
    data.payment(conn, requests_allocated=10, requests_used=10)  # verified but exhausted
    data.payment(conn, expires_at=t - timedelta(seconds=1))  # verified but past expiry
    for status in ("pending", "used", "expired", "underpaid", "reorged"):
        data.payment(conn, status=status, requests_allocated=10, requests_used=0)
    data.payment(conn, requests_allocated=0)  # verified, nothing to spend
    got = rows(conn, "SELECT id, requests_allocated, requests_used, requests_remaining "
                     "FROM v_x402_active_payments")
    assert got == [(active, 10, 3, 7)]


def test_active_payments_filtered_by_payer(conn):
    a = data.payment(conn, from_address=ALICE)
    data.payment(conn, from_address=BOB)
    got = rows(conn, "SELECT id FROM v_x402_active_payments WHERE from_address = %(a)s",
               {"a": ALICE})
    assert got == [(a,)]


def test_a_row_that_becomes_verified_gets_verified_at(conn):
    pid = data.payment(conn, status="pending")
    assert data.scalar(conn, "SELECT verified_at FROM x402_payments WHERE id = %(id)s",
                       {"id": pid}) is None
    conn.execute("UPDATE x402_payments SET status = 'verified' WHERE id = %(id)s", {"id": pid})
    verified_at, updated_later = conn.execute(
        "SELECT verified_at, updated_at >= created_at FROM x402_payments WHERE id = %(id)s",
        {"id": pid}).fetchone()
    assert verified_at is not None and updated_later
    explicit = data.now() - timedelta(hours=2)
    pid2 = data.payment(conn, verified_at=explicit)
    assert data.scalar(conn, "SELECT verified_at FROM x402_payments WHERE id = %(id)s",
                       {"id": pid2}) == explicit


def test_stats_24h_counts_money_received_by_verified_at(conn):
    t = data.now()
    recent = t - timedelta(hours=23)
    # base: counted verified, used and expired rows from two payers.
    data.payment(conn, chain="base", status="verified", amount_units=1 * USDC,
                 from_address=ALICE, requests_allocated=1000, requests_used=10, verified_at=recent)
    data.payment(conn, chain="base", status="used", amount_units=2 * USDC,
                 from_address=ALICE, requests_allocated=2000, requests_used=2000,
                 verified_at=recent)
    data.payment(conn, chain="base", status="expired", amount_units=3 * USDC,
                 from_address=BOB, requests_allocated=3000, requests_used=5, verified_at=recent)
    # base: not money received, or not confirmed in the last 24 hours.
    data.payment(conn, chain="base", status="pending", amount_units=50 * USDC,
                 verified_at=recent)  # e.g. re-seen after a reorg: still not counted
    data.payment(conn, chain="base", status="underpaid", amount_units=60 * USDC,
                 requests_allocated=0, verified_at=recent)
    data.payment(conn, chain="base", status="reorged", amount_units=70 * USDC,
                 verified_at=recent)
    data.payment(conn, chain="base", status="verified", amount_units=80 * USDC,
                 verified_at=t - timedelta(hours=25))
    # A payment created long ago but verified recently counts (verified_at, not created_at).
    data.payment(conn, chain="solana", status="verified", amount_units=500_000,
                 from_address=CAROL, requests_allocated=500, requests_used=1, verified_at=recent)
    got = rows(conn, "SELECT chain, total_payments, total_amount_usdc, total_requests_allocated, "
                     "total_requests_used, unique_payers, average_payment_usdc "
                     "FROM v_x402_stats_24h ORDER BY chain")
    assert got == [
        ("base", 3, Decimal("6.000000"), 6000, 2015, 2, Decimal("2.000000")),
        ("solana", 1, Decimal("0.500000"), 500, 1, 1, Decimal("0.500000")),
    ]


def test_top_payers_ranks_confirmed_spend(conn):
    t = data.now()
    data.payment(conn, from_address=ALICE, amount_units=2 * USDC, requests_used=4,
                 verified_at=t - timedelta(days=40))
    data.payment(conn, from_address=ALICE, status="used", amount_units=1 * USDC,
                 requests_allocated=7, requests_used=7, verified_at=t - timedelta(days=1))
    data.payment(conn, from_address=BOB, status="expired", amount_units=5 * USDC,
                 requests_used=9, verified_at=t - timedelta(days=2))
    data.payment(conn, from_address=BOB, status="reorged", amount_units=100 * USDC)
    data.payment(conn, from_address=CAROL, status="pending", amount_units=1000 * USDC)
    data.payment(conn, from_address=CAROL, status="underpaid", amount_units=1,
                 requests_allocated=0)
    got = rows(conn, "SELECT from_address, payment_count, total_spent_usdc, total_requests_used, "
                     "last_payment_at FROM v_x402_top_payers")
    assert [r[:4] for r in got] == [
        (BOB, 1, Decimal("5.000000"), 9),
        (ALICE, 2, Decimal("3.000000"), 11),
    ]
    assert got[1][4] == t - timedelta(days=1)


def test_top_payers_keeps_the_hundred_biggest(conn):
    for i in range(1, 106):
        data.payment(conn, from_address=f"0x{i:040x}", amount_units=i * USDC)
    got = rows(conn, "SELECT total_spent_usdc FROM v_x402_top_payers")
    assert len(got) == 100
    assert got[0][0] == 105 and got[-1][0] == 6


def test_endpoint_stats_cover_the_last_24_hours_of_usage(conn):
    t = data.now()
    p1, p2 = data.payment(conn), data.payment(conn)
    for ms, code in ((10, 200), (20, 201), (30, 404), (40, 500)):
        data.usage(conn, p1, endpoint="/api/a", status_code=code, response_time_ms=ms,
                   created_at=t - timedelta(hours=1))
    data.usage(conn, p2, endpoint="/api/a", status_code=302, response_time_ms=None,
               created_at=t - timedelta(hours=23))
    data.usage(conn, p2, endpoint="/api/b", status_code=204, response_time_ms=7,
               created_at=t - timedelta(minutes=5))
    data.usage(conn, p2, endpoint="/api/old", created_at=t - timedelta(hours=25))
    got = rows(conn, "SELECT endpoint, request_count, avg_response_time_ms, unique_payments, "
                     "success_count, error_count FROM v_x402_endpoint_stats")
    assert got == [
        ("/api/a", 5, Decimal("25.00"), 2, 2, 2),
        ("/api/b", 1, Decimal("7.00"), 1, 1, 0),
    ]
