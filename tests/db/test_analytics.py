"""update_x402_analytics(): one row per chain per UTC hour, zeros included, as an upsert."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.db import data
from tests.db.data import USDC

HOUR = datetime(2024, 5, 1, 10, tzinfo=UTC)
NEXT = HOUR + timedelta(hours=1)
TICK = timedelta(microseconds=1)
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20

SELECT_HOUR = """
SELECT chain, total_payments, total_amount_usdc, total_requests, unique_payers,
       average_payment_usdc
  FROM x402_analytics WHERE hour_bucket = %(hour)s ORDER BY chain
"""

EXPECTED = [
    ("base", 2, Decimal("4.000000"), 3, 1, Decimal("2.000000")),
    ("ethereum", 2, Decimal("2.000000"), 2, 2, Decimal("1.000000")),
    ("solana", 0, Decimal("0"), 0, 0, Decimal("0")),
]


def update(conn, hour):
    conn.execute("SELECT update_x402_analytics(%(hour)s)", {"hour": hour})


def hour_rows(conn, hour=HOUR):
    return conn.execute(SELECT_HOUR, {"hour": hour}).fetchall()


@pytest.fixture
def hour_data(conn):
    """Known traffic in HOUR, with rows just outside it and statuses that must not count."""
    b1 = data.payment(conn, chain="base", amount_units=1 * USDC, from_address=ALICE,
                      verified_at=HOUR)
    data.payment(conn, chain="base", status="used", amount_units=3 * USDC, from_address=ALICE,
                 requests_allocated=3, requests_used=3, verified_at=NEXT - TICK)
    e1 = data.payment(conn, chain="ethereum", status="used", amount_units=USDC // 2,
                      from_address=ALICE, requests_allocated=1, requests_used=1,
                      verified_at=HOUR + timedelta(minutes=30))
    data.payment(conn, chain="ethereum", status="expired", amount_units=3 * USDC // 2,
                 from_address=BOB, verified_at=HOUR + timedelta(minutes=31))
    for status in ("underpaid", "reorged"):
        data.payment(conn, chain="ethereum", status=status, amount_units=90 * USDC,
                     requests_allocated=0, verified_at=HOUR + timedelta(minutes=5))
    data.payment(conn, chain="ethereum", status="pending", amount_units=90 * USDC)
    s1 = data.payment(conn, chain="solana", amount_units=7 * USDC, verified_at=NEXT)
    data.payment(conn, chain="solana", amount_units=7 * USDC, verified_at=HOUR - TICK)
    for minute in (0, 1, 59):
        data.usage(conn, b1, created_at=HOUR + timedelta(minutes=minute))
    data.usage(conn, b1, created_at=NEXT)
    data.usage(conn, e1, created_at=HOUR + timedelta(minutes=40))
    data.usage(conn, e1, created_at=NEXT - TICK)
    data.usage(conn, s1, created_at=HOUR - TICK)
    return conn


def test_one_row_per_chain_with_the_hours_numbers(hour_data):
    update(hour_data, HOUR)
    assert hour_rows(hour_data) == EXPECTED
    assert hour_data.execute("SELECT count(*) FROM x402_analytics").fetchone()[0] == 3


def test_any_instant_inside_the_hour_selects_it(hour_data):
    update(hour_data, HOUR + timedelta(minutes=59, seconds=59))
    assert hour_rows(hour_data) == EXPECTED


def test_rerun_is_idempotent(hour_data):
    update(hour_data, HOUR)
    first = hour_data.execute("SELECT * FROM x402_analytics ORDER BY chain").fetchall()
    update(hour_data, HOUR)
    update(hour_data, HOUR)
    again = hour_data.execute("SELECT * FROM x402_analytics ORDER BY chain").fetchall()
    ids_and_numbers = [(r[0], *r[1:8]) for r in first]
    assert [(r[0], *r[1:8]) for r in again] == ids_and_numbers
    assert len(again) == 3


def test_a_past_hour_can_be_back_filled(hour_data):
    update(hour_data, HOUR)
    late = data.payment(hour_data, chain="solana", amount_units=2 * USDC, from_address=BOB,
                        verified_at=HOUR + timedelta(minutes=10))
    data.usage(hour_data, late, created_at=HOUR + timedelta(minutes=11))
    update(hour_data, HOUR)
    assert hour_rows(hour_data) == [
        *EXPECTED[:2],
        ("solana", 1, Decimal("2.000000"), 1, 1, Decimal("2.000000")),
    ]


def test_an_empty_hour_gives_three_rows_of_zeros(hour_data):
    empty = HOUR - timedelta(days=3)
    update(hour_data, empty)
    assert hour_rows(hour_data, empty) == [
        (chain, 0, Decimal("0"), 0, 0, Decimal("0")) for chain in ("base", "ethereum", "solana")
    ]


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/St_Johns"])
def test_hours_are_utc_whatever_the_session_time_zone(hour_data, zone):
    hour_data.execute("SELECT set_config('TimeZone', %(zone)s, false)", {"zone": zone})
    update(hour_data, HOUR + timedelta(minutes=45))
    buckets = hour_data.execute("SELECT DISTINCT hour_bucket FROM x402_analytics").fetchall()
    assert buckets == [(HOUR,)]
    assert hour_rows(hour_data) == EXPECTED


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_no_argument_means_the_previous_whole_utc_hour(conn, zone):
    conn.execute("SELECT set_config('TimeZone', %(zone)s, false)", {"zone": zone})
    with conn.transaction():  # now() is fixed for the whole transaction
        previous = conn.execute(
            "SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
            "- interval '1 hour'").fetchone()[0]
        pid = data.payment(conn, chain="ethereum", amount_units=5 * USDC,
                           verified_at=previous + timedelta(minutes=1))
        data.usage(conn, pid, created_at=previous + timedelta(minutes=2))
        data.usage(conn, pid, created_at=previous + timedelta(hours=1))  # this hour: not counted
        conn.execute("SELECT update_x402_analytics()")
    got = conn.execute("SELECT hour_bucket, chain, total_payments, total_amount_usdc, "
                       "total_requests FROM x402_analytics ORDER BY chain").fetchall()
    assert previous.astimezone(UTC).minute == 0
    assert got == [
        (previous, "base", 0, Decimal("0"), 0),
        (previous, "ethereum", 1, Decimal("5.000000"), 1),
        (previous, "solana", 0, Decimal("0"), 0),
    ]
