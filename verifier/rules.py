"""The verifier's decisions, from facts and policy alone: no I/O, no clock, no database.

Chain decoders turn RPC answers into facts (TxFacts); these functions decide what they are
worth: the payment, its payer, or why a transaction pays nothing, the same way for every chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from verifier.models import (
    AuthorizationUse,
    BalanceChange,
    ChainView,
    Observed,
    Transfer,
    TxFacts,
    Verdict,
)
from verifier.vocab import NotPaid, PaymentStatus, Reason


@dataclass(frozen=True)
class Policy:
    price_per_request: int  # USDC base units
    min_payment: int  # USDC base units
    claim_proof: Literal["signature", "none"] = "signature"
    claim_ttl: timedelta = timedelta(minutes=30)
    not_found_grace: timedelta = timedelta(seconds=60)
    exact_min_payment: int | None = None  # USDC base units; None: the price per request

    @property
    def exact_minimum(self) -> int:
        """The least an x402 "exact" payment (Observed.exact) must be to count as paid."""
        if self.exact_min_payment is None:
            return self.price_per_request
        return self.exact_min_payment

    def minimum_for(self, payment: Observed) -> int:
        return self.exact_minimum if payment.exact else self.min_payment


def judge_transaction(facts: TxFacts, payees: Sequence[str], token: str) -> Observed | NotPaid:
    """What one transaction paid the payees in ``token``; else why it paid nothing.

    Paid: what reached the payees from anyone else, when above 0. EVM: the sum of ``token``
    transfers into a payee from a non-payee (a transfer from a payee is never a payment).
    Solana: the net change of the payees' ``token`` accounts taken together, so a move between
    two payees nets 0 there too. The payment is credited to the payee that received most (ties:
    first listed), and to the payer of ``payer()``. Otherwise the first reason that holds, in
    this order: failed_tx, wrong_token (another token reached a payee), wrong_recipient
    (``token`` moved, but not to the payees from someone else), no_transfer.
    """
    if facts.failed:
        return "failed_tx"
    received = _received(facts, payees, token)
    total = sum(received.values())
    paid = [(amount, -payees.index(to), to) for to, amount in received.items() if amount > 0]
    if not paid or total <= 0:
        return _why_unpaid(facts, payees, token)
    _, _, to = max(paid)
    return Observed(chain=facts.chain, tx_hash=facts.tx_hash, block_number=facts.block_number,
                    block_hash=facts.block_hash, from_address=payer(facts, payees, token),
                    to_address=to, amount=total,
                    exact=_exact(facts, payees, token))


def _exact(facts: TxFacts, payees: Sequence[str], token: str) -> bool:
    """Every ``token`` transfer into a payee is authorized, and there is one (EVM). Solana has
    no EIP-3009: its x402 payments are the transactions of the "exact" SVM layout
    (TxFacts.svm_exact), whoever settled them."""
    if facts.chain == "solana":
        return facts.svm_exact
    counted = [t for t in facts.transfers if t.token == token and t.to_address in payees
               and t.from_address not in payees and t.amount > 0]
    return bool(counted) and all(authorized(t, facts.authorizations) for t in counted)


def authorized(transfer: Transfer, authorizations: Iterable[AuthorizationUse]) -> bool:
    """Did this Transfer execute an EIP-3009 authorization of its sender? True when the same
    token contract logged AuthorizationUsed for the sender right before it, in the same
    transaction: FiatToken's transferWithAuthorization and receiveWithAuthorization emit exactly
    that pair (AuthorizationUsed, then Transfer), whoever submitted the transaction. Another
    contract's log, another authorizer's, or a log elsewhere in the transaction is not it."""
    return any(a.tx_hash == transfer.tx_hash and a.token == transfer.token
               and a.authorizer == transfer.from_address and a.index == transfer.index - 1
               for a in authorizations)


def _received(facts: TxFacts, payees: Sequence[str], token: str) -> dict[str, int]:
    """Per payee, what it got in ``token`` (Solana: its net change, which may be negative when
    it paid another payee). A move between two payees is no payment."""
    got: dict[str, int] = {}
    for t in facts.transfers:
        if t.token == token and t.to_address in payees and t.from_address not in payees:
            got[t.to_address] = got.get(t.to_address, 0) + t.amount
    for b in facts.balances:
        holder = _payee_of(b, payees)
        if holder is not None and b.token == token:
            got[holder] = got.get(holder, 0) + b.change
    return got


def _payee_of(b: BalanceChange, payees: Sequence[str]) -> str | None:
    """A token account counts for the payee owning it, or for itself when listed as a payee."""
    if b.owner in payees:
        return b.owner
    return b.account if b.account in payees else None


def _why_unpaid(facts: TxFacts, payees: Sequence[str], token: str) -> NotPaid:
    """Another token reaching a payee says most about the mistake, so it is named first."""
    if any(t.token != token and t.to_address in payees and t.amount > 0 for t in facts.transfers) \
            or any(b.token != token and b.change > 0 and _payee_of(b, payees) is not None
                   for b in facts.balances):
        return "wrong_token"
    if _moved(facts, token):
        return "wrong_recipient"
    return "no_transfer"


def _moved(facts: TxFacts, token: str) -> bool:
    """Whether ``token`` moved at all: a transfer of it, a balance of it that changed, or a token
    instruction between accounts of it (a self-transfer leaves every balance as it was)."""
    accounts = {b.account for b in facts.balances if b.token == token}
    return (any(t.token == token and t.amount > 0 for t in facts.transfers)
            or any(b.token == token and b.change for b in facts.balances)
            or any(m.amount > 0 and (m.source in accounts or m.destination in accounts)
                   for m in facts.moves))


def payer(facts: TxFacts, payees: Sequence[str], token: str) -> str:
    """Who paid: the sender of the largest amount to the payees, all payees together, summed
    per sender over the transaction's transfers to them. Ties go to the sender whose first
    transfer to a payee comes first (EVM: lowest log index; Solana: instruction order, inner
    instructions after their top-level one). A transfer from a payee never counts.

    EVM: the sender is the Transfer log's ``from``. Solana: a token move into a payee's
    ``token`` account, its sender the owner of the source account (else the move's authority).
    Solana without such a move (very old answers, exotic programs): the owner whose ``token``
    balance fell most; else the authority of the first move; else the fee payer.

    Whoever signed the transaction may claim the payment too: see ``accepted_signers``."""
    sent: dict[str, tuple[int, int]] = {}  # sender -> (total, position of its first transfer)
    for t in facts.transfers:
        if t.token == token and t.to_address in payees and t.from_address not in payees \
                and t.amount > 0:
            total, first = sent.get(t.from_address, (0, t.index))
            sent[t.from_address] = (total + t.amount, min(first, t.index))
    if not sent:
        sent = _solana_senders(facts, payees, token)
    if sent:
        return min(sent.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))[0]
    fell: dict[str, int] = {}
    for b in facts.balances:
        if b.token == token and b.owner and _payee_of(b, payees) is None:
            fell[b.owner] = fell.get(b.owner, 0) + b.change
    losers = [(change, owner) for owner, change in fell.items() if change < 0]
    if losers:
        return min(losers)[1]
    return _authority(facts)


def _solana_senders(facts: TxFacts, payees: Sequence[str], token: str
                    ) -> dict[str, tuple[int, int]]:
    """Per sender, what its token moves put into the payees' ``token`` accounts."""
    owners = {b.account: b.owner for b in facts.balances if b.token == token}
    into = {b.account for b in facts.balances
            if b.token == token and _payee_of(b, payees) is not None}
    sent: dict[str, tuple[int, int]] = {}
    for position, m in enumerate(facts.moves):
        if m.destination not in into or m.source in into or m.amount <= 0:
            continue
        sender = owners.get(m.source) or m.authority
        if not sender or sender in payees:
            continue
        total, first = sent.get(sender, (0, position))
        sent[sender] = (total + m.amount, first)
    return sent


def _authority(facts: TxFacts) -> str:
    if facts.moves:
        return facts.moves[0].authority
    return facts.signers[0] if facts.signers else ""


def accepted_signers(payer: str, tx_signers: Iterable[str] = ()) -> tuple[str, ...]:
    """Whose proof may claim a payment, in the order proofs are tried: its payer (``payer()``),
    then whoever signed the transaction (EVM: ``tx.from``; Solana: every required signer).
    The signer rule lets an EOA that paid through a contract, or a payer whose share was not
    the largest, claim what its own transaction paid."""
    return tuple(dict.fromkeys(a for a in (payer, *tx_signers) if a))


def payments_from_transfers(
    transfers: Iterable[Transfer], payees: Sequence[str], token: str,
    authorizations: Iterable[AuthorizationUse] = (),
) -> list[Observed]:
    """Transfer facts of many transactions (an eth_getLogs range), with the AuthorizationUsed
    facts of the same range, judged one transaction at a time: the payments, oldest first."""
    grouped: dict[str, list[Transfer]] = {}
    for t in transfers:
        grouped.setdefault(t.tx_hash, []).append(t)
    used: dict[str, list[AuthorizationUse]] = {}
    for a in authorizations:
        used.setdefault(a.tx_hash, []).append(a)
    payments = []
    for tx_hash, group in grouped.items():
        first = min(group, key=lambda t: t.index)
        verdict = judge_transaction(
            TxFacts(first.chain, tx_hash, first.block_number, first.block_hash,
                    transfers=tuple(group), authorizations=tuple(used.get(tx_hash, ()))),
            payees, token)
        if isinstance(verdict, Observed):
            payments.append(verdict)
    payments.sort(key=lambda p: (p.block_number, p.tx_hash))
    return payments


def judge(payment: Observed, view: ChainView, policy: Policy) -> Verdict:
    """Pending until final; then verified, or underpaid when below the minimum: the exact
    minimum for an x402 "exact" payment (X402_EXACT_MIN_PAYMENT_USDC, by default one request's
    price: that scheme pays per request), else X402_MIN_PAYMENT_USDC."""
    confirmations = max(0, view.head - payment.block_number + 1)
    minimum = policy.minimum_for(payment)
    if payment.block_number > view.final:
        status: PaymentStatus = "pending"
    elif payment.amount < minimum:
        status = "underpaid"
    else:
        status = "verified"
    return Verdict(status, confirmations, requests_for(payment.amount, policy, minimum))


def requests_for(amount: int, policy: Policy, minimum: int | None = None) -> int:
    """floor(amount / price) in integer base units; an underpayment (below ``minimum``, by
    default X402_MIN_PAYMENT_USDC's) buys nothing."""
    if amount < (policy.min_payment if minimum is None else minimum):
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
    reason: Reason | None = None


@dataclass(frozen=True)
class ClaimFacts:
    """What a worker knows about a claim when it decides."""

    age: timedelta
    payment_status: str | None  # a PaymentStatus as stored; None: no payment recorded
    lookup_reason: Reason | None = None  # why an on-demand lookup found no payment
    already_claimed: bool = False
    proof_valid: bool | None = None  # None: not checked (no payment, or proofs not required)
    payment_lapsed: bool = False  # its expires_at has passed (cleanup may not have run yet)


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
    if status == "expired" or facts.payment_lapsed:
        return ClaimDecision("reject", "expired")
    if policy.claim_proof == "signature" and not facts.proof_valid:
        return ClaimDecision("reject", "bad_proof")
    return ClaimDecision("issue")
