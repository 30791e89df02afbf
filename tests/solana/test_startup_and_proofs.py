"""Start-up checks against the node, the chain view, and payer proofs through the adapter."""

from __future__ import annotations

import base64

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.system_program import ID as SYSTEM_PROGRAM

from tests.solana.conftest import MakeAdapter
from tests.solana.test_rpc_faults import closed_port_url
from verifier import client, redact, rules
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
    assert await adapter.verify_proof(lookup.payment.from_address, message,
                                      base64.b64encode(bytes(good)).decode())
    assert adapter.proof_offline(lookup.payment.from_address, message,
                                 client.sign_claim_solana(payer, sig, "ab" * 32))
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


async def test_an_endpoint_without_gethealth_is_not_refused_at_start(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    """A gateway that answers getHealth with -32601 (method not found) has no health method;
    it is not down: the start goes on with what the other checks find."""
    from verifier.devnet.faults import FaultProxy

    with FaultProxy(node.url) as gateway:
        gateway.refuse("getHealth", -32601, "Method not found")
        adapter = await make_adapter(payee, urls=[gateway.url])
        await adapter.startup_check()
        assert gateway.rewritten["getHealth"] >= 1
        assert adapter.accounts == (str(ata(payee.pubkey())),)
        gateway.clear()  # any other refusal still refuses the endpoint
        gateway.refuse("getHealth", -32600, "Invalid request")
        with pytest.raises(ConfigError, match=f"{gateway.url}: does not answer"):
            await adapter.startup_check()


async def test_an_endpoint_that_starts_serving_another_cluster_is_dropped_until_it_is_back(
        node: SolanaServer, kit: TokenKit, payee: Keypair, make_adapter: MakeAdapter) -> None:
    """The genesis hash is checked with every poll's view: after the endpoint switches to
    another cluster (another genesis hash, far ahead), no slot of it is taken, and no other
    call goes to it; once it serves this cluster again, it is used again."""
    from verifier.devnet.faults import FaultProxy
    from verifier.errors import WrongChainError
    from verifier.models import Cursor

    with SolanaServer(start_slot=5_000) as other, FaultProxy(node.url) as proxy:
        TokenKit(other).create_usdc()
        adapter = await make_adapter(payee, urls=[proxy.url])
        await adapter.startup_check()
        here = (await adapter.view()).head
        proxy.serve_from(other.url)
        with pytest.raises(WrongChainError, match="genesis hash"):
            await adapter.view()
        assert adapter.rpc.endpoints[0].foreign is not None
        asked = proxy.requests
        cursor = Cursor("solana", adapter.accounts[0], here, None)
        with pytest.raises(WrongChainError):
            await adapter.scan([cursor], adapter_view(here))
        assert proxy.requests == asked  # nothing asked of an endpoint on another cluster
        proxy.serve_from(node.url)
        assert (await adapter.view()).head >= here
        assert adapter.rpc.endpoints[0].foreign is None


def adapter_view(slot: int):
    from verifier.models import ChainView

    return ChainView(head=slot, final=slot)

async def test_a_delegate_that_signed_the_transfer_may_claim_it(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        make_adapter: MakeAdapter) -> None:
    delegate = kit.wallet()
    sig = kit.delegated_transfer(payer, delegate, payee.pubkey(), 400_000)
    adapter = await make_adapter(payee)
    lookup = await adapter.lookup(sig)
    assert lookup.payment is not None
    assert lookup.payment.from_address == str(payer.pubkey())  # whose balance paid
    signers = await adapter.tx_signers(sig)
    assert signers == lookup.signers == (str(delegate.pubkey()),)
    accepted = rules.accepted_signers(lookup.payment.from_address, signers)
    assert accepted == (str(payer.pubkey()), str(delegate.pubkey()))
    message = rules.claim_message("solana", sig, "ab" * 32)
    by_delegate = str(delegate.sign_message(message.encode()))
    assert [await adapter.verify_proof(who, message, by_delegate) for who in accepted] == [
        False, True]
