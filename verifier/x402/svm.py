"""x402 "exact" on Solana (SVM), decided from the request and configuration alone (no I/O).

The official Python SDK's SVM part needs the synchronous solana client and does not import with
solana 0.41, so the checks are written here with solders, in the order and with the reason codes
of the reference TypeScript facilitator (npm @x402/svm 2.27.0, ExactSvmScheme._verify and
verifyStaticPath), so the same bad payload gets the same code:

 1. scheme "exact", network the requirements' (route);
 2. ``extra.feePayer`` present, and one of ours;
 3. the transaction decodes; account 0 (the fee payer) is ours; every other required signature
    verifies over the message;
 4. 3..7 instructions: [0] SetComputeUnitLimit, [1] SetComputeUnitPrice (at most 5,000,000
    microlamports), [2] a Token or Token-2022 TransferChecked whose authority is not our key,
    of the requirement's mint, into ATA(payTo, mint), of exactly the required amount (the
    specification and the TS SDK require equality; the Python SDK accepts more: we do not);
    then only Memo or Lighthouse instructions; the memo when the requirement names one.

Then our policy (`policy`), which the reference does not have: payTo among
X402_SOLANA_PAYMENT_ADDRESS, only the configured mint, amounts within bounds, and the fee payer
in no instruction's accounts at all (it pays the fee and nothing else). Simulation, the payee
ATA's existence and the blockhash's age need the chain: verifier.x402.svm_settler.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from x402.schemas import PaymentPayload, PaymentRequirements
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequirementsV1

from verifier.addresses import canonical_solana_address
from verifier.chains.solana_keys import associated_token_address

from . import wire
from .policy import AMOUNT_OUT_OF_BOUNDS, UNSUPPORTED_ASSET, Refusal

SCHEME_EXACT = "exact"
MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
TESTNET = "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z"
V1_NAMES = {MAINNET: "solana", DEVNET: "solana-devnet", TESTNET: "solana-testnet"}

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
LIGHTHOUSE_PROGRAM = "L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95"
MAX_COMPUTE_UNIT_PRICE = 5_000_000  # microlamports, the reference's default bound
TRANSFER_CHECKED = 12

# Reason codes, verbatim from @x402/svm 2.27.0 (dist/cjs/exact/facilitator/index.js).
ERR_UNSUPPORTED_SCHEME = "invalid_exact_svm_unsupported_scheme"
ERR_NETWORK_MISMATCH = "invalid_exact_svm_network_mismatch"
ERR_MISSING_FEE_PAYER = "invalid_exact_svm_payload_missing_fee_payer"
ERR_FEE_PAYER_NOT_MANAGED = "invalid_exact_svm_fee_payer_not_managed_by_facilitator"
ERR_COULD_NOT_BE_DECODED = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
ERR_SIGNATURE_INVALID = "invalid_exact_svm_payload_signature_invalid"
ERR_FEE_PAYER_MISMATCH = "invalid_exact_svm_fee_payer_mismatch"
ERR_ALT_UNAVAILABLE = "invalid_exact_svm_smart_wallet_alt_resolution_not_available"
ERR_INSTRUCTIONS_LENGTH = "invalid_exact_svm_payload_transaction_instructions_length"
ERR_COMPUTE_LIMIT = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
ERR_COMPUTE_PRICE = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
ERR_COMPUTE_PRICE_TOO_HIGH = ERR_COMPUTE_PRICE + "_too_high"
ERR_NO_TRANSFER = "invalid_exact_svm_payload_no_transfer_instruction"
ERR_FEE_PAYER_TRANSFERRING = "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
ERR_MINT_MISMATCH = "invalid_exact_svm_payload_mint_mismatch"
ERR_RECIPIENT_MISMATCH = "invalid_exact_svm_payload_recipient_mismatch"
ERR_AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch"
ERR_UNKNOWN_OPTIONAL = ("invalid_exact_svm_payload_unknown_fourth_instruction",
                        "invalid_exact_svm_payload_unknown_fifth_instruction",
                        "invalid_exact_svm_payload_unknown_sixth_instruction",
                        "invalid_exact_svm_payload_unknown_seventh_instruction")
ERR_MEMO_COUNT = "invalid_exact_svm_payload_memo_count"
ERR_MEMO_MISMATCH = "invalid_exact_svm_payload_memo_mismatch"
ERR_SIMULATION_FAILED = "invalid_exact_svm_transaction_simulation_failed"
ERR_TRANSACTION_FAILED = "invalid_exact_svm_transaction_failed"
ERR_DUPLICATE_SETTLEMENT = "duplicate_settlement"
ERR_SETTLEMENT_PENDING = "settlement_pending"
# Our own (README, "x402 on Solana"): refused before anything is signed or sent.
ERR_PAYEE_ATA_MISSING = "invalid_exact_svm_payload_payee_token_account_missing"
ERR_BLOCKHASH_EXPIRED = "invalid_exact_svm_payload_blockhash_expired"


@dataclass(frozen=True)
class SvmTerms:
    """What this facilitator settles on Solana."""

    chain: str  # "solana"
    network: str  # CAIP-2, X402_SOLANA_NETWORK
    mint: str
    payees: tuple[str, ...]
    fee_payer: str
    min_amount: int
    max_amount: int
    max_compute_price: int = MAX_COMPUTE_UNIT_PRICE

    @property
    def v1_networks(self) -> tuple[str, ...]:
        name = V1_NAMES.get(self.network)
        return (name,) if name else ()

    def speaks(self, version: int, network: str) -> bool:
        return network == self.network if version == 2 else network in self.v1_networks


@dataclass(frozen=True)
class SvmRequest:
    version: int
    scheme: str
    network: str
    payload_scheme: str
    payload_network: str
    asset: str
    amount: int
    pay_to: str
    extra: dict[str, Any]
    transaction: str | None  # base64, as the client sent it
    resource_url: str | None

    @property
    def resource_path(self) -> str | None:
        if not self.resource_url:
            return None
        try:
            return urlsplit(self.resource_url).path or "/"
        except ValueError:
            return None


@dataclass(frozen=True)
class Transfer:
    """A payment transaction that passed the static checks."""

    tx: VersionedTransaction
    message: bytes
    message_hash: str  # sha256 of the message, hex: the ledger key (the reference's txKey)
    payer: str  # the TransferChecked authority
    source: str
    destination: str
    mint: str
    amount: int
    token_program: str
    blockhash: str


def is_svm(body: bytes) -> bool:
    """Whether a /verify or /settle body names a Solana network (anything else: EVM's wire)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    req, payload = doc.get("paymentRequirements"), doc.get("paymentPayload")
    for source in (req, payload.get("accepted") if isinstance(payload, dict) else None, payload):
        if isinstance(source, dict) and isinstance(source.get("network"), str):
            return source["network"].startswith("solana")
    return False


def parse(body: bytes) -> SvmRequest:
    """A Solana /verify or /settle body, read with the SDK's models; raises wire.Malformed."""
    if len(body) > wire.MAX_BODY:
        raise wire.Malformed(wire.INVALID_PAYLOAD, f"body larger than {wire.MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise wire.Malformed(wire.INVALID_PAYLOAD, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise wire.Malformed(wire.INVALID_PAYLOAD, "body is not a JSON object")
    raw_payload, raw_req = doc.get("paymentPayload"), doc.get("paymentRequirements")
    network = raw_req.get("network", "") if isinstance(raw_req, dict) else ""
    network = network[:64] if isinstance(network, str) else ""
    if not isinstance(raw_payload, dict):
        raise wire.Malformed(wire.INVALID_PAYLOAD, "paymentPayload is missing", network=network)
    if not isinstance(raw_req, dict):
        raise wire.Malformed(wire.INVALID_REQUIREMENTS, "paymentRequirements is missing",
                             network=network)
    version = raw_payload.get("x402Version", doc.get("x402Version"))
    if version not in (1, 2) or isinstance(version, bool):
        raise wire.Malformed(wire.INVALID_VERSION, f"x402Version {version!r} is not 1 or 2",
                             network=network)
    try:
        if version == 2:
            payload: PaymentPayload | PaymentPayloadV1 = PaymentPayload.model_validate(raw_payload)
            req: PaymentRequirements | PaymentRequirementsV1 = \
                PaymentRequirements.model_validate(raw_req)
        else:
            payload = PaymentPayloadV1.model_validate(raw_payload)
            req = PaymentRequirementsV1.model_validate(raw_req)
    except (ValidationError, ValueError, TypeError) as exc:
        raise wire.Malformed(wire.INVALID_PAYLOAD, str(exc).splitlines()[0],
                             network=network) from None
    try:
        asset = canonical_solana_address(req.asset)
        pay_to = canonical_solana_address(req.pay_to)
        amount_text = str(req.get_amount())
        if not amount_text.isdigit() or int(amount_text) >= 2**64:
            raise ValueError(f"amount {amount_text!r:.40} is not a u64")
    except ValueError as exc:
        raise wire.Malformed(wire.INVALID_REQUIREMENTS, str(exc), network=network) from None
    if isinstance(payload, PaymentPayload):
        payload_scheme, payload_network = payload.accepted.scheme, str(payload.accepted.network)
        resource = payload.resource.url if payload.resource else None
    else:
        payload_scheme, payload_network = payload.scheme, str(payload.network)
        resource = req.resource if isinstance(req, PaymentRequirementsV1) else None
    tx = payload.payload.get("transaction") if isinstance(payload.payload, dict) else None
    return SvmRequest(version=version, scheme=req.scheme, network=str(req.network),
                      payload_scheme=payload_scheme, payload_network=payload_network,
                      asset=asset, amount=int(amount_text), pay_to=pay_to,
                      extra=dict(req.extra or {}), transaction=tx if isinstance(tx, str) else None,
                      resource_url=resource)


def route(req: SvmRequest, terms: SvmTerms | None) -> Refusal | None:
    if req.payload_scheme != SCHEME_EXACT or req.scheme != SCHEME_EXACT:
        return Refusal(ERR_UNSUPPORTED_SCHEME, f"scheme {req.scheme!r} is not offered")
    if req.payload_network != req.network:
        return Refusal(ERR_NETWORK_MISMATCH, "the payload's network is not the requirements'")
    if terms is None or not terms.speaks(req.version, req.network):
        return Refusal(ERR_NETWORK_MISMATCH, f"network {req.network!r} is not settled here")
    return None


def decode(transaction: str | None) -> VersionedTransaction | None:
    if not transaction:
        return None
    try:
        raw = base64.b64decode(transaction, validate=True)
        return VersionedTransaction.from_bytes(raw)
    except (binascii.Error, ValueError, TypeError):
        return None


def message_bytes(tx: VersionedTransaction) -> bytes:
    return bytes(to_bytes_versioned(tx.message))


def message_hash(tx: VersionedTransaction) -> str:
    return hashlib.sha256(message_bytes(tx)).hexdigest()


def check(req: SvmRequest, terms: SvmTerms) -> Transfer | Refusal:
    """The reference's static verification, in its order; a Transfer when it passes."""
    fee_payer = req.extra.get("feePayer")
    if not isinstance(fee_payer, str) or not fee_payer:
        return Refusal(ERR_MISSING_FEE_PAYER, "extra.feePayer is missing")
    if fee_payer != terms.fee_payer:
        return Refusal(ERR_FEE_PAYER_NOT_MANAGED, "extra.feePayer is not this facilitator's")
    tx = decode(req.transaction)
    if tx is None:
        return Refusal(ERR_COULD_NOT_BE_DECODED, "payload.transaction is not a transaction")
    msg = tx.message
    keys = [str(k) for k in msg.account_keys]
    body = message_bytes(tx)
    if not keys or keys[0] != fee_payer:
        return Refusal(ERR_FEE_PAYER_MISMATCH, "account 0 is not the fee payer")
    signers = msg.header.num_required_signatures
    if len(tx.signatures) != signers or signers > len(keys):
        return Refusal(ERR_SIGNATURE_INVALID, "signature count is not the header's")
    for i in range(1, signers):
        if not tx.signatures[i].verify(msg.account_keys[i], body):
            return Refusal(ERR_SIGNATURE_INVALID, f"signature {i} does not verify")
    if isinstance(msg, MessageV0) and msg.address_table_lookups:
        return Refusal(ERR_ALT_UNAVAILABLE, "address lookup tables are not resolved here")
    ixs = list(msg.instructions)
    if not 3 <= len(ixs) <= 7:
        return Refusal(ERR_INSTRUCTIONS_LENGTH, f"{len(ixs)} instructions, not 3..7")

    def program(i: int) -> str:
        index = ixs[i].program_id_index
        return keys[index] if index < len(keys) else ""

    limit, price = bytes(ixs[0].data), bytes(ixs[1].data)
    if program(0) != COMPUTE_BUDGET_PROGRAM or len(limit) != 5 or limit[0] != 2:
        return Refusal(ERR_COMPUTE_LIMIT, "instruction 0 is not SetComputeUnitLimit")
    if program(1) != COMPUTE_BUDGET_PROGRAM or len(price) != 9 or price[0] != 3:
        return Refusal(ERR_COMPUTE_PRICE, "instruction 1 is not SetComputeUnitPrice")
    (micro_lamports,) = struct.unpack_from("<Q", price, 1)
    if micro_lamports > terms.max_compute_price:
        return Refusal(ERR_COMPUTE_PRICE_TOO_HIGH,
                       f"compute unit price {micro_lamports} > {terms.max_compute_price}")
    payer = _token_payer(keys, ixs)
    if payer is None:
        return Refusal(ERR_NO_TRANSFER, "no TransferChecked instruction")
    token_program = program(2)
    data = bytes(ixs[2].data)
    accounts = list(bytes(ixs[2].accounts))
    if token_program not in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) or len(data) < 10 \
            or data[0] != TRANSFER_CHECKED or len(accounts) < 4 \
            or max(accounts[:4]) >= len(keys):
        return Refusal(ERR_NO_TRANSFER, "instruction 2 is not a token TransferChecked")
    source, mint, destination, authority = (keys[a] for a in accounts[:4])
    if authority == terms.fee_payer:
        return Refusal(ERR_FEE_PAYER_TRANSFERRING, "the transfer authority is the fee payer")
    if mint != req.asset:
        return Refusal(ERR_MINT_MISMATCH, "the transfer's mint is not the requirement's asset")
    if destination != associated_token_address(req.pay_to, req.asset, token_program):
        return Refusal(ERR_RECIPIENT_MISMATCH, "the destination is not ATA(payTo, mint)")
    (amount,) = struct.unpack_from("<Q", data, 1)
    if amount != req.amount:
        return Refusal(ERR_AMOUNT_MISMATCH, f"amount {amount} is not the required {req.amount}")
    optional = list(range(3, len(ixs)))
    for n, i in enumerate(optional):
        if program(i) not in (MEMO_PROGRAM, LIGHTHOUSE_PROGRAM):
            return Refusal(ERR_UNKNOWN_OPTIONAL[n], f"instruction {i} is neither Memo nor "
                           "Lighthouse")
    memo = req.extra.get("memo")
    if memo:
        memos = [bytes(ixs[i].data) for i in optional if program(i) == MEMO_PROGRAM]
        if len(memos) != 1:
            return Refusal(ERR_MEMO_COUNT, "the requirement's memo needs exactly one Memo")
        if memos[0].decode("utf-8", "replace") != memo:
            return Refusal(ERR_MEMO_MISMATCH, "the memo is not the requirement's")
    return Transfer(tx=tx, message=body, message_hash=hashlib.sha256(body).hexdigest(),
                    payer=payer, source=source, destination=destination, mint=mint,
                    amount=amount, token_program=token_program,
                    blockhash=str(msg.recent_blockhash))


def _token_payer(keys: list[str], ixs: list[Any]) -> str | None:
    """The reference's getTokenPayerFromTransaction: the authority of the first token
    TransferChecked, wherever it is."""
    for ix in ixs:
        index = ix.program_id_index
        accounts = list(bytes(ix.accounts))
        data = bytes(ix.data)
        if index < len(keys) and keys[index] in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM) \
                and data[:1] == bytes([TRANSFER_CHECKED]) and len(accounts) >= 4 \
                and accounts[3] < len(keys):
            return keys[accounts[3]]
    return None


