"""Claims on Base against a real anvil: proofs, waiting, rejections and races."""

from __future__ import annotations

import asyncio
import secrets

import psycopg
import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain
from verifier import api, rules
from verifier.claims import ClaimProcessor
from verifier.config import load
from verifier.daemon import Daemon
from verifier.devnet.evm import sign_claim


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def paid(chain, payer_index: int = 1, amount: int = 1_000_000, mine: int = 3) -> tuple[str, object]:
    d = chain.devnet
    payer = d.accounts[payer_index]
    d.mint(payer, 100_000_000)
    tx = d.transfer(payer, PAYEE, amount)
    d.mine(mine)
    return tx, payer


def proof_for(payer, tx: str, token_hash: str, chain_name: str = "base") -> str:
    return sign_claim(payer.key, rules.claim_message(chain_name, tx, token_hash))


def claim_sync(url: str, chain_name: str, tx: str, token_hash: str, proof: str | None,
               wait: float = 20) -> api.ClaimResult:
    with psycopg.connect(url, autocommit=True) as conn:
        c = api.submit_claim(conn, chain_name, tx, token_hash, proof)
        if c.claim_id is None or c.status != "waiting":
            return c
        return api.wait_for_claim(conn, c.claim_id, timeout=wait)


async def claim(url, tx, token_hash, proof, chain_name="base", wait=20) -> api.ClaimResult:
    return await asyncio.to_thread(claim_sync, url, chain_name, tx, token_hash, proof, wait)


async def test_a_valid_proof_gets_a_token_that_buys_requests(chain, database_url):
    tx, payer = paid(chain)
    token, token_hash = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        result = await claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash))
    assert (result.status, result.reason) == ("issued", None)
    [(stored_hash, expires, pay_expires)] = query(
        database_url, "SELECT t.token_hash, t.expires_at, p.expires_at FROM x402_tokens t "
                      "JOIN x402_payments p ON p.id = t.payment_id")
    assert stored_hash == token_hash and expires == pay_expires
    with psycopg.connect(database_url, autocommit=True) as conn:
        use = api.consume(conn, token, "/v1/quote", "GET", 200, 12, "203.0.113.9", "pytest")
    assert use.allowed and use.requests_remaining == 999


@pytest.mark.parametrize("forge", ["random_bytes", "other_token_hash", "other_address",
                                   "no_proof", "other_chain"])
async def test_forged_proofs_are_rejected(chain, database_url, forge):
    tx, payer = paid(chain)
    _, token_hash = api.new_token()
    proofs = {
        "random_bytes": "0x" + secrets.token_hex(65),
        "other_token_hash": proof_for(payer, tx, api.new_token()[1]),
        "other_address": proof_for(chain.devnet.accounts[9], tx, token_hash),
        "no_proof": None,
        "other_chain": proof_for(payer, tx, token_hash, chain_name="ethereum"),
    }
    async with running_daemon(daemon_env(chain.url), database_url):
        result = await claim(database_url, tx, token_hash, proofs[forge])
    assert (result.status, result.reason) == ("rejected", "bad_proof")
    assert query(database_url, "SELECT count(*) FROM x402_tokens") == [(0,)]


async def test_a_contract_wallet_proves_with_eip1271(chain, database_url):
    d = chain.devnet
    owner, stranger = d.accounts[1], d.accounts[2]
    wallet = d.wallet_1271(owner)
    d.mint(wallet, 5_000_000)
    tx = d.wallet_pay(wallet, owner, PAYEE, 2_000_000)
    d.mine(3)
    _, good_hash = api.new_token()
    _, bad_hash = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        forged = await claim(database_url, tx, bad_hash, proof_for(stranger, tx, bad_hash))
        good = await claim(database_url, tx, good_hash, proof_for(owner, tx, good_hash))
    assert (forged.status, forged.reason) == ("rejected", "bad_proof")
    assert good.status == "issued"
    assert query(database_url, "SELECT from_address FROM x402_payments") == [(wallet.lower(),)]


async def test_a_claim_before_confirmation_waits_then_is_issued(chain, database_url):
    tx, payer = paid(chain, mine=0)
    _, token_hash = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            submitted = api.submit_claim(conn, "base", tx, token_hash,
                                         proof_for(payer, tx, token_hash))
        await eventually(lambda: query(database_url, "SELECT reason FROM verifier.claims")
                         == [("unconfirmed",)])
        assert query(database_url, "SELECT status FROM verifier.claims") == [("waiting",)]
        chain.devnet.mine(2)
        await eventually(lambda: query(database_url, "SELECT status FROM verifier.claims")
                         == [("issued",)])
    assert submitted.status == "waiting"


async def test_claims_waiting_for_confirmations_expire(chain, database_url):
    tx, payer = paid(chain, mine=0)
    _, token_hash = api.new_token()
    env = daemon_env(chain.url, X402_CLAIM_TTL_SECONDS="1")
    async with running_daemon(env, database_url):
        result = await claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash))
    assert (result.status, result.reason) == ("expired", "unconfirmed")


