"""Payments executed for real in LiteSVM, found through the real HTTP server by the adapter."""

from __future__ import annotations

from solders.keypair import Keypair

from tests.solana.conftest import MakeAdapter, scan_all, start_cursors
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import (
    USDC_MINT,
    TokenKit,
    ata,
    create_ata_ix,
    transfer_ix,
)
from verifier.models import Observed


def expected(node: SolanaServer, sig: str, payer: str, payee: Keypair, amount: int) -> Observed:
    return Observed(chain="solana", tx_hash=sig, block_number=node.landed(sig).slot,
                    block_hash=None, from_address=payer, to_address=str(payee.pubkey()),
                    amount=amount)


async def found_by_scan(make_adapter: MakeAdapter, payee: Keypair) -> list[Observed]:
    adapter = await make_adapter(payee)
    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))
    return payments


async def test_plain_transfer_is_found_with_amount_payer_and_slot(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 1_234_567)
    want = expected(node, sig, str(payer.pubkey()), payee, 1_234_567)

    assert await found_by_scan(make_adapter, payee) == [want]
    lookup = await (await make_adapter(payee)).lookup(sig)
    assert lookup.payment == want and lookup.reason is None
    assert lookup.view is not None and lookup.view.final >= want.block_number


async def test_transfer_checked_is_found(node: SolanaServer, kit: TokenKit, payer: Keypair,
                                         payee: Keypair, make_adapter: MakeAdapter) -> None:
    sig = kit.transfer_checked(payer, payee.pubkey(), 250_000)
    assert await found_by_scan(make_adapter, payee) == [
        expected(node, sig, str(payer.pubkey()), payee, 250_000)]


async def test_recipient_account_created_in_the_same_transaction_counts_from_zero(
        node: SolanaServer, kit: TokenKit, payer: Keypair, make_adapter: MakeAdapter) -> None:
    newcomer = kit.wallet()  # no USDC account yet
    sig = kit.create_ata_and_transfer(payer, newcomer.pubkey(), 3_000_000)
    landed = node.landed(sig)
    index = landed.keys.index(str(ata(newcomer.pubkey())))
    assert index not in [b.index for b in landed.pre_tokens]  # what the rule must cope with

    assert await found_by_scan(make_adapter, newcomer) == [
        expected(node, sig, str(payer.pubkey()), newcomer, 3_000_000)]


async def test_two_transfers_in_one_transaction_make_one_payment_with_the_sum(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.transfers_in_one_tx(payer, payee.pubkey(), [300_000, 200_001])
    assert await found_by_scan(make_adapter, payee) == [
        expected(node, sig, str(payer.pubkey()), payee, 500_001)]


async def test_transfer_made_by_a_program_through_cpi_counts(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    # The payer pays the payee's token account as if it were a wallet (a nested account owned
    # by the payee's ATA): nothing reaches the payee yet.
    stray = kit.send_to_token_account(payer, payee.pubkey(), 700_000)
    # The payee recovers it: the ATA program moves the tokens with a CPI TransferChecked it
    # signs for the payee's ATA, and the transaction has no top-level token instruction.
    sig = kit.recover_nested(payee)
    parsed = node.landed(sig).render("jsonParsed", True)
    top = parsed["transaction"]["message"]["instructions"]
    inner = parsed["meta"]["innerInstructions"][0]["instructions"]
    assert [ix["parsed"]["type"] for ix in top] == ["recoverNested"]
    assert inner[0]["parsed"]["type"] == "transferChecked" and inner[0]["stackHeight"] == 2

    adapter = await make_adapter(payee)
    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))
    assert payments == [expected(node, sig, str(ata(payee.pubkey())), payee, 700_000)]
    assert (await adapter.lookup(stray)).reason == "wrong_recipient"