def policy(req: SvmRequest, transfer: Transfer, terms: SvmTerms) -> Refusal | None:
    """Ours, after the reference's checks: whose money the fee payer moves, and for whom."""
    if req.pay_to not in terms.payees:
        return Refusal(ERR_RECIPIENT_MISMATCH, "payTo is not a payment address of this service")
    if req.asset != terms.mint:
        return Refusal(UNSUPPORTED_ASSET, "only the configured USDC mint is settled")
    if not terms.min_amount <= transfer.amount <= terms.max_amount:
        return Refusal(AMOUNT_OUT_OF_BOUNDS,
                       f"amount must be within {terms.min_amount}..{terms.max_amount} base units")
    msg = transfer.tx.message
    for ix in msg.instructions:
        if 0 in bytes(ix.accounts):
            return Refusal(ERR_FEE_PAYER_TRANSFERRING,
                           "the fee payer appears in an instruction; it may only pay the fee")
    return None


def simulation_refusal(value: Any) -> Refusal | None:
    """A simulateTransaction answer's ``value``: None when it ran clean."""
    if not isinstance(value, dict):
        return Refusal(ERR_SIMULATION_FAILED, "simulation gave no answer")
    err = value.get("err")
    if err is None:
        return None
    if err == "BlockhashNotFound":
        return Refusal(ERR_BLOCKHASH_EXPIRED, "the transaction's blockhash has expired; "
                       "build it again with a fresh blockhash")
    logs = value.get("logs") or []
    return Refusal(ERR_SIMULATION_FAILED, f"{json.dumps(err)[:200]} {' | '.join(logs[-2:])[:300]}")


def co_sign(transfer: Transfer, key: Keypair) -> tuple[str, str]:
    """The transaction with the fee payer's signature in slot 0: (base64, signature)."""
    signature = key.sign_message(transfer.message)
    signatures: list[Signature] = [signature, *list(transfer.tx.signatures)[1:]]
    signed = VersionedTransaction.populate(transfer.tx.message, signatures)
    return base64.b64encode(bytes(signed)).decode(), str(signature)


def pubkey(text: str) -> Pubkey:
    return Pubkey.from_string(text)
