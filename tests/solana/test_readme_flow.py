"""README's claim flow, as written, in signature mode on the LiteSVM node with a running daemon."""

from __future__ import annotations

import asyncio

from solders.keypair import Keypair

from tests import readme_flow
from tests.daemon import eventually, query, running_daemon
from tests.solana.test_daemon import daemon_env, payment
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import TokenKit


async def test_the_readme_flow_issues_the_clients_token_once(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        database_url: str) -> None:
    sig = kit.transfer(payer, payee.pubkey(), 2_000_000)
    env = {**daemon_env(node, payee, node.landed(sig).slot), "X402_CLAIM_PROOF": "signature"}
    api = readme_flow.server(database_url)
    try:
        async with running_daemon(env, database_url):
            await eventually(lambda: payment(database_url, sig))
            thief = readme_flow.client(chain="solana", tx_hash=sig, keypair=Keypair())
            stolen = await asyncio.to_thread(api["redeem"], **thief["body"])
            mine = readme_flow.client(chain="solana", tx_hash=sig, keypair=payer)
            issued = await asyncio.to_thread(api["redeem"], **mine["body"])
            again = await asyncio.to_thread(api["redeem"], **mine["body"])
            spent = api["quote"](mine["token"])
    finally:
        api["db"].close()
    assert stolen == (402, {"status": "rejected", "reason": "bad_proof"})
    assert issued == again == (200, {"status": "issued"})
    assert spent == (200, {"price": 42, "requests_remaining": 1_999})
    assert query(database_url, "SELECT token_hash FROM x402_tokens") == [(mine["token_hash"],)]
