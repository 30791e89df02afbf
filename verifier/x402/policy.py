"""What this facilitator settles, decided from the request and configuration alone (no I/O).

Two steps around the SDK's own verification (verifier.x402.sdk):
- `route` before it: the scheme must be "exact" and the network one we settle on (CAIP-2
  ``eip155:<X402_<CHAIN>_CHAIN_ID>``, or its v1 name such as ``base``), otherwise there is no
  chain to verify against. The payload must be an EIP-3009 authorization (no Permit2).
- `policy` after it, on payloads the reference would accept: the operator's gas must pay only
  for transfers of the configured USDC to one of the configured payees, within the configured
  amounts, and never for an authorization signed by the settler itself. Checked after the SDK
  so that a payload the reference refuses gets the reference's code, in its order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from x402.mechanisms.evm.constants import (
    ERR_NETWORK_MISMATCH,
    ERR_RECIPIENT_MISMATCH,
    ERR_UNSUPPORTED_SCHEME,
    SCHEME_EXACT,
)
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

from .wire import INVALID_PAYLOAD, FacilitatorRequest

# Our own codes, for payloads the reference would settle and we do not (README, "x402").
UNSUPPORTED_ASSET = "unsupported_asset"
AMOUNT_OUT_OF_BOUNDS = "amount_out_of_bounds"
PAYER_IS_SETTLER = "payer_is_settler"
POLICY_REASONS = (ERR_RECIPIENT_MISMATCH, UNSUPPORTED_ASSET, AMOUNT_OUT_OF_BOUNDS, PAYER_IS_SETTLER)


@dataclass(frozen=True)
class Terms:
    """One chain this facilitator settles on."""

    chain: str
    chain_id: int
    usdc: str
    payees: tuple[str, ...]
    settler: str
    min_amount: int
    max_amount: int

    @property
    def caip2(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def v1_networks(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, i in V1_NETWORK_CHAIN_IDS.items() if i == self.chain_id))

    def speaks(self, version: int, network: str) -> bool:
        return network == self.caip2 if version == 2 else network in self.v1_networks


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def route(req: FacilitatorRequest, terms: Iterable[Terms]) -> Terms | Refusal:
    if req.payload_scheme != SCHEME_EXACT or req.scheme != SCHEME_EXACT:
        return Refusal(ERR_UNSUPPORTED_SCHEME, f"scheme {req.scheme!r} is not offered")
    if req.payload_network != req.network:
        return Refusal(ERR_NETWORK_MISMATCH, "the payload's network is not the requirements'")
    found = next((t for t in terms if t.speaks(req.version, req.network)), None)
    if found is None:
        return Refusal(ERR_NETWORK_MISMATCH, f"network {req.network!r} is not settled here")
    if req.authorization is None:
        return Refusal(INVALID_PAYLOAD, "only EIP-3009 authorizations are settled here")
    return found


def policy(req: FacilitatorRequest, terms: Terms) -> Refusal | None:
    auth = req.authorization
    assert auth is not None
    if req.pay_to not in terms.payees or auth.to not in terms.payees:
        return Refusal(ERR_RECIPIENT_MISMATCH, "payTo is not a payment address of this service")
    if req.asset != terms.usdc:
        return Refusal(UNSUPPORTED_ASSET, "only the configured USDC is settled")
    if not terms.min_amount <= auth.value <= terms.max_amount:
        return Refusal(AMOUNT_OUT_OF_BOUNDS,
                       f"amount must be within {terms.min_amount}..{terms.max_amount} base units")
    if auth.payer == terms.settler:
        return Refusal(PAYER_IS_SETTLER, "the settler does not settle its own authorizations")
    return None
