"""The Base watcher against a real anvil: what is recorded, when, and what never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import OTHER, PAYEE, closed_port_url, daemon_env, fresh_chain

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


def payment(url: str, tx_hash: str):
    rows = query(url, "SELECT status, amount_usdc, confirmations, requests_allocated, "
                      "from_address, to_address, verified_at, expires_at, block_hash "
                      "FROM x402_payments WHERE tx_hash = %(tx)s AND chain = 'base'", {"tx": tx_hash})
    return rows[0] if rows else None


def status_of(url: str, tx_hash: str) -> str | None:
    row = payment(url, tx_hash)
    return row[0] if row else None


async def test_payment_is_pending_then_verified_after_n_confirmations(chain, database_url):
    d = chain.devnet
    payer = d.accounts[1]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_234_567)
    async with running_daemon(daemon_env(chain.url), database_url):
        row = await eventually(lambda: payment(database_url, tx))
        assert row[0] == "pending" and row[2] == 1
        d.mine(1)
        await eventually(lambda: (p := payment(database_url, tx)) and p[2] == 2)
        assert status_of(database_url, tx) == "pending"  # 2 of 3 confirmations: not yet
        d.mine(1)
        await eventually(lambda: status_of(database_url, tx) == "verified")
    _, amount, confs, requests, sender, payee, verified_at, expires_at, _ = payment(
        database_url, tx)
    assert amount == Decimal("1.234567")
    assert requests == 1_234  # floor(1.234567 / 0.001)
    assert (sender, payee, confs) == (payer.address.lower(), PAYEE, 3)
    assert (expires_at - verified_at).total_seconds() == pytest.approx(24 * 3600, abs=5)


async def test_transfers_in_one_tx_add_up_and_a_contract_payment_is_found(chain, database_url):
    d = chain.devnet
    payer = d.accounts[2]
    d.mint(payer, 10_000_000)
    batched = d.batch_pay(payer, [(PAYEE, 300_000), (OTHER, 999), (PAYEE, 200_000)])
    d.mine(3)
    async with running_daemon(daemon_env(chain.url), database_url):
        await eventually(lambda: status_of(database_url, batched) == "verified")
    rows = query(database_url, "SELECT tx_hash, amount_usdc, from_address FROM x402_payments")
    assert rows == [(batched, Decimal("0.500000"), payer.address.lower())]


async def test_other_recipient_lookalike_token_and_reverted_tx_record_nothing(chain, database_url):
    d = chain.devnet
    payer = d.accounts[3]
    d.mint(payer, 10_000_000)
    d.mint(payer, 10**30, token=chain.lookalike)  # more than all the USDC there is
    d.transfer(payer, OTHER, 1_000_000)
    d.transfer(payer, PAYEE, 10**30, token=chain.lookalike)
    reverted = d.reverted_payment(payer, PAYEE, 1_000_000)
    assert d.receipt(reverted)["status"] == "0x0"
    sentinel = d.transfer(payer, PAYEE, 100_000)
    d.mine(3)
    async with running_daemon(daemon_env(chain.url), database_url):
        await eventually(lambda: status_of(database_url, sentinel) == "verified")
    assert query(database_url, "SELECT tx_hash FROM x402_payments") == [(sentinel,)]


async def test_underpayment_is_recorded_as_underpaid_with_no_requests(chain, database_url):
    d = chain.devnet
    payer = d.accounts[4]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 99_999)  # the minimum is 0.10 USDC
    d.mine(3)
    async with running_daemon(daemon_env(chain.url), database_url):
        await eventually(lambda: status_of(database_url, tx) == "underpaid")
    assert payment(database_url, tx)[3] == 0


async def test_reorg_shallower_than_n_drops_the_pending_payment_for_good(chain, database_url):
    d = chain.devnet
    payer = d.accounts[5]
    d.mint(payer, 10_000_000)
    d.mine(5)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(1)
    env = daemon_env(chain.url, X402_BASE_CONFIRMATIONS="5")
    async with running_daemon(env, database_url):
        await eventually(lambda: status_of(database_url, tx) == "pending")
        d.reorg(3)  # replaces the tx's block and the one after it
        assert d.receipt(tx) is None
        await eventually(lambda: status_of(database_url, tx) == "reorged")
        d.mine(10)
        head = d.head()
        await eventually(lambda: query(database_url, "SELECT position FROM verifier.cursors "
                                                      "WHERE chain = 'base'")[0][0] == head)
    assert status_of(database_url, tx) == "reorged"
    cursor_hash = query(database_url, "SELECT marker FROM verifier.cursors")[0][0]
    assert cursor_hash == d.block_hash(head)


async def test_reorg_replacing_blocks_finds_the_new_payment_in_them(chain, database_url):
    d = chain.devnet
    payer = d.accounts[6]
    d.mint(payer, 10_000_000)
    d.mine(3)
    env = daemon_env(chain.url, X402_BASE_CONFIRMATIONS="5")
    async with running_daemon(env, database_url):
        d.mine(4)
        await eventually(lambda: query(database_url, "SELECT position FROM verifier.cursors")
                         [0][0] == d.head() if query(database_url,
                                                     "SELECT 1 FROM verifier.cursors") else None)
        # The new history carries a payment in its middle block, at a height already scanned.
        d.reorg(3, include=[(d.transfer_request(payer, PAYEE, 2_000_000), 1)])
        replaced = d.transfer_logs(to=PAYEE)
        assert len(replaced) == 1
        tx = replaced[0]["transactionHash"]
        await eventually(lambda: status_of(database_url, tx) == "pending")
        d.mine(5)
        await eventually(lambda: status_of(database_url, tx) == "verified")


async def test_reorg_behind_a_verified_payment_marks_it_reorged_and_revokes_its_token(
        chain, database_url):
    from tests.daemon import query as q
    from verifier import api

    d = chain.devnet
    payer = d.accounts[7]
    d.mint(payer, 10_000_000)
    d.mine(2)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    env = daemon_env(chain.url, X402_BASE_CONFIRMATIONS="1", X402_CLAIM_PROOF="none")
    async with running_daemon(env, database_url):
        await eventually(lambda: status_of(database_url, tx) == "verified")
        token, token_hash = api.new_token()
        claim = await _claim(database_url, tx, token_hash)
        assert claim.status == "issued"
        d.mine(2)
        d.reorg(4)  # deeper than the one confirmation the payment needed
        await eventually(lambda: status_of(database_url, tx) == "reorged")
    assert q(database_url, "SELECT count(*) FROM x402_tokens")[0][0] == 0
    # The claim shows the revocation, and consume names it (not "unknown_token").
    assert q(database_url, "SELECT status, reason FROM verifier.claims") == [
        ("revoked", "payment_reorged")]
    with __import__("psycopg").connect(database_url, autocommit=True) as conn:
        use = api.consume(conn, token, "/x", "GET", 200)
        again = api.submit_claim(conn, "base", tx, token_hash)
    assert not use.allowed and use.reason == "payment_reorged"
    assert (again.claim_id, again.status, again.reason) == (claim.claim_id, "revoked",
                                                            "payment_reorged")


async def _claim(url: str, tx: str, token_hash: str, proof: str | None = None):
    import asyncio

    import psycopg

    from verifier import api

    def go():
        with psycopg.connect(url, autocommit=True) as conn:
            c = api.submit_claim(conn, "base", tx, token_hash, proof)
            return api.wait_for_claim(conn, c.claim_id, timeout=20) if c.claim_id else c

    return await asyncio.to_thread(go)


async def test_first_endpoint_down_the_second_serves(chain, database_url):
    d = chain.devnet
    payer = d.accounts[8]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    env = daemon_env(f"{closed_port_url()},{chain.url}")
    async with running_daemon(env, database_url) as daemon:
        await eventually(lambda: status_of(database_url, tx) == "verified")
        first, second = daemon.adapters["base"].rpc.endpoints  # type: ignore[attr-defined]
        assert second.stats["requests"] > 0
        assert first.stats["requests"] == first.stats["errors"] > 0


def test_killed_between_batches_and_restarted_neither_loses_nor_repeats(chain, database_url):
    d = chain.devnet
    payers = d.new_accounts(20)
    d.mint_many([(p, 100_000_000) for p in payers])
    wanted = [(payers[i % 20], PAYEE, 100_000 + i) for i in range(150)]
    hashes = d.bulk_transfers(wanted, per_block=1)
    d.mine(3)
    env = {**os.environ, **daemon_env(chain.url, X402_BASE_MAX_LOG_RANGE="1",
                                      X402_LOG_FORMAT="json"), "DATABASE_URL": database_url}
    count = "SELECT count(*) FROM x402_payments"
    partial = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen = query(database_url, count)[0][0]
            _wait_sync(lambda seen=seen: query(database_url, count)[0][0] > seen, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        partial.append(query(database_url, count)[0][0])
    assert 0 < partial[0] < len(hashes), partial  # the first kill landed mid-scan
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_sync(lambda: query(database_url, "SELECT count(*) FROM x402_payments WHERE status"
                                               " = 'verified'")[0][0] == len(hashes), proc, 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0  # a clean stop on SIGTERM
    rows = query(database_url, "SELECT tx_hash, amount_usdc FROM x402_payments ORDER BY id")
    assert sorted(tx for tx, _ in rows) == sorted(hashes)
    expected = {h: Decimal(100_000 + i).scaleb(-6) for i, h in enumerate(hashes)}
    assert all(amount == expected[tx] for tx, amount in rows)


def _wait_sync(predicate, proc, within: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + within
    while not predicate():
        assert proc.poll() is None, f"daemon exited with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


async def test_safe_finality_follows_the_nodes_safe_tag(chain, database_url):
    d = chain.devnet
    payer = d.accounts[9]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    block = int(d.receipt(tx)["blockNumber"], 16)
    env = daemon_env(chain.url, X402_BASE_FINALITY="safe", X402_BASE_CONFIRMATIONS="1")
    async with running_daemon(env, database_url):
        d.mine(30)  # anvil's safe block trails its head by 32
        assert int(d.block("safe")["number"], 16) < block
        await eventually(lambda: (p := payment(database_url, tx)) and p[2] == 31)
        assert status_of(database_url, tx) == "pending"
        d.mine(2)
        assert int(d.block("safe")["number"], 16) == block
        await eventually(lambda: status_of(database_url, tx) == "verified")


async def test_a_payee_paying_another_payee_is_not_revenue(chain, database_url):
    from tests.daemon import query as q

    d = chain.devnet
    own, stranger = d.accounts[8], d.accounts[4]
    d.mint(own, 50_000_000)
    d.mint(stranger, 5_000_000)
    start = d.head() + 1  # after the mints (a mint to a payee is money received)
    moved = d.transfer(own, PAYEE, 20_000_000)  # between two payment addresses
    paid = d.transfer(stranger, PAYEE, 1_000_000)
    d.mine(3)
    env = daemon_env(chain.url, X402_BASE_PAYMENT_ADDRESS=f"{own.address},{PAYEE}",
                     X402_BASE_START_BLOCK=str(start))
    async with running_daemon(env, database_url):
        await eventually(lambda: status_of(database_url, paid) == "verified")
    assert status_of(database_url, moved) is None
    assert q(database_url, "SELECT total_payments, total_amount_usdc::text "
                           "FROM v_x402_stats_24h") == [(1, "1.000000")]
