"""The verifier's decisions, from facts and policy alone: no I/O, no clock, no database.

Chain adapters turn RPC answers into Transfer facts; these functions decide what they are worth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from verifier.models import ChainView, Observed, Transfer, Verdict


@dataclass(frozen=True)
class Policy:
    price_per_request: int  # USDC base units
    min_payment: int  # USDC base units
    claim_proof: Literal["signature", "none"] = "signature"
    claim_ttl: timedelta = timedelta(minutes=30)
    not_found_grace: timedelta = timedelta(seconds=60)


def payments_from_transfers(
    transfers: Iterable[Transfer], payees: Iterable[str], token: str
) -> list[Observed]:
    """One payment per transaction: the sum of its `token` transfers to any of `payees`.

    Transfers of another token, or to anyone else, count for nothing. The payer is the sender of
    the first transfer to a payee (lowest log index); the payee is the one first paid. Returned
    oldest first.
    """
    payee_set = set(payees)
    grouped: dict[str, list[Transfer]] = {}
    for t in transfers:
        if t.token == token and t.to_address in payee_set and t.amount > 0:
            grouped.setdefault(t.tx_hash, []).append(t)
    payments = []
    for tx_hash, group in grouped.items():
        group.sort(key=lambda t: t.index)
        first = group[0]
        payments.append(Observed(
            chain=first.chain,
            tx_hash=tx_hash,
            block_number=first.block_number,
            block_hash=first.block_hash,
            from_address=first.from_address,
            to_address=first.to_address,
            amount=sum(t.amount for t in group),
        ))
    payments.sort(key=lambda p: (p.block_number, p.tx_hash))
    return payments


def judge(payment: Observed, view: ChainView, policy: Policy) -> Verdict:
    """Pending until final; then verified, or underpaid when below the minimum."""
    confirmations = max(0, view.head - payment.block_number + 1)
    if payment.block_number > view.final:
        status: Literal["pending", "verified", "underpaid"] = "pending"
    elif payment.amount < policy.min_payment:
        status = "underpaid"
    else:
        status = "verified"
    return Verdict(status, confirmations, requests_for(payment.amount, policy))


def requests_for(amount: int, policy: Policy) -> int:
    """floor(amount / price) in integer base units; an underpayment buys nothing."""
    if amount < policy.min_payment:
        return 0
    return amount // policy.price_per_request


def final_block(head: int, confirmations: int) -> int:
    """The highest block with at least `confirmations` confirmations (the head has 1)."""
    return head - max(confirmations, 1) + 1


def claim_message(chain: str, tx_hash: str, token_hash: str) -> str:
    """What the payer signs to prove a claim is theirs (DESIGN section 2)."""
    return f"x402-claim:v1:{chain}:{tx_hash}:{token_hash}"


ClaimAction = Literal["issue", "reject", "wait", "expire"]


@dataclass(frozen=True)
class ClaimDecision:
    action: ClaimAction
    reason: str | None = None


@dataclass(frozen=True)
class ClaimFacts:
    """What a worker knows about a claim when it decides."""

    age: timedelta
    payment_status: str | None  # None: no payment recorded for the transaction
    lookup_reason: str | None = None  # why an on-demand lookup found no payment
    already_claimed: bool = False
    proof_valid: bool | None = None  # None: not checked (no payment, or proofs not required)


def judge_claim(facts: ClaimFacts, policy: Policy) -> ClaimDecision:
    status = facts.payment_status
    if status is None:
        reason = facts.lookup_reason or "not_found"
        if reason == "not_found" and facts.age < policy.not_found_grace:
            return ClaimDecision("wait", reason)
        return ClaimDecision("reject", reason)
    if status == "underpaid":
        return ClaimDecision("reject", "underpaid")
    if status == "reorged":
        return ClaimDecision("reject", "reorged")
    if status == "pending":
        if facts.age >= policy.claim_ttl:
            return ClaimDecision("expire", "unconfirmed")
        return ClaimDecision("wait", "unconfirmed")
    if facts.already_claimed or status == "used":
        return ClaimDecision("reject", "already_claimed")
    if status == "expired":
        return ClaimDecision("reject", "expired")
    if policy.claim_proof == "signature" and not facts.proof_valid:
        return ClaimDecision("reject", "bad_proof")
    return ClaimDecision("issue")
