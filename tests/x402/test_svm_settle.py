"""x402 "exact" on Solana through the daemon's facilitator, on the LiteSVM node (real SPL Token
and ATA programs): payloads built in Python as @x402/svm builds them (the npm client itself is
in test_svm_npm.py). Exactly once: the ledger key is the message hash, taken before sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from solders.instruction import Instruction
from solders.keypair import Keypair

from tests.daemon import eventually, query, running_daemon
from tests.x402.conftest import facilitator_url
from tests.x402.svm_env import PRICE_UNITS, SvmSetup, get, post
from verifier.devnet import svm_payments as sp
from verifier.devnet.solana_tokens import USDC_MINT, ata
from verifier.x402 import svm


@pytest.fixture
async def facilitator(svm_setup: SvmSetup, database_url: str) -> AsyncIterator[str]:
    async with running_daemon(svm_setup.env(), database_url) as daemon:
        yield facilitator_url(daemon)


async def test_supported_names_the_fee_payer(svm_setup: SvmSetup, facilitator: str) -> None:
    supported = await get(facilitator, "/supported")
    fee_payer = str(svm_setup.fee_payer.pubkey())
    assert {"x402Version": 2, "scheme": "exact", "network": sp.NETWORK,
            "extra": {"feePayer": fee_payer}} in supported["kinds"]
    assert supported["signers"]["solana:*"] == [fee_payer]


async def test_paid_settlement_is_one_payment_row_and_the_request_used(
        svm_setup: SvmSetup, facilitator: str, database_url: str) -> None:
    s = svm_setup
    body = s.payment()
    verified = await post(facilitator, "/verify", body)
    assert verified == {"isValid": True, "payer": str(s.payer.pubkey())}
    assert s.node.sent == {}  # /verify sends nothing
    answer = await post(facilitator, "/settle", body)
    assert answer["success"] is True, answer
    sig = answer["transaction"]
    assert answer["network"] == sp.NETWORK and answer["payer"] == str(s.payer.pubkey())
    assert s.node.sent[sig] == 1 and s.usdc(s.payee) == PRICE_UNITS
    landed = s.node.landed(sig)
    assert landed.err is None and str(landed.tx.message.account_keys[0]) == \
        str(s.fee_payer.pubkey())
    rows = query(database_url, "SELECT tx_hash, from_address, to_address, amount_usdc, status, "
                 "requests_allocated, requests_used FROM x402_payments WHERE chain = 'solana'")
    assert [r[:4] for r in rows] == [(sig, str(s.payer.pubkey()), str(s.payee.pubkey()),
                                      Decimal("0.01"))]
    assert rows[0][4] == "verified" and rows[0][5:] == (10, 1)
    assert query(database_url, "SELECT u.endpoint FROM x402_usage u JOIN x402_payments p "
                 "ON p.id = u.payment_id WHERE p.tx_hash = %(s)s", {"s": sig}) == [("/v1/quote",)]
    assert query(database_url, "SELECT state, tx_hash FROM verifier.settlements") == \
        [("mined", sig)]
    # Replay of the same transaction: the first answer's transaction, nothing sent.
    again = await post(facilitator, "/settle", body)
    assert again["success"] is False and again["errorReason"] == "duplicate_settlement"
    assert again["transaction"] == sig and s.node.sent[sig] == 1
    # The watcher sees the same signature on the payee's ATA: still one row, and still
    # verified although $0.01 is below X402_MIN_PAYMENT_USDC (0.10): an x402 "exact" payment.
    await eventually(lambda: query(database_url, "SELECT count(*) FROM verifier.cursors "
                                   "WHERE chain = 'solana' AND position > %(p)s",
                                   {"p": landed.slot - 1}), within=10)
    assert query(database_url, "SELECT count(*), min(status) FROM x402_payments") == \
        [(1, "verified")]


async def test_eight_concurrent_identical_settles_send_one_transaction(
        svm_setup: SvmSetup, facilitator: str, database_url: str) -> None:
    s = svm_setup
    body = s.payment()
    answers = await asyncio.gather(*(post(facilitator, "/settle", body) for _ in range(8)))
    assert sum(a["success"] is True for a in answers) == 1, answers
    sigs = {a["transaction"] for a in answers}
    assert len(sigs) == 1
    (sig,) = sigs
    assert all(a["errorReason"] == "duplicate_settlement" for a in answers if not a["success"])
    assert s.node.sent == {sig: 1} and s.usdc(s.payee) == PRICE_UNITS
    assert query(database_url, "SELECT count(*) FROM verifier.settlements") == [(1,)]


def fee_payer_authority(s: SvmSetup) -> list[Instruction]:
    f = s.fee_payer.pubkey()
    s.kit.fund(f, 1_000_000)
    return [*sp.instructions(s.payer.pubkey(), s.payee.pubkey(), PRICE_UNITS)[:2],
            sp.transfer_checked(ata(f), USDC_MINT, ata(s.payee.pubkey()), f, PRICE_UNITS)]


@pytest.mark.parametrize(("case", "reason"), [
    ("amount above", svm.ERR_AMOUNT_MISMATCH),
    ("amount below", svm.ERR_AMOUNT_MISMATCH),
    ("wrong mint", svm.ERR_MINT_MISMATCH),
    ("destination not the payee's ATA", svm.ERR_RECIPIENT_MISMATCH),
    ("fee payer as authority", svm.ERR_FEE_PAYER_TRANSFERRING),
    ("compute price too high", svm.ERR_COMPUTE_PRICE_TOO_HIGH),
    ("extra unknown instruction", svm.ERR_UNKNOWN_OPTIONAL[0]),
    ("payer without the balance", svm.ERR_SIMULATION_FAILED),
    ("payee ATA missing", svm.ERR_PAYEE_ATA_MISSING),
])
async def test_refused_and_nothing_sent(svm_setup: SvmSetup, facilitator: str,
                                        database_url: str, case: str, reason: str) -> None:
    s = svm_setup
    p, to = s.payer.pubkey(), s.payee.pubkey()
    other_mint = s.kit.create_mint()
    s.kit.fund(p, 1_000_000, other_mint)
    bodies = {
        "amount above": lambda: s.payment(PRICE_UNITS + 1, required=PRICE_UNITS),
        "amount below": lambda: s.payment(PRICE_UNITS - 1, required=PRICE_UNITS),
        "wrong mint": lambda: s.payment(ixs=sp.instructions(p, to, PRICE_UNITS,
                                                            mint=other_mint)),
        "destination not the payee's ATA": lambda: s.payment(ixs=sp.instructions(
            p, to, PRICE_UNITS, destination=s.kit.create_token_account(to))),
        "fee payer as authority": lambda: s.payment(ixs=fee_payer_authority(s),
                                                    signers=[s.payer, s.fee_payer]),
        "compute price too high": lambda: s.payment(ixs=sp.instructions(
            p, to, PRICE_UNITS, price=5_000_001)),
        "extra unknown instruction": lambda: s.payment(ixs=[
            *sp.instructions(p, to, PRICE_UNITS), Instruction(Keypair().pubkey(), b"", [])]),
        "payer without the balance": lambda: s.payment(20_000_000),
    }
    if case == "payee ATA missing":
        newcomer = Keypair().pubkey()
        tx = sp.transaction(s.fee_payer.pubkey(), [s.payer],
                            sp.instructions(p, newcomer, PRICE_UNITS),
                            s.node.svm.latest_blockhash())
        reqs = sp.requirements(newcomer, PRICE_UNITS, s.fee_payer.pubkey())
        body = sp.body(tx, reqs)
        # Configured as a payee, so only the missing account refuses it.
        async with running_daemon(s.env(X402_SOLANA_PAYMENT_ADDRESS=f"{to},{newcomer}"),
                                  database_url) as daemon:
            answer = await post(facilitator_url(daemon), "/settle", body)
    else:
        body = bodies[case]()
        verified = await post(facilitator, "/verify", body)
        assert verified["isValid"] is False and verified["invalidReason"] == reason, verified
        answer = await post(facilitator, "/settle", body)
    assert answer["success"] is False and answer["errorReason"] == reason, answer
    assert answer["transaction"] == ""
    assert s.node.sent == {}
    assert query(database_url, "SELECT count(*) FROM verifier.settlements") == [(0,)]


async def test_expired_blockhash_answers_why_and_sends_nothing(
        svm_setup: SvmSetup, facilitator: str, database_url: str) -> None:
    s = svm_setup
    body = s.payment()
    s.node.expire_blockhashes()
    answer = await post(facilitator, "/settle", body)
    assert answer["success"] is False, answer
    assert answer["errorReason"] == svm.ERR_BLOCKHASH_EXPIRED
    assert "blockhash" in answer["errorMessage"]
    assert s.node.sent == {} and s.usdc(s.payee) == 0
    assert query(database_url, "SELECT count(*) FROM verifier.settlements") == [(0,)]


async def test_not_landed_then_blockhash_expired_is_closed_without_resending(
        svm_setup: SvmSetup, database_url: str) -> None:
    """Sent, then lost by the node; once its blockhash has expired it can never land: the
    tracker closes it (after looking the signature up) and sends nothing more."""
    s = svm_setup
    s.node.hold_sends = True
    async with running_daemon(s.env(X402_FACILITATOR_SETTLE_TIMEOUT="0.5"),
                              database_url) as daemon:
        url = facilitator_url(daemon)
        body = s.payment()
        first = await post(url, "/settle", body)
        assert first["errorReason"] == "settlement_pending", first
        sig = first["transaction"]
        s.node.drop_held()
        s.node.expire_blockhashes()
        await eventually(lambda: query(database_url, "SELECT state FROM verifier.settlements")
                         == [("failed",)], within=10)
        sent = s.node.sent[sig]
        again = await post(url, "/settle", body)
        assert again["success"] is False and again["errorReason"] == svm.ERR_BLOCKHASH_EXPIRED
        assert again["transaction"] == sig
        await asyncio.sleep(0.5)
        assert s.node.sent[sig] == sent and s.usdc(s.payee) == 0
        assert s.node.calls["getSignatureStatuses"] >= 1


async def test_metrics_show_the_fee_payer_balance_and_outcomes(
        svm_setup: SvmSetup, database_url: str) -> None:
    from tests.ops.harness import base_url, samples, value

    s = svm_setup
    async with running_daemon(s.env(), database_url) as daemon:
        url = facilitator_url(daemon)
        body = s.payment()
        for _ in range(2):
            await post(url, "/settle", body)
        await daemon.metrics.refresh()
        async with httpx.AsyncClient() as client:
            text = (await client.get(base_url(daemon) + "/metrics")).text
    found = samples(text)
    assert value(found, "x402_settlements_total", outcome="success") == 1
    assert value(found, "x402_settlements_total", outcome="duplicate") == 1
    lamports = value(found, "x402_fee_payer_balance_lamports",
                     address=str(s.fee_payer.pubkey()))
    assert lamports == s.node.svm.get_balance(s.fee_payer.pubkey())
    assert str(s.fee_payer) not in text
