"""The documented RPC errors: retried, failed over, or read as "not yet" - never as "not paid"."""

from __future__ import annotations

import socket

import pytest
from solders.keypair import Keypair

from tests.solana.conftest import MakeAdapter, scan_all, start_cursors
from verifier.devnet.solana_server import Fault, SolanaServer
from verifier.devnet.solana_tokens import TokenKit
from verifier.errors import RpcError


def for_signature(sig: str):
    return lambda params: params and params[0] == sig


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_node_behind_is_retried(node: SolanaServer, kit: TokenKit, payer: Keypair,
                                      payee: Keypair, make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 10_000)
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter)
    node.inject("getSignaturesForAddress", Fault.NODE_BEHIND, times=2)
    node.inject("getTransaction", Fault.NODE_BEHIND, times=2)

    payments, _, _ = await scan_all(adapter, cursors)

    assert sig in [p.tx_hash for p in payments]
    assert node.faults_left() == 0 and node.errors[-32005] == 4


@pytest.mark.parametrize("batch_size", [20, 1])
async def test_http_429_is_retried(node: SolanaServer, kit: TokenKit, payer: Keypair,
                                   payee: Keypair, make_adapter: MakeAdapter,
                                   batch_size: int) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 10_000 + i) for i in range(3)]
    adapter = await make_adapter(payee, batch_size=batch_size)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)
    node.inject("getSignaturesForAddress", Fault.HTTP_429, retry_after=0)
    node.inject("getTransaction", Fault.HTTP_429, times=2)

    payments, _, _ = await scan_all(adapter, cursors)

    assert [p.tx_hash for p in payments] == sigs
    assert node.faults_left() == 0 and node.errors[429] == 3


async def test_null_lookup_is_not_yet_then_found(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 20_000)
    adapter = await make_adapter(payee)
    node.inject("getTransaction", Fault.NULL, when=for_signature(sig))

    first = await adapter.lookup(sig)
    assert (first.payment, first.reason) == (None, "not_found")
    second = await adapter.lookup(sig)
    assert second.payment is not None and second.payment.amount == 20_000


async def test_null_for_a_listed_signature_is_retried_in_a_scan(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 30_000)
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter)
    node.inject("getTransaction", Fault.NULL, times=3, when=for_signature(sig))

    payments, _, _ = await scan_all(adapter, cursors)

    assert [(p.tx_hash, p.amount) for p in payments][-1] == (sig, 30_000)
    assert node.faults_left() == 0


async def test_a_signature_the_node_keeps_answering_null_for_is_quarantined_after_some_polls(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 1_000 * (i + 1)) for i in range(3)]
    adapter = await make_adapter(payee, quarantine_after=3)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)
    node.inject("getTransaction", Fault.NULL, times=1_000, when=for_signature(sigs[1]))

    step = await adapter.scan(cursors, await adapter.view())
    assert [p.tx_hash for p in step.payments] == sigs[:1]
    # Held: the cursor waits before it for the next poll, which comes after the usual sleep.
    assert step.cursors[0].marker == sigs[0] and step.done and not step.quarantine
    held = await adapter.scan(step.cursors, await adapter.view())
    assert (held.payments, held.cursors, held.quarantine) == ([], step.cursors, [])

    # The third poll in a row puts it aside and goes on: what comes after it is not stalled.
    third = await adapter.scan(held.cursors, await adapter.view())
    assert [p.tx_hash for p in third.payments] == sigs[2:]
    assert third.cursors[0].marker == sigs[2]
    assert [(q.signature, q.reason, q.attempts, q.slot) for q in third.quarantine] == [
        (sigs[1], "not_served", 3, node.landed(sigs[1]).slot)]

    still = await adapter.retry_quarantined(third.quarantine)
    assert still.payments == [] and still.released == []
    assert [(q.signature, q.attempts) for q in still.quarantine] == [(sigs[1], 4)]
    node.clear_faults()
    later = await adapter.retry_quarantined(still.quarantine)
    assert [(p.tx_hash, p.amount) for p in later.payments] == [(sigs[1], 2_000)]
    assert later.released == [sigs[1]] and later.quarantine == []


