"""The verifier's words, typed once: payment and claim statuses and every reason code.

The SQL CHECK lists, the metrics' label values and the README's "Reason codes" table are checked
against these (tests), so a new status or reason is added here first.
"""

from __future__ import annotations

from typing import Literal, get_args

PaymentStatus = Literal["pending", "verified", "used", "expired", "underpaid", "reorged"]
# revoked: issued, then its payment was reorged (reason payment_reorged; the token is gone).
ClaimStatus = Literal["waiting", "issued", "rejected", "expired", "revoked"]

# Why a transaction pays nothing, in the order rules.judge_transaction tries them.
NotPaid = Literal["not_found", "failed_tx", "wrong_token", "wrong_recipient", "no_transfer"]
Reason = Literal[
    "unsupported_chain", "malformed_tx_hash", "malformed_token_hash", "malformed_proof",
    "malformed_input", "token_hash_in_use",
    "not_found", "failed_tx", "wrong_token", "wrong_recipient", "no_transfer",
    "underpaid", "unconfirmed", "reorged", "bad_proof", "already_claimed", "expired",
    "unknown_token", "malformed_token", "exhausted", "payment_reorged", "payment_not_verified",
    "rpc_unavailable",
]

# Why a Solana transaction listed on a watched account was put aside (verifier.solana_quarantine):
# the node refused it with a final error (e.g. -32015), kept answering null, answered in a shape
# the decoder cannot read, or answered with another signature's transaction.
QuarantineReason = Literal["final_error", "not_served", "unreadable", "wrong_transaction"]

PAYMENT_STATUSES: tuple[PaymentStatus, ...] = get_args(PaymentStatus)
CLAIM_STATUSES: tuple[ClaimStatus, ...] = get_args(ClaimStatus)
REASONS: tuple[Reason, ...] = get_args(Reason)
NOT_PAID: tuple[NotPaid, ...] = get_args(NotPaid)
QUARANTINE_REASONS: tuple[QuarantineReason, ...] = get_args(QuarantineReason)
