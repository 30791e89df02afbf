"""x402 "exact" SVM payloads for tests and benchmarks, built as @x402/svm's client builds them:
a v0 message with the facilitator's fee payer as account 0, SetComputeUnitLimit,
SetComputeUnitPrice, a Token TransferChecked into ATA(payTo, mint), optional Memo; signed by
the payer only."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from typing import Any

from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from verifier.devnet.solana_tokens import TOKEN_PROGRAM, USDC_MINT, ata
from verifier.x402 import svm

NETWORK = "solana:localnet0000000000000000000000"
MEMO = Pubkey.from_string(svm.MEMO_PROGRAM)


def transfer_checked(source: Pubkey, mint: Pubkey, destination: Pubkey, authority: Pubkey,
                     amount: int, decimals: int = 6,
                     program: Pubkey = TOKEN_PROGRAM) -> Instruction:
    return Instruction(program, bytes([12]) + struct.pack("<QB", amount, decimals), [
        AccountMeta(source, False, True), AccountMeta(mint, False, False),
        AccountMeta(destination, False, True), AccountMeta(authority, True, False)])


def memo(text: str, signer: Pubkey | None = None) -> Instruction:
    metas = [AccountMeta(signer, True, False)] if signer else []
    return Instruction(MEMO, text.encode(), metas)


def instructions(payer: Pubkey, pay_to: Pubkey, amount: int, *, mint: Pubkey = USDC_MINT,
                 destination: Pubkey | None = None, price: int = 1,
                 limit: int = 20_000) -> list[Instruction]:
    return [set_compute_unit_limit(limit), set_compute_unit_price(price),
            transfer_checked(ata(payer, mint), mint, destination or ata(pay_to, mint), payer,
                             amount)]


def transaction(fee_payer: Pubkey, signers: Sequence[Keypair], ixs: Sequence[Instruction],
                blockhash: Hash) -> VersionedTransaction:
    """Partially signed: the fee payer's slot holds the default (zero) signature."""
    msg = MessageV0.try_compile(fee_payer, list(ixs), [], blockhash)
    body = bytes(to_bytes_versioned(msg))
    keys = list(msg.account_keys)
    by_key = {s.pubkey(): s for s in signers}
    sigs = []
    for key in keys[:msg.header.num_required_signatures]:
        signer = by_key.get(key)
        sigs.append(signer.sign_message(body) if signer else Signature.default())
    return VersionedTransaction.populate(msg, sigs)


def encoded(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


def requirements(pay_to: Pubkey, amount: int, fee_payer: Pubkey, *, network: str = NETWORK,
                 mint: Pubkey = USDC_MINT, **extra: Any) -> dict[str, Any]:
    return {"scheme": "exact", "network": network, "asset": str(mint), "amount": str(amount),
            "payTo": str(pay_to), "maxTimeoutSeconds": 60,
            "extra": {"feePayer": str(fee_payer), **extra}}


def body(tx: VersionedTransaction | str, reqs: dict[str, Any], *,
         resource: str = "http://api.test/v1/quote") -> bytes:
    transaction_b64 = tx if isinstance(tx, str) else encoded(tx)
    return json.dumps({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "resource": {"url": resource},
                           "accepted": reqs, "payload": {"transaction": transaction_b64}},
        "paymentRequirements": reqs,
    }).encode()

