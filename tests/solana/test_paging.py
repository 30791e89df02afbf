"""More than 1000 signatures on one account: paging, steps, and restarts in the middle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from solders.keypair import Keypair

from tests.solana.conftest import FAST, scan_all, solana_config, start_cursors
from verifier.chains.solana import SolanaAdapter
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import TokenKit, ata
from verifier.models import Cursor

PAYMENTS = 1_200


@dataclass
class Busy:
    node: SolanaServer
    kit: TokenKit
    payer: Keypair
    payee: Keypair
    signatures: list[str]  # the payments, oldest first
    amounts: dict[str, int]

    async def cursors(self, adapter: SolanaAdapter) -> list[Cursor]:
        """Cursors from the first payment's slot (the set-up before it is not scanned)."""
        return await start_cursors(adapter, self.node.landed(self.signatures[0]).slot)


@pytest.fixture(scope="module")
def busy() -> Iterator[Busy]:
    with SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        payer, payee = kit.wallet(), kit.wallet()
        kit.fund(payer.pubkey(), 10**12)
        kit.create_ata(payee.pubkey())
        sigs = [kit.transfer(payer, payee.pubkey(), 1_000 + i) for i in range(PAYMENTS)]
        yield Busy(node, kit, payer, payee, sigs,
                   {s: 1_000 + i for i, s in enumerate(sigs)})


@pytest.fixture
async def adapters(busy: Busy) -> AsyncIterator[list[SolanaAdapter]]:
    made: list[SolanaAdapter] = []
    yield made
    for adapter in made:
        await adapter.close()


async def new_adapter(busy: Busy, made: list[SolanaAdapter], **kwargs: int) -> SolanaAdapter:
    adapter = SolanaAdapter(solana_config([busy.node.url], [str(busy.payee.pubkey())]),
                            policy=FAST, **kwargs)
    await adapter.open()
    made.append(adapter)
    return adapter


async def test_every_payment_is_found_once_oldest_first_across_pages(
        busy: Busy, adapters: list[SolanaAdapter]) -> None:
    adapter = await new_adapter(busy, adapters)
    cursors = await busy.cursors(adapter)
    busy.node.reset_counts()

    payments, final, steps = await scan_all(adapter, cursors)

    assert [p.tx_hash for p in payments] == busy.signatures
    assert all(p.amount == busy.amounts[p.tx_hash] for p in payments)
    assert [len(s.payments) for s in steps] == [1_000, 200, 0]  # the last one looks again
    assert busy.node.calls["getSignaturesForAddress"] == 3  # pages of 1000 and 200, a last look
    assert busy.node.calls["getTransaction"] == PAYMENTS  # one each, batched
    assert final == [Cursor("solana", str(ata(busy.payee.pubkey())),
                            busy.node.landed(busy.signatures[-1]).slot, busy.signatures[-1])]
    again = await adapter.scan(final, await adapter.view())
    assert (again.payments, again.done) == ([], True)


async def test_restart_in_the_middle_of_a_page_resumes_without_gap_or_repeat(
        busy: Busy, adapters: list[SolanaAdapter]) -> None:
    first = await new_adapter(busy, adapters, step_limit=450)
    start = await busy.cursors(first)
    step = await first.scan(start, await first.view())
    assert len(step.payments) == 450 and not step.done
    # The store did not commit that step (crash before the transaction): the same cursor
    # must give the same payments again, not the next ones.
    redo = await first.scan(start, await first.view())
    assert redo.payments == step.payments and redo.cursors == step.cursors
    await first.close()

    # A new process resumes from the committed cursor, inside the first 1000-signature page.
    second = await new_adapter(busy, adapters, step_limit=450)
    payments, _, steps = await scan_all(second, step.cursors)

    assert [p.tx_hash for p in step.payments + payments] == busy.signatures
    assert [len(s.payments) for s in steps] == [450, 300, 0]


async def test_payments_arriving_during_a_backlog_are_found_after_it(
        busy: Busy, adapters: list[SolanaAdapter]) -> None:
    adapter = await new_adapter(busy, adapters, step_limit=700)
    cursors = await busy.cursors(adapter)
    step = await adapter.scan(cursors, await adapter.view())
    late = [busy.kit.transfer(busy.payer, busy.payee.pubkey(), 77 + i) for i in range(3)]

    payments, _, _ = await scan_all(adapter, step.cursors)

    assert [p.tx_hash for p in step.payments + payments] == busy.signatures + late
    busy.signatures.extend(late)  # the module's ledger moved on
    busy.amounts.update({s: 77 + i for i, s in enumerate(late)})


async def test_cursor_with_a_marker_the_node_does_not_know_stops_at_its_slot(
        busy: Busy, adapters: list[SolanaAdapter]) -> None:
    adapter = await new_adapter(busy, adapters)
    middle = busy.node.landed(busy.signatures[600])
    unknown = Cursor("solana", str(ata(busy.payee.pubkey())), middle.slot,
                     "1" * 64)  # a marker from another node's history

    payments, _, _ = await scan_all(adapter, [unknown])

    # The marker's own slot is read again: a repeat (the store keeps one row per transaction)
    # is harmless, a gap would not be.
    assert [p.tx_hash for p in payments] == busy.signatures[600:]
