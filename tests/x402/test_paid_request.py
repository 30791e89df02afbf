"""A standard x402 client pays an API whose facilitator is x402-verifier."""

from __future__ import annotations

import base64
import json

from tests.daemon import eventually, query
from tests.x402.conftest import PAYEE, PRICE_UNITS, ROUTE, PaidApi, payer_client


def decoded(header: str) -> dict:
    return json.loads(base64.b64decode(header))


async def test_a_paid_request_end_to_end(paid_api: PaidApi, capfd):
    before = paid_api.devnet.balance_of(PAYEE)
    async with payer_client(paid_api.payer) as client:
        response = await client.get(paid_api.url + ROUTE)
    assert response.status_code == 200, response.text
    assert response.json() == {"quote": 42}
    settled = decoded(response.headers["PAYMENT-RESPONSE"])
    assert settled["success"] is True
    assert settled["network"] == "eip155:8453"
    assert settled["payer"].lower() == paid_api.payer.address.lower()
    tx = settled["transaction"]
    assert paid_api.devnet.balance_of(PAYEE) - before == PRICE_UNITS
    receipt = paid_api.devnet.receipt(tx)
    assert receipt["from"].lower() == paid_api.settler.address.lower()
    rows = query(paid_api.database_url,
                 "SELECT tx_hash, from_address, to_address, amount_usdc, status,"
                 " requests_allocated, requests_used FROM x402_payments")
    assert len(rows) == 1
    tx_hash, sender, payee, amount, status, allocated, used = rows[0]
    assert (tx_hash, sender, payee) == (tx.lower(), paid_api.payer.address.lower(), PAYEE)
    assert amount * 10**6 == PRICE_UNITS
    assert allocated == PRICE_UNITS // 1_000 and used == 1
    assert status in ("pending", "verified")
    assert query(paid_api.database_url, "SELECT endpoint FROM x402_usage") == [(ROUTE,)]
    ledger = query(paid_api.database_url,
                   "SELECT state, tx_hash, success_answered, signed_tx IS NOT NULL"
                   " FROM verifier.settlements")
    assert ledger == [("mined", tx.lower(), True, True)]
    logged = capfd.readouterr()
    assert paid_api.settler.address.lower() in logged.out + logged.err  # the address is shown
    key = paid_api.settler.key.hex().removeprefix("0x")
    assert key not in logged.out + logged.err  # the key never


async def test_the_settlement_is_verified_after_confirmations_and_shows_in_the_views(
        devnet, database_url, secrets_dir):
    from tests.x402.conftest import paid_api_running

    async with paid_api_running(devnet, database_url, secrets_dir,
                                X402_BASE_CONFIRMATIONS="3") as api:
        async with payer_client(api.payer) as client:
            response = await client.get(api.url + ROUTE)
        assert response.status_code == 200, response.text
        tx = decoded(response.headers["PAYMENT-RESPONSE"])["transaction"].lower()
        assert query(database_url, "SELECT status FROM x402_payments") == [("pending",)]
        devnet.mine(3)
        await eventually(lambda: query(database_url, "SELECT status FROM x402_payments"
                                       " WHERE status = 'verified'"))
    assert query(database_url, "SELECT tx_hash, confirmations >= 3 FROM x402_payments"
                 ) == [(tx, True)]
    assert query(database_url, "SELECT endpoint, request_count FROM v_x402_endpoint_stats"
                 ) == [(ROUTE, 1)]
    stats = query(database_url, "SELECT chain, total_payments FROM v_x402_stats_24h")
    assert ("base", 1) in stats
    assert query(database_url, "SELECT count(*) FROM v_x402_top_payers") == [(1,)]
    query(database_url, "SELECT update_x402_analytics(now())")
    assert query(database_url, "SELECT sum(total_payments), sum(total_requests)"
                 " FROM x402_analytics") == [(1, 1)]  # the one request used
