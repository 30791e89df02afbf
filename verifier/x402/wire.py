"""The facilitator's wire: request bodies as the official SDK's HTTPFacilitatorClient sends them
(``{"x402Version", "paymentPayload", "paymentRequirements"}``, v2 and v1), read into the SDK's
own pydantic models, and the answers it parses (VerifyResponse, SettleResponse,
SupportedResponse, serialized by alias: ``isValid``, ``invalidReason``, ``errorReason``...).

Anything that does not parse is a `Malformed` with an x402 reason code, answered as a
structured invalid result (HTTP 200), never a 500: the SDK turns any other status into an
exception inside the API's middleware.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from x402.schemas import (
    PaymentPayload,
    PaymentRequirements,
    SettleResponse,
    VerifyResponse,
)
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequirementsV1

from verifier.addresses import canonical_evm_address

# Reason codes of the x402 specification for requests that cannot be read.
INVALID_PAYLOAD = "invalid_payload"
INVALID_REQUIREMENTS = "invalid_payment_requirements"
INVALID_VERSION = "invalid_x402_version"
MAX_BODY = 64 * 1024  # a v2 payload is about 1 KB

_NONCE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_UINT = re.compile(r"^[0-9]{1,78}$")


class Malformed(Exception):
    def __init__(self, reason: str, message: str, *, network: str = "", payer: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.network = network
        self.payer = payer


@dataclass(frozen=True)
class Authorization:
    """An EIP-3009 authorization, canonical: addresses lowercase, numbers int, nonce lowercase."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str
    payer_display: str  # as the client wrote it (checksummed), echoed in `payer`


@dataclass(frozen=True)
class FacilitatorRequest:
    version: int
    payload: PaymentPayload | PaymentPayloadV1
    requirements: PaymentRequirements | PaymentRequirementsV1
    payload_scheme: str
    payload_network: str
    scheme: str
    network: str
    asset: str  # canonical lowercase
    amount: int
    pay_to: str  # canonical lowercase
    authorization: Authorization | None  # None: not an EIP-3009 payload (Permit2, garbage)
    resource_url: str | None

    @property
    def resource_path(self) -> str | None:
        if not self.resource_url:
            return None
        try:
            path = urlsplit(self.resource_url).path
        except ValueError:
            return None
        return path or "/"


