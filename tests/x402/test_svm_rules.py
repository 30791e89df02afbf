"""The Solana "exact" checks (verifier.x402.svm), pure, from a table: each bad transaction gets
the reference's reason code (@x402/svm 2.27.0), first failing check first; then our policy."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from verifier.devnet import svm_payments as sp
from verifier.devnet.solana_tokens import USDC_MINT, ata
from verifier.x402 import svm, wire
from verifier.x402.policy import Refusal

FEE_PAYER = Keypair()
PAYER = Keypair()
PAY_TO = Keypair().pubkey()
OTHER_MINT = Keypair().pubkey()
AMOUNT = 10_000
BLOCKHASH = Hash.new_unique()
TERMS = svm.SvmTerms(chain="solana", network=sp.NETWORK, mint=str(USDC_MINT),
                     payees=(str(PAY_TO),), fee_payer=str(FEE_PAYER.pubkey()),
                     min_amount=1_000, max_amount=1_000_000_000)
LIGHTHOUSE = Pubkey.from_string(svm.LIGHTHOUSE_PROGRAM)
UNKNOWN = Keypair().pubkey()


def build(ixs: list[Instruction] | None = None, *, signers: list[Keypair] | None = None,
          fee_payer: Pubkey | None = None, **reqs: Any) -> svm.SvmRequest:
    p = PAYER.pubkey()
    tx = sp.transaction(fee_payer or FEE_PAYER.pubkey(), signers or [PAYER],
                        ixs if ixs is not None else sp.instructions(p, PAY_TO, AMOUNT),
                        BLOCKHASH)
    requirements = sp.requirements(reqs.pop("pay_to", PAY_TO), reqs.pop("amount", AMOUNT),
                                   FEE_PAYER.pubkey(), **reqs)
    return svm.parse(sp.body(tx, requirements))


def std(**kw: Any) -> list[Instruction]:
    return sp.instructions(PAYER.pubkey(), PAY_TO, kw.pop("amount", AMOUNT), **kw)


def tampered_signature() -> svm.SvmRequest:
    req = build()
    tx = svm.decode(req.transaction)
    assert tx is not None
    sigs = list(tx.signatures)
    sigs[1] = Signature.new_unique()
    forged = type(tx).populate(tx.message, sigs)
    return svm.parse(sp.body(forged, sp.requirements(PAY_TO, AMOUNT, FEE_PAYER.pubkey())))


def with_extra(**extra: Any) -> svm.SvmRequest:
    return build(**extra)


def garbage() -> svm.SvmRequest:
    return svm.parse(sp.body(base64.b64encode(b"not a transaction").decode(),
                             sp.requirements(PAY_TO, AMOUNT, FEE_PAYER.pubkey())))


def no_fee_payer() -> svm.SvmRequest:
    reqs = sp.requirements(PAY_TO, AMOUNT, FEE_PAYER.pubkey())
    del reqs["extra"]["feePayer"]
    tx = sp.transaction(FEE_PAYER.pubkey(), [PAYER], std(), BLOCKHASH)
    return svm.parse(sp.body(tx, reqs))


def foreign_fee_payer() -> svm.SvmRequest:
    other = Keypair().pubkey()
    reqs = sp.requirements(PAY_TO, AMOUNT, other)
    tx = sp.transaction(other, [PAYER], std(), BLOCKHASH)
    return svm.parse(sp.body(tx, reqs))


P = PAYER.pubkey()
CASES: list[tuple[str, Callable[[], svm.SvmRequest], str | None]] = [
    ("valid", lambda: build(), None),
    ("valid with memo and lighthouse", lambda: build(
        [*std(), sp.memo("order 7"), Instruction(LIGHTHOUSE, b"\x00", [])], memo="order 7"), None),
    ("missing feePayer", no_fee_payer, svm.ERR_MISSING_FEE_PAYER),
    ("feePayer not ours", foreign_fee_payer, svm.ERR_FEE_PAYER_NOT_MANAGED),
    ("undecodable", garbage, svm.ERR_COULD_NOT_BE_DECODED),
    ("account 0 is not the fee payer", lambda: build(fee_payer=P),
     svm.ERR_FEE_PAYER_MISMATCH),
    ("payer signature forged", tampered_signature, svm.ERR_SIGNATURE_INVALID),
    ("two instructions", lambda: build(std()[:2]), svm.ERR_INSTRUCTIONS_LENGTH),
    ("eight instructions", lambda: build([*std(), *[sp.memo(str(i)) for i in range(5)]]),
     svm.ERR_INSTRUCTIONS_LENGTH),
    ("no compute limit first", lambda: build([std()[1], std()[0], std()[2]]),
     svm.ERR_COMPUTE_LIMIT),
    ("no compute price second", lambda: build([std()[0], set_compute_unit_limit(1), std()[2]]),
     svm.ERR_COMPUTE_PRICE),
    ("compute price too high", lambda: build(std(price=5_000_001)),
     svm.ERR_COMPUTE_PRICE_TOO_HIGH),
    ("compute price at the bound", lambda: build(std(price=5_000_000)), None),
    ("no transfer at all", lambda: build([*std()[:2], sp.memo("x")]), svm.ERR_NO_TRANSFER),
    ("plain Transfer, not TransferChecked", lambda: build([*std()[:2], Instruction(
        std()[2].program_id, b"\x03" + AMOUNT.to_bytes(8, "little"),
        [AccountMeta(ata(P), False, True), AccountMeta(ata(PAY_TO), False, True),
         AccountMeta(P, True, False)])]), svm.ERR_NO_TRANSFER),
    ("fee payer as authority", lambda: build([*std()[:2], sp.transfer_checked(
        ata(FEE_PAYER.pubkey()), USDC_MINT, ata(PAY_TO), FEE_PAYER.pubkey(), AMOUNT)]),
     svm.ERR_FEE_PAYER_TRANSFERRING),
    ("wrong mint", lambda: build(std(mint=OTHER_MINT)), svm.ERR_MINT_MISMATCH),
    ("destination not ATA(payTo)", lambda: build(std(destination=ata(Keypair().pubkey()))),
     svm.ERR_RECIPIENT_MISMATCH),
    ("amount below", lambda: build(std(amount=AMOUNT - 1)), svm.ERR_AMOUNT_MISMATCH),
    ("amount above", lambda: build(std(amount=AMOUNT + 1)), svm.ERR_AMOUNT_MISMATCH),
    ("unknown fourth instruction", lambda: build([*std(), Instruction(UNKNOWN, b"", [])]),
     svm.ERR_UNKNOWN_OPTIONAL[0]),
    ("unknown sixth instruction", lambda: build(
        [*std(), sp.memo("a"), sp.memo("b"), Instruction(UNKNOWN, b"", [])]),
     svm.ERR_UNKNOWN_OPTIONAL[2]),
    ("memo required, none", lambda: build(memo="order 7"), svm.ERR_MEMO_COUNT),
    ("memo mismatch", lambda: build([*std(), sp.memo("order 8")], memo="order 7"),
     svm.ERR_MEMO_MISMATCH),
    # Earlier checks win: a too-high price is reported before a wrong mint.
    ("order: price before mint", lambda: build(std(price=9_000_000, mint=OTHER_MINT)),
     svm.ERR_COMPUTE_PRICE_TOO_HIGH),
    ("order: mint before amount", lambda: build(std(mint=OTHER_MINT, amount=1)),
     svm.ERR_MINT_MISMATCH),
]


@pytest.mark.parametrize(("name", "make", "reason"), CASES, ids=[c[0] for c in CASES])
def test_reference_checks(name: str, make: Callable[[], svm.SvmRequest],
                          reason: str | None) -> None:
    found = svm.check(make(), TERMS)
    if reason is None:
        assert isinstance(found, svm.Transfer), found
        assert found.payer == str(P) and found.amount == AMOUNT
        assert found.destination == str(ata(PAY_TO))
    else:
        assert isinstance(found, Refusal) and found.reason == reason, found


def test_policy() -> None:
    def judged(req: svm.SvmRequest, terms: svm.SvmTerms = TERMS) -> str | None:
        found = svm.check(req, terms)
        assert isinstance(found, svm.Transfer), found
        refusal = svm.policy(req, found, terms)
        return refusal.reason if refusal else None

    assert judged(build()) is None
    stranger = Keypair().pubkey()
    assert judged(build(std(destination=ata(stranger)), pay_to=stranger)) == \
        svm.ERR_RECIPIENT_MISMATCH
    assert judged(build(std(mint=OTHER_MINT), mint=OTHER_MINT)) == "unsupported_asset"
    assert judged(build(std(amount=999), amount=999)) == "amount_out_of_bounds"
    # The fee payer anywhere in an instruction (here: a memo it "signs") is refused.
    assert judged(build([*std(), sp.memo("x", FEE_PAYER.pubkey())])) == \
        svm.ERR_FEE_PAYER_TRANSFERRING


def test_route_and_parse() -> None:
    req = build()
    assert svm.route(req, TERMS) is None
    other = svm.SvmTerms(**{**TERMS.__dict__, "network": svm.MAINNET})
    assert svm.route(req, other).reason == svm.ERR_NETWORK_MISMATCH  # type: ignore[union-attr]
    assert svm.route(req, None).reason == svm.ERR_NETWORK_MISMATCH  # type: ignore[union-attr]
    assert other.v1_networks == ("solana",)
    doc = json.loads(sp.body(sp.transaction(FEE_PAYER.pubkey(), [PAYER], std(), BLOCKHASH),
                             sp.requirements(PAY_TO, AMOUNT, FEE_PAYER.pubkey())))
    doc["paymentRequirements"]["scheme"] = "upto"
    assert svm.route(svm.parse(json.dumps(doc).encode()), TERMS).reason == \
        svm.ERR_UNSUPPORTED_SCHEME  # type: ignore[union-attr]
    assert svm.is_svm(json.dumps(doc).encode())
    assert not svm.is_svm(b'{"paymentRequirements": {"network": "eip155:8453"}}')
    with pytest.raises(wire.Malformed):
        svm.parse(b"[]")
    doc["paymentRequirements"]["payTo"] = "0x2222222222222222222222222222222222222222"
    with pytest.raises(wire.Malformed) as bad:
        svm.parse(json.dumps(doc).encode())
    assert bad.value.reason == wire.INVALID_REQUIREMENTS


def test_message_hash_and_co_sign() -> None:
    req = build()
    found = svm.check(req, TERMS)
    assert isinstance(found, svm.Transfer)
    tx = svm.decode(req.transaction)
    assert tx is not None and found.message_hash == svm.message_hash(tx)
    signed, signature = svm.co_sign(found, FEE_PAYER)
    full = svm.decode(signed)
    assert full is not None and all(full.verify_with_results())
    assert str(full.signatures[0]) == signature
    # Deterministic: the same transaction co-signed twice is the same bytes, same signature.
    assert svm.co_sign(found, FEE_PAYER) == (signed, signature)


def test_simulation_refusal() -> None:
    assert svm.simulation_refusal({"err": None, "logs": []}) is None
    assert svm.simulation_refusal({"err": "BlockhashNotFound"}).reason == \
        svm.ERR_BLOCKHASH_EXPIRED  # type: ignore[union-attr]
    failed = svm.simulation_refusal({"err": {"InstructionError": [2, {"Custom": 1}]},
                                     "logs": ["Program log: Error: insufficient funds"]})
    assert failed is not None and failed.reason == svm.ERR_SIMULATION_FAILED
    assert "insufficient funds" in failed.message
    assert svm.simulation_refusal(None).reason == svm.ERR_SIMULATION_FAILED  # type: ignore[union-attr]


def test_v1_body_with_a_network_name() -> None:
    """v1: `network: "solana"`, `maxAmountRequired`, the payload under `payload.transaction`."""
    mainnet = svm.SvmTerms(**{**TERMS.__dict__, "network": svm.MAINNET})
    tx = sp.transaction(FEE_PAYER.pubkey(), [PAYER], std(), BLOCKHASH)
    reqs = {"scheme": "exact", "network": "solana", "maxAmountRequired": str(AMOUNT),
            "resource": "http://api.test/v1/quote", "description": "", "mimeType": "",
            "payTo": str(PAY_TO), "maxTimeoutSeconds": 60, "asset": str(USDC_MINT),
            "extra": {"feePayer": str(FEE_PAYER.pubkey())}}
    body = json.dumps({"x402Version": 1, "paymentPayload": {
        "x402Version": 1, "scheme": "exact", "network": "solana",
        "payload": {"transaction": sp.encoded(tx)}}, "paymentRequirements": reqs}).encode()
    assert svm.is_svm(body)
    req = svm.parse(body)
    assert req.version == 1 and req.amount == AMOUNT and req.resource_path == "/v1/quote"
    assert svm.route(req, mainnet) is None
    assert svm.route(req, TERMS) is not None  # a local network id has no v1 name
    assert isinstance(svm.check(req, mainnet), svm.Transfer)
