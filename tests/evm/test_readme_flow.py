"""README's claim flow, as written, in signature mode: anvil, PostgreSQL, a running daemon."""

from __future__ import annotations

import asyncio

import pytest

from tests import readme_flow
from tests.daemon import query, running_daemon
from tests.evm.chain import PAYEE, daemon_env, fresh_chain


@pytest.fixture
def chain():
    with fresh_chain() as c:
        yield c


async def test_the_readme_flow_issues_the_clients_token_once(chain, database_url):
    d = chain.devnet
    payer, watcher = d.accounts[1], d.accounts[6]
    d.mint(payer, 10_000_000)
    tx = d.transfer(payer, PAYEE, 1_000_000)
    d.mine(3)
    shouted = "0x" + tx[2:].upper()  # the client may hold the hash in any case
    env = daemon_env(chain.url, X402_CLAIM_PROOF="signature")
    api = readme_flow.server(database_url)
    try:
        async with running_daemon(env, database_url):
            # Someone watching the chain claims first, with their own token and key.
            thief = readme_flow.client(chain="base", tx_hash=tx, private_key=watcher.key)
            stolen = await asyncio.to_thread(api["redeem"], **thief["body"])
            mine = readme_flow.client(chain="base", tx_hash=shouted, private_key=payer.key)
            issued = await asyncio.to_thread(api["redeem"], **mine["body"])
            again = await asyncio.to_thread(api["redeem"], **mine["body"])  # answer was lost
            spent = api["quote"](mine["token"])
            refused = api["quote"](thief["token"])
    finally:
        api["db"].close()
    assert stolen == (402, {"status": "rejected", "reason": "bad_proof"})
    assert issued == again == (200, {"status": "issued"})
    assert spent == (200, {"price": 42, "requests_remaining": 999})
    assert refused == (402, {"reason": "unknown_token"})
    assert query(database_url, "SELECT status, count(*) FROM verifier.claims GROUP BY 1 "
                               "ORDER BY 1") == [("issued", 1), ("rejected", 1)]
    assert query(database_url, "SELECT token_hash FROM x402_tokens") == [(mine["token_hash"],)]
