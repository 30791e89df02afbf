"""The Solana decoders and the rules they feed, on real mainnet/devnet answers and on answers from
the LiteSVM node in both encodings (json and jsonParsed)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from verifier import rules
from verifier.chains.solana_decode import (
    UnreadableTransaction,
    newest_first_until,
    transaction_facts,
)
from verifier.chains.solana_keys import decode_proof, verify_ed25519
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import TokenKit, ata
from verifier.models import Observed

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
DEVNET_USDC = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
# A copy of shared/data/solana/real_usdc_transactions.json (sources named inside).
REAL = Path(__file__).parent / "data" / "real_usdc_transactions.json"


@dataclass(frozen=True)
class Outcome:
    payment: Observed | None
    reason: str | None


def judge_transaction(tx: dict[str, Any] | None, *, signature: str, payees: list[str],
                      mint: str, token_accounts: tuple[str, ...] | list[str] = ()) -> Outcome:
    """The adapter's path: decode the answer into facts, let the rules judge them."""
    facts = transaction_facts(tx, signature)
    if facts is None:
        return Outcome(None, "not_found")
    verdict = rules.judge_transaction(facts, (*payees, *token_accounts), mint)
    if isinstance(verdict, Observed):
        return Outcome(verdict, None)
    return Outcome(None, verdict)


def real_transactions() -> dict[str, dict[str, Any]]:
    data = json.loads(REAL.read_text())
    return {t["signature"]: t for t in data["transactions"]}


