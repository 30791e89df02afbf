"""No RPC answer and no database row can stall or fool the Base watcher: a revived payment
allocates no less than it used, a row the database refuses is set aside, a log's block hash
must be the block's, and an endpoint that starts serving another chain is dropped, never
followed (anvil, the lying proxy and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def row(url: str, tx_hash: str):
    rows = query(url, "SELECT status, amount_usdc, requests_allocated, requests_used "
                      "FROM x402_payments WHERE tx_hash = %(tx)s AND chain = 'base'",
                 {"tx": tx_hash})
    return rows[0] if rows else None


def cursor(url: str) -> int | None:
    rows = query(url, "SELECT position FROM verifier.cursors WHERE chain = 'base'")
    return rows[0][0] if rows else None


def seed_reorged(url: str, tx_hash: str, *, amount: str, allocated: int, used: int) -> None:
    """A payment as a reorg left it: partly spent, then its block replaced."""
    query(url, "INSERT INTO x402_payments (tx_hash, chain, amount_usdc, from_address, "
               "to_address, block_number, block_hash, confirmations, status, "
               "requests_allocated, requests_used, verified_at, expires_at) VALUES "
               "(%(tx)s, 'base', %(amount)s, '0x' || repeat('1', 40), %(payee)s, 1, "
               "'0x' || repeat('ee', 32), 5, 'reorged', %(alloc)s, %(used)s, now(), "
               "now() + interval '1 day') RETURNING id",
          {"tx": tx_hash, "amount": amount, "payee": PAYEE, "alloc": allocated, "used": used})


# --- C9: revival ---------------------------------------------------------------------------


async def test_a_revived_payment_smaller_than_what_was_used_keeps_its_used_requests(
        chain, database_url):
    """Re-included for 1.00 USDC (1,000 requests) after 1,500 of its 2,000 were spent: found
    pending, then verified, each time allocated 1,500 (never below what is used), and the
    payment made after it is recorded too; on the old code every scan failed here."""
    d = chain.devnet
    payer, other = d.accounts[1], d.accounts[2]
    d.mint(payer, 10_000_000)
    d.mint(other, 10_000_000)
    revived = d.transfer(payer, PAYEE, 1_000_000)
    later = d.transfer(other, PAYEE, 2_000_000)
    seed_reorged(database_url, revived, amount="2.000000", allocated=2_000, used=1_500)
    async with running_daemon(daemon_env(chain.url), database_url) as daemon:
        await eventually(lambda: row(database_url, revived)
                         == ("pending", Decimal("1.000000"), 1_500, 1_500))
        d.mine(3)
        await eventually(lambda: row(database_url, revived)
                         == ("verified", Decimal("1.000000"), 1_500, 1_500))
        await eventually(lambda: (row(database_url, later) or ("",))[0] == "verified")
        assert daemon.watchers[0].status.set_aside == 0
    assert row(database_url, later) == ("verified", Decimal("2.000000"), 2_000, 0)


async def test_a_row_the_database_refuses_is_set_aside_and_the_rest_recorded(
        chain, database_url):
    """One payment row the database refuses (here a test-only CHECK) is logged, counted and
    set aside; the payments around it are recorded and the cursor reaches the head."""
    d = chain.devnet
    payers = d.accounts[3:6]
    for p in payers:
        d.mint(p, 10_000_000)
    before, refused, after = (d.transfer(p, PAYEE, 1_000_000 + i)
                              for i, p in enumerate(payers))
    d.mine(3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE x402_payments ADD CONSTRAINT test_refuses_one "
                     f"CHECK (tx_hash <> '{refused}')")
    async with running_daemon(daemon_env(chain.url), database_url) as daemon:
        await eventually(lambda: cursor(database_url) == d.head())
        await eventually(lambda: (row(database_url, after) or ("",))[0] == "verified")
        assert daemon.watchers[0].status.set_aside == 1
    assert row(database_url, before)[:2] == ("verified", Decimal("1.000000"))
    assert row(database_url, after)[:2] == ("verified", Decimal("1.000002"))
    assert row(database_url, refused) is None