async def test_a_second_claim_of_the_same_payment_is_rejected(chain, database_url):
    tx, payer = paid(chain)
    _, first = api.new_token()
    _, second = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        one = await claim(database_url, tx, first, proof_for(payer, tx, first))
        two = await claim(database_url, tx, second, proof_for(payer, tx, second))
    assert one.status == "issued"
    assert (two.status, two.reason) == ("rejected", "already_claimed")


async def test_unknown_malformed_and_unsupported_are_rejected(chain, database_url):
    _, token_hash = api.new_token()
    unknown = "0x" + "ab" * 32
    async with running_daemon(daemon_env(chain.url), database_url):
        not_found = await claim(database_url, unknown, token_hash, None)
        on_eth = await claim(database_url, unknown, api.new_token()[1], None, chain_name="ethereum")
        malformed = await claim(database_url, "0x1234", api.new_token()[1], None)
        dogecoin = await claim(database_url, unknown, api.new_token()[1], None, chain_name="doge")
    assert (not_found.status, not_found.reason) == ("rejected", "not_found")
    assert (on_eth.status, on_eth.reason) == ("rejected", "unsupported_chain")
    assert (malformed.claim_id, malformed.reason) == (None, "malformed_tx_hash")
    assert (dogecoin.claim_id, dogecoin.reason) == (None, "unsupported_chain")
    assert query(database_url, "SELECT count(*) FROM x402_payments") == [(0,)]


async def test_underpaid_and_reverted_transactions_never_get_a_token(chain, database_url):
    d = chain.devnet
    payer = d.accounts[3]
    d.mint(payer, 10_000_000)
    small = d.transfer(payer, PAYEE, 50_000)
    reverted = d.reverted_payment(payer, PAYEE, 1_000_000)
    d.mint(payer, 10**13, token=chain.lookalike)
    lookalike = d.transfer(payer, PAYEE, 5_000_000, token=chain.lookalike)
    d.mine(3)
    results = {}
    async with running_daemon(daemon_env(chain.url), database_url):
        for name, tx in (("small", small), ("reverted", reverted), ("lookalike", lookalike)):
            _, h = api.new_token()
            results[name] = await claim(database_url, tx, h, proof_for(payer, tx, h))
    assert {k: (v.status, v.reason) for k, v in results.items()} == {
        "small": ("rejected", "underpaid"),
        "reverted": ("rejected", "failed_tx"),
        "lookalike": ("rejected", "wrong_token"),
    }
    assert query(database_url, "SELECT count(*) FROM x402_tokens") == [(0,)]


async def test_a_claim_ahead_of_the_watcher_is_verified_on_demand(chain, database_url):
    tx, payer = paid(chain)
    _, token_hash = api.new_token()
    # The watcher starts far ahead and never scans the payment's block.
    env = daemon_env(chain.url, X402_BASE_START_BLOCK=str(chain.devnet.head() + 1_000))
    async with running_daemon(env, database_url):
        result = await claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash))
    assert result.status == "issued"
    assert query(database_url, "SELECT status, amount_usdc::text FROM x402_payments") == [
        ("verified", "1.000000")]


async def test_racing_workers_and_racing_claims_give_one_token(chain, database_url):
    tx, payer = paid(chain)
    hashes = [api.new_token()[1] for _ in range(6)]
    cfg = load({**daemon_env(chain.url), "DATABASE_URL": database_url})
    async with Daemon.open(cfg, database_url) as one, Daemon.open(cfg, database_url) as two:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for h in hashes:
                api.submit_claim(conn, "base", tx, h, proof_for(payer, tx, h))
        processors: list[ClaimProcessor] = [one.claims, two.claims]
        # Eight workers across two daemons race for six claims of one payment.
        await asyncio.gather(*(p.process_one() for p in processors for _ in range(4)))
        while any(await asyncio.gather(*(p.process_one() for p in processors))):
            pass
    statuses = query(database_url, "SELECT status, reason, count(*) FROM verifier.claims "
                                   "GROUP BY 1, 2 ORDER BY 1")
    assert statuses == [("issued", None, 1), ("rejected", "already_claimed", 5)]
    assert query(database_url, "SELECT count(*) FROM x402_tokens") == [(1,)]


async def test_two_daemons_at_once_record_each_payment_once(chain, database_url):
    d = chain.devnet
    payers = d.new_accounts(5)
    d.mint_many([(p, 100_000_000) for p in payers])
    hashes = d.bulk_transfers([(payers[i % 5], PAYEE, 200_000 + i) for i in range(40)],
                              per_block=2)
    d.mine(3)
    env = daemon_env(chain.url, X402_BASE_MAX_LOG_RANGE="4")
    async with running_daemon(env, database_url) as one, running_daemon(env, database_url) as two:
        await eventually(lambda: query(database_url, "SELECT count(*) FROM x402_payments "
                                                      "WHERE status = 'verified'") == [(40,)])
        active = [w.status.active for w in one.watchers + two.watchers]
    assert sorted(active) == [False, True]  # one watcher per chain holds the lock
    rows = query(database_url, "SELECT tx_hash FROM x402_payments")
    assert sorted(r[0] for r in rows) == sorted(hashes)