def as_rpc_json(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored form as getTransaction (encoding json) returns it."""
    message = dict(stored["message"])
    message["accountKeys"] = message.pop("staticAccountKeys")
    return {"slot": stored["slot"], "blockTime": stored["blockTime"], "version": 0,
            "meta": stored["meta"],
            "transaction": {"signatures": [stored["signature"]], "message": message}}


def as_rpc_json_parsed(stored: dict[str, Any]) -> dict[str, Any]:
    """The same as jsonParsed: key objects (signer/writable from the header), no
    meta.loadedAddresses (loaded keys would be listed with source lookupTable)."""
    header = stored["message"]["header"]
    keys = stored["message"]["staticAccountKeys"]
    signed = header["numRequiredSignatures"]
    objects = []
    for i, key in enumerate(keys):
        writable = (i < signed - header["numReadonlySignedAccounts"] if i < signed
                    else i < len(keys) - header["numReadonlyUnsignedAccounts"])
        objects.append({"pubkey": key, "signer": i < signed, "writable": writable,
                        "source": "transaction"})
    meta = {k: v for k, v in stored["meta"].items() if k != "loadedAddresses"}
    return {"slot": stored["slot"], "blockTime": stored["blockTime"], "version": 0,
            "meta": meta, "transaction": {"signatures": [stored["signature"]], "message": {
                "accountKeys": objects, "recentBlockhash": stored["message"]["recentBlockhash"],
                "instructions": []}}}


SHAPES = [lambda t: t, as_rpc_json, as_rpc_json_parsed]


@pytest.mark.parametrize("shape", SHAPES, ids=["stored", "json", "jsonParsed"])
@pytest.mark.parametrize(("signature", "payee", "mint", "payer", "amount"), [
    ("LPaVYsnhx2q9yTeU7bf5vLESBdm6BYatMSdZqt6CYy8wcX5YFm6rNKZLXJqRA7jyq2w3nbEqfB4qgCFSGS1L6GT",
     "9fE6zKgca6K2EEa3yjbcq7zGMusUNqSQeWQNL2YDZ2Yi", USDC,
     "FQT9SSwEZ6UUQxsmTzgt5JzjrS4M5zm13M1QiYF8TEo6", 1_000_000),
    ("3Zj5XkvE1Uec1frjue6SK2ND2cqhKPvPkZ1ZFPwo2v9iL4NX4b4WWG1wPNEQdnJJU8sVx7MMHjSH1HxoR21vEjoV",
     "BXT1K8kzYXWMi6ihg7m9UqiHW4iJbJ69zumELHE9oBLe", DEVNET_USDC,
     "BLw3RweJmfbTapJRgnPRvd962YDjFYAnVGd1p5hmZ5tP", 10_000),
])
def test_real_transactions(shape: Any, signature: str, payee: str, mint: str, payer: str,
                           amount: int) -> None:
    stored = real_transactions()[signature]
    outcome = judge_transaction(shape(stored), signature=signature, payees=[payee], mint=mint)
    assert outcome.reason is None and outcome.payment is not None
    p = outcome.payment
    assert (p.amount, p.from_address, p.to_address, p.block_number, p.tx_hash) == (
        amount, payer, payee, stored["slot"], signature)


def test_real_transactions_pay_nothing_in_another_mint_or_to_another_wallet() -> None:
    txs = real_transactions()
    devnet = txs["3Zj5XkvE1Uec1frjue6SK2ND2cqhKPvPkZ1ZFPwo2v9iL4NX4b4WWG1wPNEQdnJJU8sVx7MMHjSH1HxoR21vEjoV"]
    mainnet = txs["LPaVYsnhx2q9yTeU7bf5vLESBdm6BYatMSdZqt6CYy8wcX5YFm6rNKZLXJqRA7jyq2w3nbEqfB4qgCFSGS1L6GT"]
    assert judge_transaction(devnet, signature="x", mint=USDC,
                             payees=["BXT1K8kzYXWMi6ihg7m9UqiHW4iJbJ69zumELHE9oBLe"]
                             ).reason == "wrong_token"
    # The payer's own account fell: paying "to" the payer is no payment.
    assert judge_transaction(mainnet, signature="x", mint=USDC,
                             payees=["FQT9SSwEZ6UUQxsmTzgt5JzjrS4M5zm13M1QiYF8TEo6"]
                             ).reason == "wrong_recipient"
    # base58 is compared exactly: the same letters in another case are another key.
    assert judge_transaction(mainnet, signature="x", mint=USDC,
                             payees=["9FE6ZKGCA6K2EEA3YJBCQ7ZGMUSUNQSQEWQNL2YDZ2YI"]
                             ).reason == "wrong_recipient"


def test_amount_comes_from_the_integer_string_never_the_float() -> None:
    stored = copy.deepcopy(real_transactions()[
        "LPaVYsnhx2q9yTeU7bf5vLESBdm6BYatMSdZqt6CYy8wcX5YFm6rNKZLXJqRA7jyq2w3nbEqfB4qgCFSGS1L6GT"])
    for entry in stored["meta"]["postTokenBalances"]:
        entry["uiTokenAmount"]["uiAmount"] = 123.456  # lossy display value, here a lie
        entry["uiTokenAmount"]["uiAmountString"] = "123.456"
    outcome = judge_transaction(stored, signature="x", mint=USDC,
                                payees=["9fE6zKgca6K2EEa3yjbcq7zGMusUNqSQeWQNL2YDZ2Yi"])
    assert outcome.payment is not None and outcome.payment.amount == 1_000_000


# --- answers from the LiteSVM node, in both encodings ------------------------------------


@dataclass
class Ledger:
    node: SolanaServer
    kit: TokenKit
    payer: Keypair
    payee: Keypair
    sigs: dict[str, str]


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    with SolanaServer() as node:
        kit = TokenKit(node)
        kit.create_usdc()
        fake = kit.create_mint(decimals=6)
        payer, payee = kit.wallet(), kit.wallet()
        kit.fund(payer.pubkey(), 10**10)
        kit.fund(payer.pubkey(), 10**10, mint=fake)
        sigs = {
            "funding": kit.fund(payee.pubkey(), 5_000),
            "created": kit.create_ata_and_transfer(payer, payee.pubkey(), 1_000_000),
            "transfer": kit.transfer(payer, payee.pubkey(), 11),
            "checked": kit.transfer_checked(payer, payee.pubkey(), 12),
            "double": kit.transfers_in_one_tx(payer, payee.pubkey(), [13, 14]),
            "reference": kit.transfer(payer, payee.pubkey(), 15, references=[Keypair().pubkey()]),
            "failed": kit.failed_transfer(payer, payee.pubkey(), 10**15),
            "self": kit.self_transfer(payee, 5_000),
            "nested": kit.send_to_token_account(payer, payee.pubkey(), 16),
            "cpi": kit.recover_nested(payee),
            "v0": kit.transfer_v0(payer, payee.pubkey(), 17,
                                  kit.lookup_table([ata(payee.pubkey())])),
        }
        # Read-only loaded keys come after the writable ones: a token account (with a balance)
        # used as a reference key, loaded read-only, next to the payee's account, loaded writable.
        bystander = kit.wallet()
        kit.fund(bystander.pubkey(), 99)
        table = kit.lookup_table([ata(bystander.pubkey()), ata(payee.pubkey())])
        sigs["v0_readonly"] = kit.transfer_v0(payer, payee.pubkey(), 20, table,
                                              references=[ata(bystander.pubkey())])
        second = kit.create_token_account(payee.pubkey())
        sigs["own_accounts"] = kit.move(payee, ata(payee.pubkey()), second, 21)
        sigs["delegated"] = kit.delegated_transfer(payer, kit.wallet(), payee.pubkey(), 19)
        kit.create_ata(payee.pubkey(), fake)
        sigs["fake"] = kit.transfer(payer, payee.pubkey(), 18, mint=fake)
        yield Ledger(node, kit, payer, payee, sigs)


EXPECTED = {  # scenario: (amount, payer) or the reason nothing was paid
    "funding": (5_000, "authority"),
    "created": (1_000_000, "payer"),
    "transfer": (11, "payer"),
    "checked": (12, "payer"),
    "double": (27, "payer"),
    "reference": (15, "payer"),
    "failed": "failed_tx",
    "self": "wrong_recipient",
    "nested": "wrong_recipient",
    "cpi": (16, "payee_ata"),
    "v0": (17, "payer"),
    "fake": "wrong_token",
    "delegated": (19, "payer"),  # the owner whose balance fell, not the delegate who signed
    "v0_readonly": (20, "payer"),
    "own_accounts": "wrong_recipient",  # between two accounts of the payee: net 0
}


def rendered(ledger: Ledger, name: str, encoding: str) -> dict[str, Any]:
    return copy.deepcopy(ledger.node.landed(ledger.sigs[name]).render(encoding, True))


def judge(ledger: Ledger, tx: dict[str, Any]):
    return judge_transaction(tx, signature=tx["transaction"]["signatures"][0],
                             payees=[str(ledger.payee.pubkey())], mint=USDC)


@pytest.mark.parametrize("encoding", ["json", "jsonParsed"])
@pytest.mark.parametrize("name", list(EXPECTED))
def test_node_answers_in_both_encodings(ledger: Ledger, name: str, encoding: str) -> None:
    names = {"authority": ledger.kit.authority.pubkey(), "payer": ledger.payer.pubkey(),
             "payee_ata": ata(ledger.payee.pubkey())}
    outcome = judge(ledger, rendered(ledger, name, encoding))
    want = EXPECTED[name]
    if isinstance(want, str):
        assert (outcome.payment, outcome.reason) == (None, want)
    else:
        assert outcome.payment is not None
        assert (outcome.payment.amount, outcome.payment.from_address) == (
            want[0], str(names[want[1]]))


def test_failed_transaction_pays_nothing_even_if_its_balances_moved(ledger: Ledger) -> None:
    tx = rendered(ledger, "transfer", "jsonParsed")
    tx["meta"]["err"] = {"InstructionError": [0, {"Custom": 1}]}
    assert judge(ledger, tx).reason == "failed_tx"


def test_missing_meta_is_not_yet_known(ledger: Ledger) -> None:
    tx = rendered(ledger, "transfer", "json")
    tx["meta"] = None
    assert judge(ledger, tx).reason == "not_found"
    assert judge_transaction(None, signature="x", payees=["y"], mint=USDC).reason == "not_found"


def test_account_index_runs_over_loaded_addresses(ledger: Ledger) -> None:
    tx = rendered(ledger, "v0", "json")
    static = tx["transaction"]["message"]["accountKeys"]
    index = next(b["accountIndex"] for b in tx["meta"]["postTokenBalances"]
                 if b["owner"] == str(ledger.payee.pubkey()))
    assert index >= len(static)  # the payee's account came from the lookup table
    tx["meta"]["loadedAddresses"] = {"writable": [], "readonly": []}
    with pytest.raises(UnreadableTransaction):
        judge(ledger, tx)


@pytest.mark.parametrize("encoding", ["json", "jsonParsed"])
def test_loaded_keys_are_writable_then_readonly(ledger: Ledger, encoding: str) -> None:
    tx = rendered(ledger, "v0_readonly", encoding)
    landed = ledger.node.landed(ledger.sigs["v0_readonly"])
    assert landed.loaded_writable and landed.loaded_readonly
    payee_ata = str(ata(ledger.payee.pubkey()))
    # Judged by the account alone (a configured token account), not by its owner.
    outcome = judge_transaction(tx, signature="x", payees=[], token_accounts=[payee_ata],
                                mint=USDC)
    assert outcome.payment is not None
    assert (outcome.payment.amount, outcome.payment.to_address) == (20, payee_ata)


@pytest.mark.parametrize("encoding", ["json", "jsonParsed"])
@pytest.mark.parametrize(("name", "authority"), [
    ("transfer", "payer"), ("checked", "payer"), ("reference", "payer"), ("cpi", "payee_ata")])
def test_without_owners_the_payer_is_the_transfer_authority(
        ledger: Ledger, encoding: str, name: str, authority: str) -> None:
    tx = rendered(ledger, name, encoding)
    for when in ("preTokenBalances", "postTokenBalances"):
        for entry in tx["meta"][when]:
            if entry["owner"] != str(ledger.payee.pubkey()):
                entry.pop("owner")  # very old answers carry no owner
    names = {"payer": ledger.payer.pubkey(), "payee_ata": ata(ledger.payee.pubkey())}
    outcome = judge(ledger, tx)
    assert outcome.payment is not None
    assert outcome.payment.from_address == str(names[authority])


def test_cpi_transfer_is_only_in_the_inner_instructions(ledger: Ledger) -> None:
    tx = rendered(ledger, "cpi", "json")
    keys = tx["transaction"]["message"]["accountKeys"]
    top_programs = {keys[ix["programIdIndex"]] for ix in tx["transaction"]["message"]["instructions"]}
    assert "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA" not in top_programs
    tx["meta"]["innerInstructions"] = []
    for when in ("preTokenBalances", "postTokenBalances"):
        for entry in tx["meta"][when]:
            entry.pop("owner")
    payee_ata = str(ata(ledger.payee.pubkey()))
    outcome = judge_transaction(tx, signature="x", payees=[], token_accounts=[payee_ata],
                                mint=USDC)
    # Without the inner instruction, nothing names who moved the money: the fee payer stands in.
    assert outcome.payment is not None and outcome.payment.amount == 16
    assert outcome.payment.from_address == str(ledger.payee.pubkey())


# --- proofs and cursor cuts ----------------------------------------------------------------


def test_ed25519_proofs() -> None:
    payer, other = Keypair(), Keypair()
    message = b"x402-claim:v1:solana:5sig:abc123"
    good = payer.sign_message(message)
    owner = str(payer.pubkey())
    assert verify_ed25519(owner, message, str(good))
    assert verify_ed25519(owner, message, bytes(good).hex())
    assert verify_ed25519(owner, message, "0x" + bytes(good).hex().upper())
    assert not verify_ed25519(owner, message, str(other.sign_message(message)))  # forged
    assert not verify_ed25519(owner, message + b"x", str(good))  # another token hash
    assert not verify_ed25519(str(other.pubkey()), message, str(good))  # another payer
    assert not verify_ed25519(owner, message, str(good)[:-2])
    assert not verify_ed25519(owner, message, "not a signature 0OIl")
    assert not verify_ed25519("0xnot-a-key", message, str(good))
    assert decode_proof(bytes(good).hex()) == bytes(good)


def page(*slots_and_sigs: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"signature": s, "slot": slot} for slot, s in slots_and_sigs]


@pytest.mark.parametrize(("marker", "position", "want", "met"), [
    ("c", 7, ["e", "d"], True),  # the marker ends it
    (None, 7, ["e", "d"], True),  # no marker: slots after the position
    (None, 6, ["e", "d", "c"], True),
    ("zz", 7, ["e", "d", "c"], True),  # an unknown marker: its slot is read again
    (None, 0, ["e", "d", "c", "b"], False),  # the page ran out first
])
def test_newest_first_until(marker: str | None, position: int, want: list[str],
                            met: bool) -> None:
    entries = page((9, "e"), (8, "d"), (7, "c"), (6, "b"))
    fresh, reached = newest_first_until(entries, marker, position)
    assert ([e["signature"] for e in fresh], reached) == (want, met)
