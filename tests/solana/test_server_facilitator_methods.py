"""The LiteSVM node's methods a facilitator needs, in the documented shapes (solana.com/docs/rpc):
simulateTransaction, sendTransaction, getSignatureStatuses, getFeeForMessage, isBlockhashValid,
getBalance; blockhashes valid for 150 slots; real SPL Token execution."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from solders.hash import Hash
from solders.message import to_bytes_versioned
from solders.signature import Signature

from verifier.devnet import svm_payments as sp
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import USDC_MINT, TokenKit, ata
from verifier.x402 import svm


def rpc(node: SolanaServer, method: str, *params: Any) -> dict[str, Any]:
    r = httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": list(params)})
    return r.json()


def payment(node: SolanaServer, kit: TokenKit, amount: int = 5_000):
    fee_payer, payer, payee = kit.wallet(), kit.wallet(), kit.wallet()
    kit.create_ata(payee.pubkey())
    kit.fund(payer.pubkey(), 1_000_000)
    blockhash = rpc(node, "getLatestBlockhash")["result"]["value"]["blockhash"]
    tx = sp.transaction(fee_payer.pubkey(), [payer],
                        sp.instructions(payer.pubkey(), payee.pubkey(), amount, price=1000),
                        Hash.from_string(blockhash))
    return fee_payer, payer, payee, tx


def test_simulate_send_status_fee(node: SolanaServer, kit: TokenKit) -> None:
    fee_payer, _payer, payee, partial = payment(node, kit)
    b64 = sp.encoded(partial)
    sim = rpc(node, "simulateTransaction", b64, {"encoding": "base64", "sigVerify": False})
    value = sim["result"]["value"]
    assert set(value) >= {"err", "logs", "accounts", "unitsConsumed", "returnData"}
    assert value["err"] is None and value["unitsConsumed"] > 0
    assert any("Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA success" in line
               for line in value["logs"])
    # Signature checked when asked for: the fee payer has not signed yet.
    sim = rpc(node, "simulateTransaction", b64, {"encoding": "base64", "sigVerify": True})
    assert sim["result"]["value"]["err"] == "SignatureFailure"
    # Preflight refuses the partially signed transaction with -32002 and the simulation.
    refused = rpc(node, "sendTransaction", b64, {"encoding": "base64"})
    assert refused["error"]["code"] == -32002 and "err" in refused["error"]["data"]
    msg = base64.b64encode(bytes(to_bytes_versioned(partial.message))).decode()
    fee = rpc(node, "getFeeForMessage", msg)["result"]
    assert fee["value"] == 2 * 5000 + (20_000 * 1000 + 999_999) // 1_000_000
    terms = svm.SvmTerms("solana", sp.NETWORK, str(USDC_MINT), (str(payee.pubkey()),),
                         str(fee_payer.pubkey()), 1, 10**9)
    transfer = svm.check(svm.parse(sp.body(partial, sp.requirements(
        payee.pubkey(), 5_000, fee_payer.pubkey()))), terms)
    assert isinstance(transfer, svm.Transfer), transfer
    signed, signature = svm.co_sign(transfer, fee_payer)
    before = node.svm.get_balance(fee_payer.pubkey())
    sent = rpc(node, "sendTransaction", signed, {"encoding": "base64"})
    assert sent["result"] == signature
    assert node.svm.get_balance(fee_payer.pubkey()) == before - fee["value"]
    again = rpc(node, "sendTransaction", signed, {"encoding": "base64", "skipPreflight": True})
    assert again["result"] == signature and node.sent[signature] == 2
    statuses = rpc(node, "getSignatureStatuses", [signature, str(Signature.new_unique())],
                   {"searchTransactionHistory": True})["result"]
    assert set(statuses) == {"context", "value"}
    first, unknown = statuses["value"]
    assert first["err"] is None and first["status"] == {"Ok": None}
    assert first["confirmationStatus"] == "finalized" and isinstance(first["slot"], int)
    assert unknown is None
    assert len(node.signatures_for(str(ata(payee.pubkey())))) == 2  # create_ata, payment


def test_blockhash_expiry(node: SolanaServer, kit: TokenKit) -> None:
    _fee_payer, _payer, _payee, partial = payment(node, kit)
    blockhash = str(partial.message.recent_blockhash)
    assert rpc(node, "isBlockhashValid", blockhash)["result"]["value"] is True
    node.skip_slots(151)
    assert rpc(node, "isBlockhashValid", blockhash)["result"]["value"] is False
    sim = rpc(node, "simulateTransaction", sp.encoded(partial), {"encoding": "base64"})
    assert sim["result"]["value"]["err"] == "BlockhashNotFound"
    msg = base64.b64encode(bytes(to_bytes_versioned(partial.message))).decode()
    assert rpc(node, "getFeeForMessage", msg)["result"]["value"] is None
    fresh = rpc(node, "getLatestBlockhash")["result"]["value"]["blockhash"]
    assert rpc(node, "isBlockhashValid", fresh)["result"]["value"] is True
    node.expire_blockhashes()
    assert rpc(node, "isBlockhashValid", fresh)["result"]["value"] is False


def test_get_balance(node: SolanaServer, kit: TokenKit) -> None:
    wallet = kit.wallet(1_234_567_890)
    answer = rpc(node, "getBalance", str(wallet.pubkey()))["result"]
    assert answer["value"] == 1_234_567_890 and "slot" in answer["context"]
