"""What the facilitator refuses, with the reference's reason codes, and sends nothing for.

Each payload is made by the official client and then altered, as an attacker would; the answer
is always HTTP 200 with isValid/success false (the SDK raises on anything else), except a request
without the bearer token (401).
"""

from __future__ import annotations

import copy

import httpx
import pytest
from eth_account import Account

from tests.daemon import query
from tests.x402 import payloads
from tests.x402.conftest import PaidApi


async def post(api: PaidApi, path: str, body: object, *, token: str | None = "default",
               raw: bytes | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {api.token if token == 'default' else token}"
    async with httpx.AsyncClient(timeout=30) as client:
        if raw is not None:
            return await client.post(api.facilitator + path, content=raw, headers=headers)
        return await client.post(api.facilitator + path, json=body, headers=headers)


def settler_nonce(api: PaidApi) -> int:
    return int(api.devnet.rpc("eth_getTransactionCount", api.settler.address, "pending"), 16)


async def refused(api: PaidApi, body: object, reason: str) -> None:
    """Both /verify and /settle refuse with `reason`, and nothing is broadcast."""
    sent = settler_nonce(api)
    verify = await post(api, "/verify", body)
    assert verify.status_code == 200, verify.text
    assert verify.json()["isValid"] is False
    assert verify.json()["invalidReason"] == reason, verify.json()
    settle = await post(api, "/settle", body)
    assert settle.status_code == 200, settle.text
    answer = settle.json()
    assert answer["success"] is False and answer["errorReason"] == reason, answer
    assert answer["transaction"] == ""
    assert settler_nonce(api) == sent
    assert query(api.database_url, "SELECT count(*) FROM verifier.settlements") == [(0,)]


def authorization(body: dict) -> dict:
    return body["paymentPayload"]["payload"]["authorization"]


async def test_a_valid_payload_verifies(paid_api: PaidApi):
    answer = (await post(paid_api, "/verify", await payloads.body(paid_api.payer))).json()
    assert answer == {"isValid": True, "payer": paid_api.payer.address}


async def test_v1_payload_with_network_name_is_settled(paid_api: PaidApi):
    body = await payloads.body_v1(paid_api.payer)
    assert (await post(paid_api, "/verify", body)).json()["isValid"] is True
    answer = (await post(paid_api, "/settle", body)).json()
    assert answer["success"] is True and answer["network"] == "base", answer
    assert paid_api.devnet.receipt(answer["transaction"])["status"] == "0x1"


async def test_replay_answers_the_original_transaction(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    first = (await post(paid_api, "/settle", body)).json()
    assert first["success"] is True
    sent = settler_nonce(paid_api)
    again = (await post(paid_api, "/settle", body)).json()
    assert again["success"] is False
    assert again["errorReason"] == "duplicate_settlement"
    assert again["transaction"] == first["transaction"]
    assert settler_nonce(paid_api) == sent
    verify = (await post(paid_api, "/verify", body)).json()
    assert verify["invalidReason"] == "invalid_exact_evm_nonce_already_used"
    assert query(paid_api.database_url, "SELECT count(*) FROM x402_payments") == [(1,)]


async def test_tampered_value(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    authorization(body)["value"] = "20000"
    await refused(paid_api, body, "invalid_exact_evm_payload_authorization_value_mismatch")


async def test_tampered_value_in_both_breaks_the_signature(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    authorization(body)["value"] = "20000"
    body["paymentRequirements"]["amount"] = "20000"
    body["paymentPayload"]["accepted"]["amount"] = "20000"
    await refused(paid_api, body, "invalid_exact_evm_payload_signature")


async def test_payer_without_balance(paid_api: PaidApi):
    await refused(paid_api, await payloads.body(Account.create()),
                  "invalid_exact_evm_insufficient_balance")


async def test_forged_signature(paid_api: PaidApi):
    body = await payloads.body(Account.create())
    authorization(body)["from"] = paid_api.payer.address  # signed by someone else
    await refused(paid_api, body, "invalid_exact_evm_payload_signature")


async def test_foreign_pay_to(paid_api: PaidApi):
    foreign = Account.create().address
    body = await payloads.body(paid_api.payer, payTo=foreign)
    await refused(paid_api, body, "invalid_exact_evm_payload_recipient_mismatch")


async def test_wrong_network(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer, network="eip155:1",
                               asset="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")
    await refused(paid_api, body, "network_mismatch")


async def test_expired_valid_before(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    authorization(body)["validBefore"] = "1000"
    await refused(paid_api, body, "invalid_exact_evm_payload_authorization_valid_before")


async def test_settler_is_never_the_payer(paid_api: PaidApi):
    paid_api.devnet.mint(paid_api.settler.address, 1_000_000)
    await refused(paid_api, await payloads.body(paid_api.settler), "payer_is_settler")


async def test_another_asset_is_not_settled(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer, asset=paid_api.devnet.lookalike)
    verify = (await post(paid_api, "/verify", body)).json()
    assert verify["isValid"] is False
    assert (await post(paid_api, "/settle", body)).json()["success"] is False
    assert query(paid_api.database_url, "SELECT count(*) FROM verifier.settlements") == [(0,)]


async def test_amount_below_the_bound(paid_api: PaidApi):
    # X402_EXACT_MIN_PAYMENT_USDC defaults to the price (0.001 USDC = 1000 base units).
    await refused(paid_api, await payloads.body(paid_api.payer, amount="999"),
                  "amount_out_of_bounds")


@pytest.mark.parametrize("path", ["/verify", "/settle"])
@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"{}", b'{"paymentPayload": 1}',
                                 b'{"x402Version": 2, "paymentPayload": {"x402Version": 2}, '
                                 b'"paymentRequirements": {}}'])
async def test_malformed_body_is_a_structured_invalid_answer(paid_api: PaidApi, path: str,
                                                            raw: bytes):
    response = await post(paid_api, path, None, raw=raw)
    assert response.status_code == 200, response.text
    answer = response.json()
    if path == "/verify":
        assert answer["isValid"] is False and answer["invalidReason"].startswith("invalid_")
    else:
        assert answer["success"] is False and answer["errorReason"].startswith("invalid_")
        assert answer["transaction"] == "" and "network" in answer


async def test_garbage_inside_a_valid_shape(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    for field, value in [("nonce", "0x12"), ("value", "-1"), ("from", "nobody"),
                         ("validBefore", None)]:
        broken = copy.deepcopy(body)
        authorization(broken)[field] = value
        answer = (await post(paid_api, "/settle", broken)).json()
        assert answer["success"] is False and answer["errorReason"] == "invalid_payload", answer


@pytest.mark.parametrize("path", ["/supported", "/verify", "/settle"])
@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token"])
async def test_no_bearer_token_is_401(paid_api: PaidApi, path: str, token: str | None):
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if path == "/supported":
            response = await client.get(paid_api.facilitator + path, headers=headers)
        else:
            response = await client.post(paid_api.facilitator + path, json={}, headers=headers)
    assert response.status_code == 401


async def test_supported_lists_v2_v1_and_the_settler(paid_api: PaidApi):
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(paid_api.facilitator + "/supported",
                                    headers={"Authorization": f"Bearer {paid_api.token}"})
    answer = response.json()
    assert {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"} in answer["kinds"]
    assert {"x402Version": 1, "scheme": "exact", "network": "base"} in answer["kinds"]
    assert answer["signers"] == {"eip155:*": [paid_api.settler.address]}


async def test_a_known_nonce_with_another_value_is_no_duplicate(paid_api: PaidApi):
    """Payer and nonce are public once settled: a payload reusing them with another value is
    checked like any other, never answered from the ledger."""
    body = await payloads.body(paid_api.payer)
    assert (await post(paid_api, "/settle", body)).json()["success"] is True
    forged = await payloads.body(paid_api.payer, amount="20000")
    authorization(forged)["nonce"] = authorization(body)["nonce"]
    answer = (await post(paid_api, "/settle", forged)).json()
    assert answer["success"] is False
    assert answer["errorReason"] == "invalid_exact_evm_payload_signature"
    assert answer["transaction"] == ""
