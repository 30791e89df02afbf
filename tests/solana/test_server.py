"""The test node answers in the documented shapes: checked against solders' typed RPC models
(an independent implementation of the same schema) and the documented paging rules."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.rpc.responses import GetSignaturesForAddressResp, GetTransactionResp

from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import TokenKit, ata


def call(node: SolanaServer, method: str, params: list[Any]) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()
    request = urllib.request.Request(node.url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture
def history(node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair) -> list[str]:
    """Ten payments to the payee, oldest first."""
    return [kit.transfer(payer, payee.pubkey(), 100 + i) for i in range(10)]


def listed(node: SolanaServer, payee: Keypair, **config: Any) -> list[str]:
    answer = call(node, "getSignaturesForAddress", [str(ata(payee.pubkey())), config])
    GetSignaturesForAddressResp.from_json(json.dumps(answer))
    return [entry["signature"] for entry in answer["result"]]


def test_signatures_newest_first_with_before_until_and_limit(
        node: SolanaServer, payee: Keypair, history: list[str]) -> None:
    newest_first = history[::-1]
    everything = listed(node, payee)
    assert everything[:10] == newest_first and len(everything) == 11  # and the ATA creation
    assert listed(node, payee, limit=3) == newest_first[:3]
    assert listed(node, payee, before=history[7], limit=3) == [history[6], history[5],
                                                               history[4]]
    assert listed(node, payee, until=history[6]) == newest_first[:3]
    assert listed(node, payee, before=history[8], until=history[4]) == history[5:8][::-1]
    assert listed(node, payee, before="1" * 64) == []  # an unknown `before`: nothing


def test_signature_entries_carry_the_documented_fields(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair) -> None:
    failed = kit.failed_transfer(payer, payee.pubkey(), 10**15)
    entry = call(node, "getSignaturesForAddress", [str(ata(payee.pubkey())), {"limit": 1}])[
        "result"][0]
    assert entry == {"signature": failed, "slot": node.landed(failed).slot,
                     "err": {"InstructionError": [0, {"Custom": 1}]}, "memo": None,
                     "blockTime": node.landed(failed).block_time,
                     "confirmationStatus": "finalized"}


def test_limit_above_1000_is_refused(node: SolanaServer, payee: Keypair) -> None:
    answer = call(node, "getSignaturesForAddress", [str(ata(payee.pubkey())), {"limit": 1001}])
    assert answer["error"]["code"] == -32602


@pytest.mark.parametrize("encoding", ["json", "jsonParsed", "base64"])
def test_transactions_parse_as_the_typed_rpc_models(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair,
        encoding: str) -> None:
    sigs = [
        kit.create_ata_and_transfer(payer, kit.wallet().pubkey(), 5),
        kit.transfer(payer, payee.pubkey(), 6, references=[Keypair().pubkey()]),
        kit.failed_transfer(payer, payee.pubkey(), 10**15),
        kit.transfer_v0(payer, payee.pubkey(), 7, kit.lookup_table([ata(payee.pubkey())])),
    ]
    for sig in sigs:
        answer = call(node, "getTransaction", [sig, {"encoding": encoding,
                                                     "maxSupportedTransactionVersion": 0}])
        typed = GetTransactionResp.from_json(json.dumps(answer)).value
        assert typed is not None and str(typed.transaction.transaction.signatures[0]) == sig
        assert typed.slot == node.landed(sig).slot


def test_json_parsed_account_keys_and_token_balances(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair) -> None:
    table = kit.lookup_table([ata(payee.pubkey())])
    sig = kit.transfer_v0(payer, payee.pubkey(), 7, table)
    result = call(node, "getTransaction", [sig, {"encoding": "jsonParsed",
                                                 "maxSupportedTransactionVersion": 0}])["result"]
    keys = result["transaction"]["message"]["accountKeys"]
    assert keys[0] == {"pubkey": str(payer.pubkey()), "signer": True, "writable": True,
                       "source": "transaction"}
    assert keys[-1] == {"pubkey": str(ata(payee.pubkey())), "signer": False, "writable": True,
                        "source": "lookupTable"}
    assert result["version"] == 0 and "loadedAddresses" not in result["meta"]
    post = {b["accountIndex"]: b for b in result["meta"]["postTokenBalances"]}
    assert post[len(keys) - 1]["owner"] == str(payee.pubkey())
    assert post[len(keys) - 1]["uiTokenAmount"]["amount"] == "7"


def test_versioned_transaction_without_max_version_is_refused_with_32015(
        node: SolanaServer, kit: TokenKit, payer: Keypair, payee: Keypair) -> None:
    sig = kit.transfer_v0(payer, payee.pubkey(), 7, kit.lookup_table([ata(payee.pubkey())]))
    legacy = kit.transfer(payer, payee.pubkey(), 8)
    assert call(node, "getTransaction", [sig, {"encoding": "json"}])["error"]["code"] == -32015
    plain = call(node, "getTransaction", [legacy, {"encoding": "json"}])["result"]
    assert "version" not in plain  # absent when maxSupportedTransactionVersion is not set
    stated = call(node, "getTransaction", [legacy, {"maxSupportedTransactionVersion": 0}])
    assert stated["result"]["version"] == "legacy"
    assert call(node, "getTransaction", ["1" * 64, {}])["result"] is None