async def test_an_item_of_a_batch_refused_with_a_final_error_is_asked_again_alone(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 1_000 + i) for i in range(4)]
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)
    node.inject("getTransaction", Fault.UNSUPPORTED_VERSION, times=1,
                when=for_signature(sigs[1]))

    step = await adapter.scan(cursors, await adapter.view())

    assert [p.tx_hash for p in step.payments] == sigs and step.done
    assert node.errors[-32015] == 1 and node.calls["getTransaction"] == 5


async def test_an_answer_for_another_signature_is_retried_never_credited(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    paid = kit.transfer(payer, payee.pubkey(), 1_000_000)
    nothing = kit.transfer(payee, payer.pubkey(), 10)  # out of the payee's account
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter, node.landed(paid).slot)
    lie = {"other": paid, "when": for_signature(nothing)}
    node.inject("getTransaction", Fault.OTHER_TRANSACTION, times=2, **lie)

    payments, _, _ = await scan_all(adapter, cursors)
    assert [(p.tx_hash, p.amount) for p in payments] == [(paid, 1_000_000)]
    assert node.faults_left() == 0

    node.inject("getTransaction", Fault.OTHER_TRANSACTION, times=1, **lie)
    lookup = await adapter.lookup(nothing)
    assert (lookup.payment, lookup.reason) == (None, "wrong_recipient")
    node.inject("getTransaction", Fault.OTHER_TRANSACTION, times=1_000, **lie)
    with pytest.raises(RpcError) as lying:  # a claim waits; it is never paid by another tx
        await adapter.lookup(nothing)
    assert lying.value.retriable


async def test_short_pages_are_paged_through_to_the_cursor(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 100 + i) for i in range(25)]
    node.page_cap = 10  # what a node answers across its ledger / long-term storage boundary
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)

    payments, final, _ = await scan_all(adapter, cursors)
    assert [p.tx_hash for p in payments] == sigs
    more = [kit.transfer(payer, payee.pubkey(), 500 + i) for i in range(12)]
    payments, _, _ = await scan_all(adapter, final)
    assert [p.tx_hash for p in payments] == more


@pytest.mark.parametrize("fault", [Fault.SLOT_SKIPPED, Fault.LONG_TERM_SLOT_SKIPPED])
async def test_skipped_slot_is_passed_over(node: SolanaServer, kit: TokenKit, payer: Keypair,
                                           payee: Keypair, make_adapter: MakeAdapter,
                                           fault: Fault) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 5_000 + i) for i in range(3)]
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)
    node.inject("getTransaction", fault, times=10, when=for_signature(sigs[1]))

    payments, final, _ = await scan_all(adapter, cursors)

    assert [p.tx_hash for p in payments] == [sigs[0], sigs[2]]
    assert final[0].marker == sigs[2]
    assert node.errors[-32007 if fault is Fault.SLOT_SKIPPED else -32009] == 1  # not retried
    lookup = await adapter.lookup(sigs[1])
    assert (lookup.payment, lookup.reason) == (None, "not_found")


async def test_endpoint_refusing_batches_is_asked_one_call_at_a_time(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 100 + i) for i in range(5)]
    node.accept_batches = False
    adapter = await make_adapter(payee)
    cursors = await start_cursors(adapter, node.landed(sigs[0]).slot)

    payments, _, _ = await scan_all(adapter, cursors)

    assert [p.tx_hash for p in payments] == sigs
    assert adapter.batch_size == 1 and node.calls["getTransaction"] == 5


async def test_first_endpoint_down_the_second_serves(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 7_000)
    adapter = await make_adapter(payee, urls=[closed_port_url(), node.url])

    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))

    assert sig in [p.tx_hash for p in payments]
    assert adapter.rpc.endpoints[0].stats["errors"] >= 1


async def test_versioned_transactions_are_always_asked_for_with_their_version(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    table = kit.lookup_table([payee.pubkey()])
    sig = kit.transfer_v0(payer, payee.pubkey(), 1_500, table)
    adapter = await make_adapter(payee)

    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))
    lookup = await adapter.lookup(sig)

    assert sig in [p.tx_hash for p in payments] and lookup.payment is not None
    assert node.calls["getTransaction"] >= 2 and node.errors[-32015] == 0