async def test_transfer_to_another_wallet_pays_nothing_even_when_the_payee_account_is_touched(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    other = kit.wallet()
    kit.create_ata(other.pubkey())
    p = payer.pubkey()
    # The payee's account is in the transaction (so it is listed for it), the money is not.
    touched = node.send([payer], [create_ata_ix(p, payee.pubkey(), idempotent=True),
                                  transfer_ix(ata(p), ata(other.pubkey()), p, 900_000)])
    elsewhere = kit.transfer(payer, other.pubkey(), 100_000)
    adapter = await make_adapter(payee)

    assert touched in node.signatures_for(str(ata(payee.pubkey())))
    assert await found_by_scan(make_adapter, payee) == []
    assert (await adapter.lookup(touched)).reason == "wrong_recipient"
    assert (await adapter.lookup(elsewhere)).reason == "wrong_recipient"
    paid_other = await (await make_adapter(other)).lookup(elsewhere)
    assert paid_other.payment is not None and paid_other.payment.amount == 100_000


async def test_another_six_decimal_mint_pays_nothing(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    fake = kit.create_mint(decimals=6)
    kit.fund(payer.pubkey(), 5_000_000, mint=fake)
    kit.create_ata(payee.pubkey(), fake)
    p = payer.pubkey()
    sig = node.send([payer], [create_ata_ix(p, payee.pubkey(), idempotent=True),
                              transfer_ix(ata(p, fake), ata(payee.pubkey(), fake), p, 2_000_000)])
    adapter = await make_adapter(payee)

    assert sig in node.signatures_for(str(ata(payee.pubkey())))
    assert await found_by_scan(make_adapter, payee) == []
    lookup = await adapter.lookup(sig)
    assert (lookup.payment, lookup.reason) == (None, "wrong_token")


async def test_failed_transaction_pays_nothing(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    sig = kit.failed_transfer(payer, payee.pubkey(), 10**15)
    assert node.landed(sig).err == {"InstructionError": [0, {"Custom": 1}]}
    adapter = await make_adapter(payee)

    assert await found_by_scan(make_adapter, payee) == []
    lookup = await adapter.lookup(sig)
    assert (lookup.payment, lookup.reason) == (None, "failed_tx")


async def test_self_transfer_pays_nothing(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    kit.fund(payee.pubkey(), 4_000_000)
    sig = kit.self_transfer(payee, 4_000_000)
    adapter = await make_adapter(payee)

    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))
    assert [p.tx_hash for p in payments] == [node.ledger[-2].signature]  # the funding only
    assert (await adapter.lookup(sig)).reason == "wrong_recipient"


async def test_v0_transaction_with_the_payee_account_from_a_lookup_table(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    table = kit.lookup_table([ata(payee.pubkey())])
    sig = kit.transfer_v0(payer, payee.pubkey(), 42_000, table)
    landed = node.landed(sig)
    assert landed.loaded_writable == [str(ata(payee.pubkey()))]

    assert await found_by_scan(make_adapter, payee) == [
        expected(node, sig, str(payer.pubkey()), payee, 42_000)]
    assert -32015 not in node.errors  # every request states maxSupportedTransactionVersion


async def test_solana_pay_reference_keys_do_not_hide_a_payment(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    reference = Keypair().pubkey()
    sig = kit.transfer(payer, payee.pubkey(), 10_000, references=[reference])
    info = node.landed(sig).render("jsonParsed", True)["transaction"]["message"][
        "instructions"][0]["parsed"]["info"]
    assert info["multisigAuthority"] == str(payer.pubkey()) and "authority" not in info

    assert await found_by_scan(make_adapter, payee) == [
        expected(node, sig, str(payer.pubkey()), payee, 10_000)]


async def test_extra_token_account_is_watched(
        node: SolanaServer, kit: TokenKit, payer: Keypair, make_adapter: MakeAdapter) -> None:
    vault_owner = kit.wallet()  # not a payment address: the account itself is configured
    account = kit.create_ata(vault_owner.pubkey())
    sig = kit.transfer(payer, vault_owner.pubkey(), 55_000)
    adapter = await make_adapter(kit.wallet(), token_accounts=[str(account)])

    payments, cursors, _ = await scan_all(adapter, await start_cursors(adapter))
    assert [(p.tx_hash, p.to_address, p.amount) for p in payments] == [
        (sig, str(account), 55_000)]
    assert str(account) in [c.account for c in cursors]


async def test_payments_to_two_payees_come_oldest_first_each_once(
        node: SolanaServer, kit: TokenKit, payer: Keypair, make_adapter: MakeAdapter) -> None:
    first, second = kit.wallet(), kit.wallet()
    sigs = [kit.create_ata_and_transfer(payer, first.pubkey(), 1_000),
            kit.create_ata_and_transfer(payer, second.pubkey(), 2_000),
            kit.transfer(payer, first.pubkey(), 3_000)]
    both = node.send([payer], [
        transfer_ix(ata(payer.pubkey()), ata(first.pubkey()), payer.pubkey(), 4_000),
        transfer_ix(ata(payer.pubkey()), ata(second.pubkey()), payer.pubkey(), 5_000)])
    adapter = await make_adapter(first, second)

    payments, _, _ = await scan_all(adapter, await start_cursors(adapter))
    assert [(p.tx_hash, p.amount) for p in payments] == [
        (sigs[0], 1_000), (sigs[1], 2_000), (sigs[2], 3_000), (both, 9_000)]
    # One payment per transaction, as on EVM: all it paid the payees; the larger share names it.
    assert payments[-1].to_address == str(second.pubkey())
    assert str(USDC_MINT) == adapter.mint
