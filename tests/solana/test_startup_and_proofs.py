"""Start-up checks against the node, the chain view, and payer proofs through the adapter."""

from __future__ import annotations

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.system_program import ID as SYSTEM_PROGRAM

from tests.solana.conftest import MakeAdapter
from tests.solana.test_rpc_faults import closed_port_url
from verifier import redact, rules
from verifier.devnet.solana_server import Fault, SolanaServer
from verifier.devnet.solana_tokens import USDC_MINT, TokenKit, ata, mint_data
from verifier.errors import ConfigError


async def test_startup_check_passes_and_derives_the_payee_account(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(payee)
    node.inject("getHealth", Fault.NODE_BEHIND)  # behind, but answering: only a warning
    await adapter.startup_check()
    assert adapter.accounts == (str(ata(payee.pubkey())),)


async def test_startup_check_refuses_a_missing_mint_naming_the_endpoint(
        node: SolanaServer, payee: Keypair, make_adapter: MakeAdapter) -> None:
    node.svm.set_account(USDC_MINT, Account(lamports=0, data=b"", owner=SYSTEM_PROGRAM,
                                            executable=False, rent_epoch=0))
    adapter = await make_adapter(payee)
    with pytest.raises(ConfigError, match=f"{node.url}.*does not exist"):
        await adapter.startup_check()


async def test_startup_check_refuses_a_mint_not_owned_by_a_token_program(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    node.svm.set_account(USDC_MINT, Account(lamports=10**9, data=mint_data(payee.pubkey(), 6),
                                            owner=SYSTEM_PROGRAM, executable=False,
                                            rent_epoch=0))
    adapter = await make_adapter(payee)
    with pytest.raises(ConfigError, match="not by a token program"):
        await adapter.startup_check()


async def test_startup_check_refuses_a_mint_with_other_decimals(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    odd = kit.create_mint(decimals=9)
    adapter = await make_adapter(payee)
    adapter.mint = str(odd)
    with pytest.raises(ConfigError, match="6 decimals"):
        await adapter.startup_check()


async def test_startup_check_refuses_an_unreachable_endpoint(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    dead = closed_port_url()
    adapter = await make_adapter(payee, urls=[node.url, dead])
    # Named by its position and origin, never by the URL (which may carry a key).
    with pytest.raises(ConfigError, match=f"X402_SOLANA_RPC_URLS: #2 {redact.origin(dead)}: "):
        await adapter.startup_check()


async def test_startup_check_refuses_endpoints_on_different_clusters(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    with SolanaServer() as other:
        TokenKit(other).create_usdc()
        adapter = await make_adapter(payee, urls=[node.url, other.url])
        with pytest.raises(ConfigError, match=f"{other.url} is on another cluster"):
            await adapter.startup_check()


async def test_view_is_the_finalized_slot(node: SolanaServer, kit: TokenKit, payer: Keypair,
                                          payee: Keypair, make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 1)
    view = await (await make_adapter(payee)).view()
    assert view.head == view.final == node.slot == node.landed(sig).slot


async def test_payer_proofs(node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
                            make_adapter: MakeAdapter) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 500_000)
    adapter = await make_adapter(payee)
    lookup = await adapter.lookup(sig)
    assert lookup.payment is not None
    message = rules.claim_message("solana", sig, "ab" * 32)
    good = payer.sign_message(message.encode())

    assert await adapter.verify_proof(lookup.payment.from_address, message, str(good))
    assert await adapter.verify_proof(lookup.payment.from_address, message.encode(),
                                      bytes(good).hex())
    forged = Keypair().sign_message(message.encode())
    assert not await adapter.verify_proof(lookup.payment.from_address, message, str(forged))
    other_token = payer.sign_message(rules.claim_message("solana", sig, "cd" * 32).encode())
    assert not await adapter.verify_proof(lookup.payment.from_address, message,
                                          str(other_token))
    assert not await adapter.verify_proof(str(payee.pubkey()), message, str(good))
    assert not await adapter.verify_proof(lookup.payment.from_address, message, None)


async def test_lookup_rejects_a_malformed_signature(
        node: SolanaServer, payee: Keypair, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(payee)
    assert (await adapter.lookup("not-base58-0OIl")).reason == "malformed_tx_hash"
    assert node.calls["getTransaction"] == 0
