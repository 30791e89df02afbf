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
from verifier.devnet.anvil import Anvil
from verifier.devnet.faults import FaultProxy


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


# --- C8: a log's block hash is its block's -------------------------------------------------


def lie_about_block_hash(tx_hash: str):
    """eth_getLogs answers with the payment's log in a block hash that is not its block's."""
    def edit(result, _params):
        if not isinstance(result, list):
            return result
        return [{**e, "blockHash": "0x" + "0b" * 32} if e.get("transactionHash") == tx_hash
                else e for e in result]
    return edit


async def test_a_log_with_another_block_hash_is_a_fault_never_a_reorg(chain, database_url):
    """Three answers put the payment's log in a block hash its block does not have: each is
    a fault of the endpoint (asked again), never recorded, never a reorg; the payment is then
    recorded with its block's own hash."""
    d = chain.devnet
    payer = d.accounts[1]
    d.mint(payer, 10_000_000)
    with FaultProxy(chain.url) as proxy:
        async with running_daemon(daemon_env(proxy.url), database_url) as daemon:
            await eventually(lambda: cursor(database_url) == d.head())
            tx = d.send(d.transfer_request(payer, PAYEE, 1_000_000), wait=False)
            proxy.rewrite("eth_getLogs", lie_about_block_hash(tx), times=3)
            block = int(d._wait_mined(tx)["blockNumber"], 16)
            await eventually(lambda: proxy.rewritten["eth_getLogs"] >= 3)
            d.mine(3)
            await eventually(lambda: (row(database_url, tx) or ("",))[0] == "verified")
            assert daemon.watchers[0].status.reorgs == 0
    assert query(database_url, "SELECT block_hash FROM x402_payments WHERE tx_hash = %(tx)s",
                 {"tx": tx}) == [(d.block_hash(block),)]
    assert query(database_url, "SELECT block_hash FROM verifier.blocks WHERE block_number = "
                               "%(n)s", {"n": block}) == [(d.block_hash(block),)]


async def test_an_endpoint_that_keeps_lying_about_log_block_hashes_is_failed_over(
        chain, database_url):
    """The first endpoint always answers the payment's log with a wrong block hash (on the old
    code: a reorg every poll, the payment flapping): the second endpoint serves, the payment
    is verified once, and no reorg is ever counted."""
    d = chain.devnet
    payer = d.accounts[2]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_500_000)
    with FaultProxy(chain.url) as liar:
        liar.rewrite("eth_getLogs", lie_about_block_hash(tx))
        env = daemon_env(f"{liar.url},{chain.url}", X402_BASE_CONFIRMATIONS="1")
        async with running_daemon(env, database_url) as daemon:
            await eventually(lambda: (row(database_url, tx) or ("",))[0] == "verified")
            d.mine(5)
            await eventually(lambda: cursor(database_url) == d.head())
            assert liar.rewritten["eth_getLogs"] >= 1
            assert daemon.watchers[0].status.reorgs == 0
    assert row(database_url, tx) == ("verified", Decimal("1.500000"), 1_500, 0)


# --- C7: an endpoint that starts serving another chain ---------------------------------------


async def ready(daemon) -> tuple[bool, dict]:
    return await daemon.metrics.readiness()


async def test_an_endpoint_switching_to_another_chain_rewinds_nothing_and_fails_readyz(
        chain, database_url):
    """The only endpoint starts serving chain id 1, 600 blocks ahead: the watcher stops
    scanning (no reorg, no payment touched, the cursor stays), /readyz fails naming the chain
    switch, the token keeps working; once it serves Base again, scanning resumes."""
    from tests.evm.test_watcher import _claim
    from verifier import api

    d = chain.devnet
    payer = d.accounts[3]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    with Anvil(chain_id=1) as other, FaultProxy(chain.url) as proxy:
        other.rpc("anvil_mine", hex(600))
        env = daemon_env(proxy.url, X402_CLAIM_PROOF="none")
        async with running_daemon(env, database_url) as daemon:
            await eventually(lambda: (row(database_url, tx) or ("",))[0] == "verified")
            token, token_hash = api.new_token()
            assert (await _claim(database_url, tx, token_hash)).status == "issued"
            await eventually(lambda: cursor(database_url) == d.head())
            assert (await ready(daemon))[0]
            at = cursor(database_url)

            proxy.serve_from(other.url)
            served = proxy.requests
            await eventually(lambda: proxy.requests >= served + 10)  # several polls later
            assert cursor(database_url) == at
            assert row(database_url, tx)[0] == "verified"
            assert daemon.watchers[0].status.reorgs == 0
            with psycopg.connect(database_url, autocommit=True) as conn:
                assert api.consume(conn, token, "/x", "GET", 200).allowed
            ok, detail = await ready(daemon)
            assert not ok
            assert "chain id 1, expected 8453" in detail["chains"]["base"]["wrong_chain"]

            proxy.serve_from(chain.url)
            later = d.transfer(payer, PAYEE, 2_000_000)
            d.mine(3)
            await eventually(lambda: (row(database_url, later) or ("",))[0] == "verified")
            await eventually(lambda: daemon.watchers[0].status.wrong_chain is None)
            assert (await ready(daemon))[0]
    assert row(database_url, tx)[0] == "verified"
    assert query(database_url, "SELECT count(*) FROM x402_tokens")[0][0] == 1


async def test_when_one_endpoint_switches_chain_the_other_serves(chain, database_url):
    """Of two endpoints, the first starts serving chain id 1: it is dropped, the second
    serves, payments go on being verified, nothing is rewound and /readyz stays green."""
    d = chain.devnet
    payer = d.accounts[4]
    d.mint(payer, 10_000_000)
    first = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    with Anvil(chain_id=1) as other, FaultProxy(chain.url) as proxy:
        other.rpc("anvil_mine", hex(600))
        env = daemon_env(f"{proxy.url},{chain.url}")
        async with running_daemon(env, database_url) as daemon:
            await eventually(lambda: (row(database_url, first) or ("",))[0] == "verified")
            proxy.serve_from(other.url)
            second = d.transfer(payer, PAYEE, 2_000_000)
            d.mine(3)
            await eventually(lambda: (row(database_url, second) or ("",))[0] == "verified")
            await eventually(lambda: cursor(database_url) == d.head())
            switched, honest = daemon.adapters["base"].rpc.endpoints  # type: ignore[attr-defined]
            assert switched.foreign is not None and honest.foreign is None
            assert daemon.watchers[0].status.reorgs == 0
            assert (await ready(daemon))[0]
    assert row(database_url, first)[0] == "verified"