# -- who is the payer (rules.payer, rules.accepted_signers) -----------------------------------


async def test_the_larger_sender_is_the_payer_not_the_first(chain, database_url):
    d = chain.devnet
    small, big, relayer = d.accounts[1], d.accounts[2], d.accounts[3]
    d.mint(small, 1_000_000)
    d.mint(big, 20_000_000)
    # One transaction, sent by a relayer: 0.01 from `small` (first log), 10.00 from `big`.
    tx = d.pull_many(relayer, [(small, 10_000), (big, 10_000_000)], PAYEE)
    d.mine(3)
    _, small_hash = api.new_token()
    _, big_hash = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        by_small = await claim(database_url, tx, small_hash, proof_for(small, tx, small_hash))
        by_big = await claim(database_url, tx, big_hash, proof_for(big, tx, big_hash))
    assert (by_small.status, by_small.reason) == ("rejected", "bad_proof")
    assert (by_big.status, by_big.reason) == ("issued", None)
    assert query(database_url, "SELECT from_address, amount_usdc::text, requests_allocated "
                               "FROM x402_payments") == [(big.address.lower(), "10.010000",
                                                          10_010)]


async def test_the_transactions_signer_may_claim_too(chain, database_url):
    d = chain.devnet
    small, big, relayer = d.accounts[1], d.accounts[2], d.accounts[3]
    d.mint(small, 1_000_000)
    d.mint(big, 20_000_000)
    tx = d.pull_many(relayer, [(small, 10_000), (big, 10_000_000)], PAYEE)
    d.mine(3)
    _, token_hash = api.new_token()
    async with running_daemon(daemon_env(chain.url), database_url):
        result = await claim(database_url, tx, token_hash, proof_for(relayer, tx, token_hash))
    assert (result.status, result.reason) == ("issued", None)


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "looked_up"])
async def test_an_eoa_paying_through_a_contract_can_claim(chain, database_url, recorded):
    d = chain.devnet
    payer, stranger = d.accounts[1], d.accounts[2]
    d.mint(payer, 5_000_000)
    tx = d.forward_pay(payer, PAYEE, 2_000_000)  # the payee's log is from the router
    d.mine(3)
    router = d.helper("Router")
    _, bad_hash = api.new_token()
    _, good_hash = api.new_token()
    env = daemon_env(chain.url) if recorded else daemon_env(
        chain.url, X402_BASE_START_BLOCK=str(d.head() + 1_000))
    async with running_daemon(env, database_url):
        if recorded:
            await eventually(lambda: query(database_url, "SELECT status FROM x402_payments")
                             == [("verified",)])
        forged = await claim(database_url, tx, bad_hash, proof_for(stranger, tx, bad_hash))
        good = await claim(database_url, tx, good_hash, proof_for(payer, tx, good_hash))
    assert (forged.status, forged.reason) == ("rejected", "bad_proof")
    assert (good.status, good.reason) == ("issued", None)
    assert query(database_url, "SELECT from_address FROM x402_payments") == [(router.lower(),)]


# -- claims that should not be issued, claims that starve ------------------------------------


async def test_a_claim_after_the_payments_expiry_is_refused_before_cleanup(chain, database_url):
    tx, payer = paid(chain)
    _, token_hash = api.new_token()
    env = daemon_env(chain.url, X402_ACCESS_TTL_HOURS="0.001", X402_CLEANUP_CRON="off")
    async with running_daemon(env, database_url):
        await eventually(lambda: query(database_url, "SELECT status, expires_at <= now() "
                                                      "FROM x402_payments")
                         == [("verified", True)], within=20)
        result = await claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash))
    assert (result.status, result.reason) == ("rejected", "expired")
    assert query(database_url, "SELECT count(*) FROM x402_tokens") == [(0,)]


async def test_a_recorded_payments_claim_is_not_stuck_behind_unknown_hashes(chain, database_url):
    tx, payer = paid(chain)
    junk = 200
    env = daemon_env(chain.url, X402_WORKERS="4", X402_CLAIM_LOOKUPS_PER_SECOND="5")
    async with running_daemon(env, database_url):
        await eventually(lambda: query(database_url, "SELECT status FROM x402_payments")
                         == [("verified",)])
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(junk):
                api.submit_claim(conn, "base", "0x" + secrets.token_hex(32), api.new_token()[1])
        started = asyncio.get_running_loop().time()
        _, token_hash = api.new_token()
        result = await claim(database_url, tx, token_hash, proof_for(payer, tx, token_hash))
        elapsed = asyncio.get_running_loop().time() - started
        [(looked_up, waiting)] = query(
            database_url, "SELECT coalesce(sum(attempts), 0), count(*) FILTER (WHERE status = "
                          "'waiting') FROM verifier.claims WHERE tx_hash <> %(tx)s", {"tx": tx})
    assert (result.status, result.reason) == ("issued", None)
    # Decided while the junk backlog waits: lookups ran at their rate (5/s, a burst of 5,
    # at most 2 at once), not as fast as the workers could go.
    assert looked_up <= 5 + 5 * elapsed + 2, (looked_up, elapsed)
    assert waiting >= junk - looked_up
