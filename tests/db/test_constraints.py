"""Every constraint of x402_payments refuses the rows it exists to refuse, by name."""

import psycopg
import pytest
from psycopg import errors

from tests.db import data
from tests.db.data import USDC


def refused_by(conn: psycopg.Connection, error: type[Exception], **fields) -> str:
    with pytest.raises(error) as caught:
        data.payment(conn, **fields)
    return caught.value.diag.constraint_name


def test_a_valid_payment_is_accepted(conn):
    pid = data.payment(conn, chain="solana", amount_units=1, requests_allocated=0)
    assert data.scalar(conn, "SELECT amount_usdc::text FROM x402_payments WHERE id = %(id)s",
                       {"id": pid}) == "0.000001"


def test_unknown_chain_is_refused(conn):
    assert refused_by(conn, errors.CheckViolation, chain="polygon") == "x402_payments_chain_check"
    assert refused_by(conn, errors.CheckViolation, chain="Base") == "x402_payments_chain_check"


@pytest.mark.parametrize("units", [0, -1, -5 * USDC])
def test_amount_zero_or_negative_is_refused(conn, units):
    assert refused_by(conn, errors.CheckViolation, amount_units=units) == (
        "x402_payments_amount_check")


def test_used_beyond_allocated_is_refused_on_insert_and_update(conn):
    assert refused_by(conn, errors.CheckViolation, requests_allocated=5, requests_used=6) == (
        "x402_payments_requests_check")
    assert refused_by(conn, errors.CheckViolation, requests_used=-1) == (
        "x402_payments_requests_check")
    pid = data.payment(conn, requests_allocated=5, requests_used=5)
    with pytest.raises(errors.CheckViolation) as caught:
        conn.execute("UPDATE x402_payments SET requests_used = requests_used + 1 "
                     "WHERE id = %(id)s", {"id": pid})
    assert caught.value.diag.constraint_name == "x402_payments_requests_check"


def test_requests_used_defaults_to_zero_and_is_not_null(conn):
    conn.execute(
        "INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, to_address, "
        "block_number, status, requests_allocated, expires_at) VALUES ('0xdef', 'base', 1, "
        "'0xa', '0xb', 1, 'pending', 10, now())")
    assert data.scalar(conn, "SELECT requests_used FROM x402_payments") == 0
    with pytest.raises(errors.NotNullViolation):
        conn.execute("UPDATE x402_payments SET requests_used = NULL")


def test_unknown_status_is_refused(conn):
    assert refused_by(conn, errors.CheckViolation, status="refunded") == (
        "x402_payments_status_check")
    pid = data.payment(conn)
    with pytest.raises(errors.CheckViolation):
        conn.execute("UPDATE x402_payments SET status = 'VERIFIED' WHERE id = %(id)s",
                     {"id": pid})


def test_second_payment_with_same_chain_and_tx_hash_is_refused(conn):
    data.payment(conn, chain="base", tx_hash="0xfeed")
    assert refused_by(conn, errors.UniqueViolation, chain="base", tx_hash="0xfeed") == (
        "x402_payments_tx_hash_chain_key")


def test_same_tx_hash_on_two_chains_is_allowed(conn):
    data.payment(conn, chain="base", tx_hash="0xfeed")
    data.payment(conn, chain="ethereum", tx_hash="0xfeed")
    assert data.scalar(conn, "SELECT count(*) FROM x402_payments WHERE tx_hash = '0xfeed'") == 2


def test_token_hash_must_be_a_lowercase_sha256_and_one_per_payment(conn):
    pid = data.payment(conn)
    data.token(conn, pid)
    for bad in ("plain-token", "AB" * 32, "ab" * 31):
        with pytest.raises(errors.CheckViolation):
            conn.execute(data.INSERT_TOKEN, {"token_hash": bad, "payment_id": pid,
                                             "expires_at": data.now()})
    with pytest.raises(errors.UniqueViolation):
        data.token(conn, pid)


def test_usage_needs_an_existing_payment(conn):
    with pytest.raises(errors.ForeignKeyViolation):
        data.usage(conn, 999_999)
