"""Payment payloads made by the official x402 client (its EVM exact scheme, EIP-3009), for
posting to the facilitator directly, as the official middleware would."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from verifier.devnet.evm import USDC_BASE

from .conftest import PAYEE, PRICE_UNITS, ROUTE


def requirements(**changes: Any) -> dict[str, Any]:
    req = {"scheme": "exact", "network": "eip155:8453", "asset": USDC_BASE,
           "amount": str(PRICE_UNITS), "payTo": PAYEE, "maxTimeoutSeconds": 300,
           "extra": {"name": "USD Coin", "version": "2"}}
    req.update(changes)
    return req


async def body(payer: LocalAccount, **changes: Any) -> dict[str, Any]:
    """A /verify or /settle body, v2, signed by the official client for `requirements(**changes)`."""
    client = x402Client()
    client.set_spend_controls(False)  # lets tests sign for any asset, as an attacker would
    register_exact_evm_client(client, EthAccountSigner(payer))
    req = PaymentRequirements.model_validate(requirements(**changes))
    required = PaymentRequired(accepts=[req], resource=ResourceInfo(
        url=f"http://127.0.0.1:1{ROUTE}", description="one paid quote", mime_type=""))
    payload = await client.create_payment_payload(required)
    return {"x402Version": 2,
            "paymentPayload": payload.model_dump(by_alias=True, exclude_none=True),
            "paymentRequirements": req.model_dump(by_alias=True, exclude_none=True)}


async def body_v1(payer: LocalAccount) -> dict[str, Any]:
    client = x402Client()
    client.set_spend_controls(False)  # lets tests sign for any asset, as an attacker would
    register_exact_evm_client(client, EthAccountSigner(payer))
    req = PaymentRequirementsV1(scheme="exact", network="base",
                                max_amount_required=str(PRICE_UNITS),
                                resource=f"http://127.0.0.1:1{ROUTE}", pay_to=PAYEE,
                                max_timeout_seconds=300, asset=USDC_BASE,
                                extra={"name": "USD Coin", "version": "2"})
    payload = await client.create_payment_payload(PaymentRequiredV1(accepts=[req]))
    return {"x402Version": 1,
            "paymentPayload": payload.model_dump(by_alias=True, exclude_none=True),
            "paymentRequirements": req.model_dump(by_alias=True, exclude_none=True)}
