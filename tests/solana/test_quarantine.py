"""No Solana answer can stall or fool the watcher (issue 10, C10-C12): the real daemon, logged in
as a member of x402_daemon, on the LiteSVM node and a real PostgreSQL.

- an answer carrying another signature's transaction is a fault of that endpoint, never a fact;
- a transaction that cannot be read (-32015, null forever, an unreadable shape, another
  signature's transaction forever) is put aside after a few polls (verifier.solana_quarantine),
  shown by `status` and /metrics, tried again later and recorded once it reads; the payments
  after it are recorded meanwhile;
- short signature pages are paged through, not read as the end of history.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from solders.keypair import Keypair

from tests.daemon import eventually, query, running_daemon
from tests.solana.test_daemon import daemon_env
from verifier import status
from verifier.devnet.solana_server import Fault, SolanaServer
from verifier.devnet.solana_tokens import TokenKit, ata

PAID = "SELECT tx_hash, amount_usdc FROM x402_payments WHERE chain = 'solana' ORDER BY block_number"
HELD = ("SELECT signature, account, slot, reason, error_code, attempts >= 3, "
        "next_retry_at > now() FROM verifier.solana_quarantine")


@pytest.fixture
def daemon_url(database_url: str) -> Iterator[str]:
    """A new login role, member of x402_daemon only: the grants of migration 009 suffice."""
    name = f"t_daemon_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE x402_daemon").format(
            sql.Identifier(name)))
    yield make_conninfo(database_url, user=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def for_signature(sig: str) -> Callable[[list[Any]], bool]:
    return lambda params: bool(params) and params[0] == sig


def usdc(units: int) -> Decimal:
    return Decimal(units) / 10**6


@pytest.mark.parametrize(("fault", "reason", "code"), [
    (Fault.UNSUPPORTED_VERSION, "final_error", -32015),
    (Fault.NULL, "not_served", None),
    (Fault.UNREADABLE, "unreadable", None),
    (Fault.OTHER_TRANSACTION, "wrong_transaction", None),
])
async def test_a_transaction_that_cannot_be_read_is_quarantined_and_recorded_once_it_reads(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair, database_url: str,
        daemon_url: str, fault: Fault, reason: str, code: int | None) -> None:
    first = kit.transfer(payer, payee.pubkey(), 1_000_000)
    bad = kit.transfer(payer, payee.pubkey(), 2_000_000)
    after = [kit.transfer(payer, payee.pubkey(), 3_000_000 + i) for i in range(3)]
    node.inject("getTransaction", fault, times=10**9, when=for_signature(bad),
                other=first if fault is Fault.OTHER_TRANSACTION else None)
    env = daemon_env(node, payee, node.landed(first).slot)
    account = str(ata(payee.pubkey()))

    async with running_daemon(env, daemon_url, metrics_refresh=0.05) as daemon:
        # The payments after it are recorded: the account is not stalled.
        await eventually(lambda: len(query(database_url, PAID)) == 4)
        assert query(database_url, PAID) == [
            (first, usdc(1_000_000)), *[(s, usdc(3_000_000 + i)) for i, s in enumerate(after)]]
        assert query(database_url, HELD) == [
            (bad, account, node.landed(bad).slot, reason, code, True, True)]
        assert query(database_url, "SELECT marker FROM verifier.cursors") == [(after[-1],)]

        # The operator sees it: `status` (and --json) and /metrics.
        report = status.gather(daemon_url, {})
        assert [(q["signature"], q["reason"]) for q in report["quarantined"]] == [(bad, reason)]
        assert report["chains"][0]["quarantined"] == 1
        assert json.loads(json.dumps(report, default=str))["quarantined"][0]["error_code"] == code
        await daemon.metrics.refresh()
        scraped = generate_latest(daemon.metrics.registry).decode()
        assert f'x402_quarantined_transactions{{chain="solana",reason="{reason}"}} 1.0' in scraped
        others = [r for r in ("final_error", "not_served", "unreadable", "wrong_transaction")
                  if r != reason]
        assert all(f'{{chain="solana",reason="{r}"}} 0.0' in scraped for r in others)

        # Tried again when due (backing off meanwhile), and recorded once it reads.
        attempts = query(database_url, "SELECT attempts FROM verifier.solana_quarantine")[0][0]
        execute(database_url, "UPDATE verifier.solana_quarantine SET next_retry_at = now()")
        await eventually(lambda: query(database_url, "SELECT attempts "
                                                     "FROM verifier.solana_quarantine")
                         == [(attempts + 1,)])
        node.clear_faults()
        execute(database_url, "UPDATE verifier.solana_quarantine SET next_retry_at = now()")
        await eventually(lambda: len(query(database_url, PAID)) == 5)
        await eventually(lambda: query(database_url, HELD) == [])
    rows = query(database_url, "SELECT tx_hash, amount_usdc, status FROM x402_payments "
                               "WHERE tx_hash = %(tx)s", {"tx": bad})
    assert rows == [(bad, usdc(2_000_000), "verified")]
    assert len(query(database_url, PAID)) == 5


async def test_an_answer_for_another_signature_never_credits_a_transaction_that_paid_nothing(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair, database_url: str,
        daemon_url: str) -> None:
    paid = kit.transfer(payer, payee.pubkey(), 1_000_000)
    nothing = kit.transfer(payee, payer.pubkey(), 1)  # listed on the payee's account
    later = kit.transfer(payer, payee.pubkey(), 500_000)
    # Twice, so that a batch and the single call after it both lie.
    node.inject("getTransaction", Fault.OTHER_TRANSACTION, times=2,
                when=for_signature(nothing), other=paid)
    env = daemon_env(node, payee, node.landed(paid).slot)

    async with running_daemon(env, daemon_url):
        await eventually(lambda: query(database_url, "SELECT marker FROM verifier.cursors")
                         == [(later,)])
    assert query(database_url, PAID) == [(paid, usdc(1_000_000)), (later, usdc(500_000))]
    assert node.faults_left() == 0
    assert query(database_url, "SELECT count(*) FROM verifier.solana_quarantine") == [(0,)]


async def test_short_signature_pages_are_not_the_end_of_history(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair, database_url: str,
        daemon_url: str) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 10_000 + i) for i in range(111)]
    node.page_cap = 100  # as nodes answer across their ledger / long-term storage boundary
    env = daemon_env(node, payee, node.landed(sigs[0]).slot)

    async with running_daemon(env, daemon_url):
        await eventually(lambda: query(database_url, "SELECT marker FROM verifier.cursors")
                         == [(sigs[-1],)])
        await eventually(lambda: len(query(database_url, PAID)) == 111)
    assert [r[0] for r in query(database_url, PAID)] == sigs
