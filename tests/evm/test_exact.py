"""x402 "exact" payments on a real anvil with Circle's real USDC: a transferWithAuthorization
(EIP-3009) settled by anyone is judged against X402_EXACT_MIN_PAYMENT_USDC (by default one
request's price), not X402_MIN_PAYMENT_USDC, through the scan, the pending-then-final path and
the on-demand lookup of a claim alike."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import psycopg
import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain
from tests.evm.test_claims import claim, proof_for
from verifier import api


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def rows(url: str) -> dict[str, tuple[str, Decimal, int]]:
    found = query(url, "SELECT tx_hash, status, amount_usdc, requests_allocated FROM x402_payments")
    return {tx: (status, amount, requests) for tx, status, amount, requests in found}


def final(url: str, count: int):
    def probe():
        found = rows(url)
        return found if len(found) == count and all(s != "pending" for s, _, _ in found.values()) \
            else None
    return probe


async def test_per_request_payments_settled_by_anyone_are_verified_not_underpaid(
    chain, database_url,
):
    d = chain.devnet
    payer, other_facilitator = d.new_accounts(2, seed="exact-watch")
    d.mint(payer, 10_000_000)
    # Settled by a facilitator that is not us (any account may submit the payer's signature).
    plain = d.transfer(payer, PAYEE, 1_000)  # the same amount, without an authorization
    short = d.pay_with_authorization(payer, PAYEE, 999)
    three = d.pay_with_authorization(payer, PAYEE, 3_500, sender=d.accounts[4])
    exact = d.pay_with_authorization(payer, PAYEE, 1_000, sender=other_facilitator)
    async with running_daemon(daemon_env(chain.url), database_url):
        # Seen before final (pending), then judged again when final: the exactness is kept.
        await eventually(lambda: len(rows(database_url)) == 4)
        assert rows(database_url)[exact][0] == "pending"
        d.mine(3)
        found = await eventually(final(database_url, 4))
    assert found == {
        exact: ("verified", Decimal("0.001000"), 1),
        three: ("verified", Decimal("0.003500"), 3),
        short: ("underpaid", Decimal("0.000999"), 0),
        plain: ("underpaid", Decimal("0.001000"), 0),
    }
    assert sorted(query(database_url, "SELECT tx_hash FROM verifier.exact_payments")) == sorted(
        [(exact,), (three,), (short,)])


async def test_the_exact_minimum_is_x402_exact_min_payment_usdc(chain, database_url):
    d = chain.devnet
    [payer] = d.new_accounts(1, seed="exact-minimum")
    d.mint(payer, 10_000_000)
    cheap = d.pay_with_authorization(payer, PAYEE, 1_000)
    enough = d.pay_with_authorization(payer, PAYEE, 2_000)
    d.mine(3)
    env = daemon_env(chain.url, X402_EXACT_MIN_PAYMENT_USDC="0.002")
    async with running_daemon(env, database_url):
        found = await eventually(final(database_url, 2))
    assert found == {cheap: ("underpaid", Decimal("0.001000"), 0),
                     enough: ("verified", Decimal("0.002000"), 2)}


async def test_a_claim_looks_an_exact_payment_up_and_gets_a_token(chain, database_url):
    d = chain.devnet
    [payer] = d.new_accounts(1, seed="exact-claim")
    d.mint(payer, 10_000_000)
    tx = d.pay_with_authorization(payer, PAYEE, 1_000, sender=d.accounts[6])
    # The watcher starts past the payment: only the claim's on-demand lookup finds it, while it
    # is not yet final, and the pending row then becomes verified as an exact payment.
    env = daemon_env(chain.url, X402_BASE_START_BLOCK=str(d.head() + 1))
    token, token_hash = api.new_token()
    async with running_daemon(env, database_url):
        waiting = asyncio.create_task(
            claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash)))
        await eventually(lambda: query(database_url, "SELECT status FROM x402_payments")
                         == [("pending",)])
        d.mine(2)
        result = await waiting
    assert (result.status, result.reason) == ("issued", None)
    assert rows(database_url) == {tx: ("verified", Decimal("0.001000"), 1)}
    with psycopg.connect(database_url, autocommit=True) as conn:  # the one request it bought
        assert api.consume(conn, token, "/v1/x", "GET", 200).allowed
        assert not api.consume(conn, token, "/v1/x", "GET", 200).allowed
