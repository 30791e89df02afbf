"""The real daemon on Solana: the LiteSVM node over HTTP, a real PostgreSQL, claims with ed25519
payer proofs, and a restart in the middle of a backlog."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import psycopg
from solders.keypair import Keypair

from tests.daemon import eventually, query, running_daemon
from verifier import api, rules
from verifier.devnet.solana_server import Fault, SolanaServer
from verifier.devnet.solana_tokens import TokenKit, ata


def daemon_env(node: SolanaServer, payee: Keypair, start_slot: int) -> dict[str, str]:
    return {
        "X402_CHAINS": "solana",
        "X402_SOLANA_RPC_URLS": node.url,
        "X402_SOLANA_PAYMENT_ADDRESS": str(payee.pubkey()),
        "X402_SOLANA_START_BLOCK": str(start_slot),
        "X402_POLL_INTERVAL": "0.05",
        "X402_METRICS_ADDR": "off",
        "X402_WORKERS": "2",
        "X402_CLAIM_NOT_FOUND_GRACE_SECONDS": "0",
        "X402_LOG_FORMAT": "console",
    }


def payment(url: str, sig: str) -> tuple | None:
    rows = query(url, "SELECT status, amount_usdc, requests_allocated, from_address, "
                      "to_address, block_number FROM x402_payments "
                      "WHERE chain = 'solana' AND tx_hash = %(tx)s", {"tx": sig})
    return rows[0] if rows else None


async def claim(url: str, sig: str, signer: Keypair | None) -> api.ClaimResult:
    def run() -> api.ClaimResult:
        _, token_hash = api.new_token()
        proof = None
        if signer is not None:
            message = rules.claim_message("solana", sig, token_hash).encode()
            proof = str(signer.sign_message(message))
        with psycopg.connect(url, autocommit=True) as conn:
            submitted = api.submit_claim(conn, "solana", sig, token_hash, proof)
            if submitted.claim_id is None or submitted.status != "waiting":
                return submitted
            return api.wait_for_claim(conn, submitted.claim_id, timeout=20)

    return await asyncio.to_thread(run)


async def test_payment_is_verified_and_claimed_with_an_ed25519_proof(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        database_url: str) -> None:
    early = kit.transfer(payer, payee.pubkey(), 300_000)  # before the start slot
    sig = kit.transfer(payer, payee.pubkey(), 1_500_000)
    env = daemon_env(node, payee, node.landed(sig).slot)

    async with running_daemon(env, database_url):
        row = await eventually(lambda: payment(database_url, sig))
        assert row == ("verified", Decimal("1.500000"), 1_500, str(payer.pubkey()),
                       str(payee.pubkey()), node.landed(sig).slot)
        issued = await claim(database_url, sig, payer)
        assert (issued.status, issued.reason) == ("issued", None)
        second = await claim(database_url, sig, payer)
        assert (second.status, second.reason) == ("rejected", "already_claimed")
        # Not reached by the watcher (before its start): verified on demand for the claim,
        # where a proof by anyone but the payer is refused.
        stolen = await claim(database_url, early, Keypair())
        assert (stolen.status, stolen.reason) == ("rejected", "bad_proof")
        assert payment(database_url, early)[:2] == ("verified", Decimal("0.300000"))
        mine = await claim(database_url, early, payer)
        assert mine.status == "issued"


async def test_claims_for_non_payments_are_rejected_with_their_reason(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        database_url: str) -> None:
    failed = kit.failed_transfer(payer, payee.pubkey(), 10**15)
    fake = kit.create_mint(decimals=6)
    kit.fund(payer.pubkey(), 1_000_000, mint=fake)
    kit.create_ata(payee.pubkey(), fake)
    wrong_token = kit.transfer(payer, payee.pubkey(), 1_000_000, mint=fake)
    env = daemon_env(node, payee, node.slot + 1)

    async with running_daemon(env, database_url):
        for sig, reason in [(failed, "failed_tx"), (wrong_token, "wrong_token")]:
            result = await claim(database_url, sig, payer)
            assert (result.status, result.reason) == ("rejected", reason)
    assert query(database_url, "SELECT count(*) FROM x402_payments")[0][0] == 0


async def test_daemon_stopped_in_a_backlog_resumes_without_gap_or_repeat(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        database_url: str) -> None:
    sigs = [kit.transfer(payer, payee.pubkey(), 100_000 + i) for i in range(1_200)]
    env = daemon_env(node, payee, node.landed(sigs[0]).slot)
    # The node stops serving transactions after the first step's 1000: the daemon is stuck
    # with its first step committed and the rest of the backlog unread.
    node.inject("getTransaction", Fault.NODE_BEHIND, times=10**9,
                when=lambda _params: node.calls["getTransaction"] > 1_000)
    count = "SELECT count(*) FROM x402_payments WHERE chain = 'solana'"

    async with running_daemon(env, database_url):
        await eventually(lambda: query(database_url, count)[0][0] == 1_000)
        await asyncio.sleep(0.3)
        assert query(database_url, count)[0][0] == 1_000
    cursor = query(database_url, "SELECT account, position, marker FROM verifier.cursors "
                                 "WHERE chain = 'solana'")
    assert cursor == [(str(ata(payee.pubkey())), node.landed(sigs[999]).slot, sigs[999])]

    node.clear_faults()
    async with running_daemon(env, database_url):
        await eventually(lambda: query(database_url, count)[0][0] == 1_200)
    rows = query(database_url, "SELECT tx_hash, amount_usdc FROM x402_payments "
                               "WHERE chain = 'solana' ORDER BY block_number")
    assert [r[0] for r in rows] == sigs
    assert [r[1] for r in rows] == [Decimal(100_000 + i) / 10**6 for i in range(1_200)]
