"""A Solana transaction of the x402 "exact" SVM layout, with a fee payer other than the
transfer's authority, is an x402 payment whoever settled it (as AuthorizationUsed marks one on
EVM): judged by X402_EXACT_MIN_PAYMENT_USDC. Read back from the LiteSVM node in every encoding
the adapter may get."""

from __future__ import annotations

import httpx
import pytest
from solders.instruction import Instruction
from solders.keypair import Keypair

from verifier import rules
from verifier.chains.solana_decode import transaction_facts
from verifier.devnet import svm_payments as sp
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import USDC_MINT, TokenKit
from verifier.models import Observed


def land(node: SolanaServer, fee_payer: Keypair, payer: Keypair, ixs: list[Instruction]) -> str:
    tx = sp.transaction(fee_payer.pubkey(), [payer, fee_payer], ixs,
                        node.svm.latest_blockhash())
    r = httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
                                   "params": [sp.encoded(tx), {"encoding": "base64"}]})
    return r.json()["result"]


def judged(node: SolanaServer, sig: str, payee: Keypair, encoding: str) -> Observed:
    r = httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "getTransaction",
                                   "params": [sig, {"encoding": encoding,
                                                    "maxSupportedTransactionVersion": 0}]})
    facts = transaction_facts(r.json()["result"], sig)
    assert facts is not None
    found = rules.judge_transaction(facts, [str(payee.pubkey())], str(USDC_MINT))
    assert isinstance(found, Observed), found
    return found


@pytest.mark.parametrize("encoding", ["jsonParsed", "json"])
def test_exact_layout_is_an_x402_payment(node: SolanaServer, kit: TokenKit,
                                         encoding: str) -> None:
    fee_payer, payer, payee = kit.wallet(), kit.wallet(), kit.wallet()
    kit.create_ata(payee.pubkey())
    kit.fund(payer.pubkey(), 1_000_000)
    p, to = payer.pubkey(), payee.pubkey()
    exact = land(node, fee_payer, payer, [*sp.instructions(p, to, 10_000), sp.memo("n")])
    assert judged(node, exact, payee, encoding).exact is True
    # Not exact: the payer paid its own fee; another program in it; no compute budget first.
    own_fee = land(node, payer, payer, sp.instructions(p, to, 10_000))
    other = land(node, fee_payer, payer, [*sp.instructions(p, to, 10_000),
                                          *sp.instructions(p, to, 1)[2:]])
    plain = kit.transfer_checked(payer, to, 10_000)
    for sig in (own_fee, other, plain):
        assert judged(node, sig, payee, encoding).exact is False, sig
    # Judged by the exact minimum, not X402_MIN_PAYMENT_USDC.
    policy = rules.Policy(price_per_request=1_000, min_payment=100_000,
                          exact_min_payment=1_000)
    assert policy.minimum_for(judged(node, exact, payee, encoding)) == 1_000
    assert policy.minimum_for(judged(node, plain, payee, encoding)) == 100_000