def parse(body: bytes) -> FacilitatorRequest:
    """A /verify or /settle body, read exactly as the SDK writes it; raises Malformed."""
    if len(body) > MAX_BODY:
        raise Malformed(INVALID_PAYLOAD, f"body larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Malformed(INVALID_PAYLOAD, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Malformed(INVALID_PAYLOAD, "body is not a JSON object")
    raw_payload, raw_req = doc.get("paymentPayload"), doc.get("paymentRequirements")
    network = _network_hint(raw_req, raw_payload)
    if not isinstance(raw_payload, dict):
        raise Malformed(INVALID_PAYLOAD, "paymentPayload is missing", network=network)
    if not isinstance(raw_req, dict):
        raise Malformed(INVALID_REQUIREMENTS, "paymentRequirements is missing", network=network)
    version = raw_payload.get("x402Version", doc.get("x402Version"))
    if version not in (1, 2) or isinstance(version, bool):
        raise Malformed(INVALID_VERSION, f"x402Version {version!r} is not 1 or 2", network=network)
    payer = _payer_hint(raw_payload)
    try:
        if version == 2:
            payload: PaymentPayload | PaymentPayloadV1 = PaymentPayload.model_validate(raw_payload)
        else:
            payload = PaymentPayloadV1.model_validate(raw_payload)
    except (ValidationError, ValueError, TypeError) as exc:
        raise Malformed(INVALID_PAYLOAD, _first_error(exc), network=network, payer=payer) from None
    try:
        if version == 2:
            req: PaymentRequirements | PaymentRequirementsV1 = \
                PaymentRequirements.model_validate(raw_req)
        else:
            req = PaymentRequirementsV1.model_validate(raw_req)
    except (ValidationError, ValueError, TypeError) as exc:
        raise Malformed(INVALID_REQUIREMENTS, _first_error(exc), network=network,
                        payer=payer) from None
    try:
        asset = canonical_evm_address(req.asset)
        pay_to = canonical_evm_address(req.pay_to)
        amount = _uint(req.get_amount(), "amount")
    except ValueError as exc:
        raise Malformed(INVALID_REQUIREMENTS, str(exc), network=network, payer=payer) from None
    if isinstance(payload, PaymentPayload):
        payload_scheme, payload_network = payload.accepted.scheme, str(payload.accepted.network)
        resource = payload.resource.url if payload.resource else None
    else:
        payload_scheme, payload_network = payload.scheme, str(payload.network)
        resource = req.resource if isinstance(req, PaymentRequirementsV1) else None
    return FacilitatorRequest(
        version=version, payload=payload, requirements=req,
        payload_scheme=payload_scheme, payload_network=payload_network,
        scheme=req.scheme, network=str(req.network), asset=asset, amount=amount, pay_to=pay_to,
        authorization=_authorization(payload.payload, network, payer),
        resource_url=resource,
    )


def _authorization(data: dict[str, Any], network: str, payer: str | None) -> Authorization | None:
    auth = data.get("authorization")
    if not isinstance(auth, dict) or "permit2Authorization" in data:
        return None
    try:
        signature = data.get("signature")
        if not isinstance(signature, str) or not signature.startswith("0x"):
            raise ValueError("signature is not 0x-hex")
        bytes.fromhex(signature[2:])
        nonce = auth.get("nonce")
        if not isinstance(nonce, str) or not _NONCE.match(nonce):
            raise ValueError("authorization.nonce is not 32 bytes of 0x-hex")
        return Authorization(
            payer=canonical_evm_address(str(auth.get("from"))),
            to=canonical_evm_address(str(auth.get("to"))),
            value=_uint(auth.get("value"), "authorization.value"),
            valid_after=_uint(auth.get("validAfter"), "authorization.validAfter"),
            valid_before=_uint(auth.get("validBefore"), "authorization.validBefore"),
            nonce=nonce.lower(),
            signature=signature,
            payer_display=str(auth.get("from")),
        )
    except ValueError as exc:
        raise Malformed(INVALID_PAYLOAD, str(exc), network=network, payer=payer) from None


def _uint(value: Any, name: str) -> int:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _UINT.match(text) or int(text) >= 2**256:
        raise ValueError(f"{name} {value!r:.40} is not an unsigned integer")
    return int(text)


def _network_hint(req: Any, payload: Any) -> str:
    for source in (req, payload.get("accepted") if isinstance(payload, dict) else None, payload):
        if isinstance(source, dict) and isinstance(source.get("network"), str):
            return source["network"][:64]
    return ""


def _payer_hint(payload: dict[str, Any]) -> str | None:
    inner = payload.get("payload")
    auth = inner.get("authorization") if isinstance(inner, dict) else None
    payer = auth.get("from") if isinstance(auth, dict) else None
    return payer[:64] if isinstance(payer, str) else None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg', 'invalid')}"
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


# -- answers ------------------------------------------------------------------------------------


def verify_answer(valid: bool, *, payer: str | None, reason: str | None = None,
                  message: str | None = None) -> dict[str, Any]:
    """A VerifyResponse as the SDK parses it (checked against its model)."""
    answer = VerifyResponse(is_valid=valid, invalid_reason=reason, invalid_message=message,
                            payer=payer)
    return answer.model_dump(by_alias=True, exclude_none=True)


def settle_answer(success: bool, *, network: str, transaction: str = "", payer: str | None = None,
                  reason: str | None = None, message: str | None = None,
                  amount: int | None = None) -> dict[str, Any]:
    answer = SettleResponse(success=success, error_reason=reason, error_message=message,
                            payer=payer, transaction=transaction, network=network,
                            amount=str(amount) if amount is not None else None)
    return answer.model_dump(by_alias=True, exclude_none=True)
