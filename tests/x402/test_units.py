"""The facilitator's pure parts: configuration, key and token files, the wire (against traffic
captured from the official SDK), the policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from eth_account import Account
from x402.schemas import SettleResponse, VerifyResponse

from verifier import config
from verifier.errors import ConfigError
from verifier.x402 import policy, wire
from verifier.x402.build import read_token
from verifier.x402.settler import load_key

# Captured between the official SDK 2.25.0 (FastAPI middleware, HTTPFacilitatorClient) and a
# facilitator built on its own facilitator core, on anvil with FiatTokenV2_2 (anvil dev keys).
CAPTURE = Path(__file__).parent / "data" / "wire_v2_evm.jsonl"
KEY = "0x" + "11" * 32
BASE = {"X402_BASE_RPC_URLS": "http://127.0.0.1:8545",
        "X402_BASE_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
        "X402_BASE_SETTLER_KEY_FILE": "/run/credentials/x402/settler"}


def test_the_facilitator_is_off_by_default():
    assert config.load({k: v for k, v in BASE.items()}).facilitator_addr is None


def test_a_non_loopback_address_needs_a_token():
    with pytest.raises(ConfigError, match=r"X402_FACILITATOR_ADDR.*TOKEN_FILE"):
        config.load({**BASE, "X402_FACILITATOR_ADDR": "0.0.0.0:8402"})
    cfg = config.load({**BASE, "X402_FACILITATOR_ADDR": "0.0.0.0:8402",
                       "X402_FACILITATOR_TOKEN_FILE": "/run/credentials/x402/token"})
    assert cfg.facilitator_addr == ("0.0.0.0", 8402)
    assert config.load({**BASE, "X402_FACILITATOR_ADDR": "[::1]:8402"}).facilitator_addr == \
        ("::1", 8402)


def test_serving_needs_a_settler_key():
    env = {k: v for k, v in BASE.items() if "SETTLER" not in k}
    with pytest.raises(ConfigError, match="SETTLER_KEY_FILE"):
        config.load({**env, "X402_FACILITATOR_ADDR": "127.0.0.1:8402"})


def test_exact_minimum_defaults_to_the_price():
    cfg = config.load({**BASE, "X402_PRICE_PER_REQUEST_USDC": "0.002"})
    assert cfg.policy.exact_min_payment == 2_000
    assert config.load({**BASE, "X402_EXACT_MIN_PAYMENT_USDC": "0.01"}).policy.exact_min_payment == 10_000


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="group or others"):
        load_key(path, "X402_BASE_SETTLER_KEY_FILE")
    os.chmod(path, 0o400)
    key = load_key(path, "X402_BASE_SETTLER_KEY_FILE")
    assert key.address == Account.from_key(KEY).address.lower()
    assert KEY[2:] not in repr(key) and KEY[2:] not in str(key)


def test_a_bad_key_file_names_the_variable_not_the_key(tmp_path):
    path = tmp_path / "key"
    path.write_text("0x" + "zz" * 32)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as caught:
        load_key(path, "X402_BASE_SETTLER_KEY_FILE")
    assert "X402_BASE_SETTLER_KEY_FILE" in str(caught.value) and "zz" not in str(caught.value)


def test_a_short_token_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="TOKEN_FILE"):
        read_token(path)
    path.write_text("x" * 32 + "\n")
    assert read_token(path) == "x" * 32


def captured(kind: str) -> list[dict]:
    return [json.loads(line)["body"] for line in CAPTURE.read_text().splitlines()
            if json.loads(line)["kind"] == kind]


def test_every_captured_request_parses():
    for body in captured("verify.request") + captured("settle.request"):
        req = wire.parse(json.dumps(body).encode())
        assert req.version == 2 and req.network == "eip155:8453"
        assert req.authorization is not None
        assert req.authorization.payer == body["paymentPayload"]["payload"][
            "authorization"]["from"].lower()
        assert req.resource_path == "/v1/quote"


def test_answers_have_the_captured_shape():
    for answer in captured("verify.response"):
        ours = wire.verify_answer(answer["isValid"], payer=answer.get("payer"),
                                  reason=answer.get("invalidReason"),
                                  message=answer.get("invalidMessage"))
        assert ours == answer
        VerifyResponse.model_validate(ours)
    for answer in captured("settle.response"):
        ours = wire.settle_answer(answer["success"], network=answer["network"],
                                  transaction=answer["transaction"], payer=answer["payer"])
        assert ours == answer
        SettleResponse.model_validate(ours)


def terms() -> policy.Terms:
    return policy.Terms("base", 8453, "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
                        ("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",),
                        "0x90f79bf6eb2c4f870365e785982e1f101e93b906", 1_000, 10**9)


def test_policy_on_the_captured_payment():
    req = wire.parse(json.dumps(captured("settle.request")[0]).encode())
    t = terms()
    assert policy.route(req, [t]) == t
    assert policy.policy(req, t) is None
    assert t.v1_networks == ("base",)
    other = policy.Terms(**{**t.__dict__, "payees": ("0x" + "44" * 20,)})
    refusal = policy.policy(req, other)
    assert refusal is not None and refusal.reason == "invalid_exact_evm_payload_recipient_mismatch"
    self_paid = policy.Terms(**{**t.__dict__, "settler": req.authorization.payer})
    assert policy.policy(req, self_paid).reason == "payer_is_settler"
    tight = policy.Terms(**{**t.__dict__, "max_amount": 99_999})
    assert policy.policy(req, tight).reason == "amount_out_of_bounds"
    elsewhere = policy.Terms(**{**t.__dict__, "chain_id": 1})
    assert policy.route(req, [elsewhere]).reason == "network_mismatch"
