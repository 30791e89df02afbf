"""The pure decisions, from tables of cases."""

from datetime import timedelta

import pytest

from verifier import rules
from verifier.models import BalanceChange, ChainView, Observed, TokenMove, Transfer, TxFacts

USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
FAKE = "0x1111111111111111111111111111111111111111"
PAYEE = "0x2222222222222222222222222222222222222222"
OTHER = "0x3333333333333333333333333333333333333333"
PAYER = "0x4444444444444444444444444444444444444444"
POLICY = rules.Policy(price_per_request=1_000, min_payment=100_000)


def transfer(tx="0xaa", index=0, to=PAYEE, amount=1_000_000, token=USDC, block=10, sender=PAYER):
    return Transfer("base", tx, index, block, "0xbb", sender, to, amount, token)


def observed(amount=1_000_000, block=10):
    return Observed("base", "0xaa", block, "0xbb", PAYER, PAYEE, amount)


def test_transfers_to_the_payee_in_one_tx_add_up():
    [p] = rules.payments_from_transfers(
        [transfer(index=3, amount=250_000), transfer(index=1, amount=750_000)], [PAYEE], USDC)
    assert p.amount == 1_000_000
    assert p.from_address == PAYER


@pytest.mark.parametrize("t", [
    transfer(to=OTHER),          # another recipient
    transfer(token=FAKE),        # a look-alike token
    transfer(amount=0),          # nothing moved
])
def test_transfers_that_pay_nothing(t):
    assert rules.payments_from_transfers([t], [PAYEE], USDC) == []


def test_only_the_usdc_part_of_a_mixed_tx_counts():
    [p] = rules.payments_from_transfers(
        [transfer(amount=500_000), transfer(index=1, amount=10**30, token=FAKE),
         transfer(index=2, amount=7, to=OTHER)], [PAYEE], USDC)
    assert p.amount == 500_000


def test_payments_come_out_oldest_first_one_per_tx():
    ps = rules.payments_from_transfers(
        [transfer(tx="0x02", block=7), transfer(tx="0x01", block=9), transfer(tx="0x02", index=5,
                                                                            block=7)],
        [PAYEE], USDC)
    assert [(p.tx_hash, p.amount) for p in ps] == [("0x02", 2_000_000), ("0x01", 1_000_000)]


SECOND = "0x5555555555555555555555555555555555555555"


def tx(*transfers, failed=False):
    return TxFacts("base", "0xaa", 10, "0xbb", failed=failed, transfers=transfers)


@pytest.mark.parametrize("facts_,reason", [
    (tx(transfer(), failed=True), "failed_tx"),                          # failed comes first
    (tx(transfer(to=OTHER), transfer(index=1, token=FAKE)), "wrong_token"),  # before recipient
    (tx(transfer(to=OTHER)), "wrong_recipient"),
    (tx(transfer(sender=PAYEE)), "wrong_recipient"),                     # payee to itself
    (tx(transfer(amount=0)), "no_transfer"),                             # nothing moved
    (tx(), "no_transfer"),
])
def test_why_a_transaction_pays_nothing(facts_, reason):
    assert rules.judge_transaction(facts_, [PAYEE], USDC) == reason


def test_one_payment_per_transaction_sums_every_payee_and_names_the_larger_share():
    p = rules.judge_transaction(tx(transfer(amount=4_000), transfer(index=1, to=SECOND,
                                                                    amount=5_000)),
                                [PAYEE, SECOND], USDC)
    assert isinstance(p, Observed) and (p.amount, p.to_address) == (9_000, SECOND)


def test_a_move_between_two_payees_pays_nothing():
    facts_ = tx(transfer(amount=700), transfer(index=1, to=SECOND, sender=PAYEE, amount=500))
    p = rules.judge_transaction(facts_, [PAYEE, SECOND], USDC)
    assert isinstance(p, Observed) and (p.amount, p.to_address, p.from_address) == (
        700, PAYEE, PAYER)


def balance(owner, change, account=None, token="mint"):
    return BalanceChange(account or owner + "-ata", owner, token, change)


def sol(*balances, moves=(), signers=("fee-payer",)):
    return TxFacts("solana", "sig", 10, None, balances=balances, moves=moves, signers=signers)


@pytest.mark.parametrize("facts_,payer", [
    # the owner whose balance fell most, whoever signed
    (sol(balance("payee", 30), balance("a", -10), balance("b", -20)), "b"),
    # no owner fell (very old answers carry no owner): the authority of the move into the payee
    (sol(balance("payee", 30), BalanceChange("x", None, "mint", -30),
         moves=(TokenMove("y", "z", "other", 1), TokenMove("x", "payee-ata", "auth", 30))),
     "auth"),
    (sol(balance("payee", 30), moves=(TokenMove("x", "y", "first", 1),)), "first"),
    (sol(balance("payee", 30)), "fee-payer"),
])
def test_the_solana_payer(facts_, payer):
    p = rules.judge_transaction(facts_, ["payee"], "mint")
    assert isinstance(p, Observed) and (p.from_address, p.amount) == (payer, 30)


def test_a_configured_token_account_is_a_payee_whoever_owns_it():
    p = rules.judge_transaction(sol(balance("someone", 40, account="acct"), balance("a", -40)),
                                ["acct"], "mint")
    assert isinstance(p, Observed) and (p.to_address, p.amount, p.from_address) == (
        "acct", 40, "a")


@pytest.mark.parametrize("amount,head,final,status,confs,requests", [
    (1_000_000, 10, 9, "pending", 1, 1_000),      # not final yet
    (1_000_000, 19, 10, "verified", 10, 1_000),   # final
    (99_999, 19, 10, "underpaid", 10, 0),         # below the minimum buys nothing
    (100_000, 19, 10, "verified", 10, 100),       # exactly the minimum
    (100_999, 19, 10, "verified", 10, 100),       # floor, never rounded up
])
def test_judge(amount, head, final, status, confs, requests):
    v = rules.judge(observed(amount), ChainView(head, final), POLICY)
    assert (v.status, v.confirmations, v.requests_allocated) == (status, confs, requests)


def test_final_block_counts_the_including_block_as_one_confirmation():
    assert rules.final_block(100, 10) == 91
    assert rules.final_block(100, 0) == 100
    assert rules.final_block(100, 1) == 100


def test_claim_message_format():
    assert rules.claim_message("base", "0xab", "cd") == "x402-claim:v1:base:0xab:cd"


def facts(**kw):
    base = dict(age=timedelta(seconds=1), payment_status="verified", proof_valid=True)
    base.update(kw)
    return rules.ClaimFacts(**base)


@pytest.mark.parametrize("f,action,reason", [
    (facts(), "issue", None),
    (facts(proof_valid=False), "reject", "bad_proof"),
    (facts(proof_valid=None), "reject", "bad_proof"),
    (facts(already_claimed=True), "reject", "already_claimed"),
    (facts(payment_status="used"), "reject", "already_claimed"),
    (facts(payment_status="underpaid"), "reject", "underpaid"),
    (facts(payment_status="reorged"), "reject", "reorged"),
    (facts(payment_status="expired"), "reject", "expired"),
    # verified, but past its expires_at before cleanup marked it: a token would be dead
    (facts(payment_lapsed=True), "reject", "expired"),
    (facts(payment_lapsed=True, already_claimed=True), "reject", "already_claimed"),
    (facts(payment_status="pending", payment_lapsed=True), "wait", "unconfirmed"),
    (facts(payment_status="pending"), "wait", "unconfirmed"),
    (facts(payment_status="pending", age=timedelta(hours=1)), "expire", "unconfirmed"),
    (facts(payment_status=None, lookup_reason="not_found"), "wait", "not_found"),
    (facts(payment_status=None, lookup_reason="not_found", age=timedelta(minutes=5)),
     "reject", "not_found"),
    (facts(payment_status=None, lookup_reason="failed_tx"), "reject", "failed_tx"),
    (facts(payment_status=None, lookup_reason="wrong_token"), "reject", "wrong_token"),
])
def test_judge_claim(f, action, reason):
    d = rules.judge_claim(f, POLICY)
    assert (d.action, d.reason) == (action, reason)


def test_without_proofs_the_first_claim_wins():
    policy = rules.Policy(1_000, 100_000, claim_proof="none")
    assert rules.judge_claim(facts(proof_valid=None), policy).action == "issue"


def test_the_evm_payer_is_the_sender_of_the_largest_amount():
    small, big = PAYER, OTHER
    p = rules.judge_transaction(tx(transfer(index=0, sender=small, amount=10_000),
                                   transfer(index=1, sender=big, amount=10_000_000)),
                                [PAYEE], USDC)
    assert isinstance(p, Observed) and (p.from_address, p.amount) == (big, 10_010_000)


def test_the_evm_payer_sums_each_senders_transfers_and_ties_go_to_the_first():
    three = tx(transfer(index=0, sender=OTHER, amount=500), transfer(index=1, sender=PAYER,
                                                                     amount=400),
               transfer(index=2, sender=PAYER, amount=400))
    assert rules.payer(three, [PAYEE], USDC) == PAYER  # 800 against 500
    tie = tx(transfer(index=5, sender=PAYER, amount=500), transfer(index=2, sender=OTHER,
                                                                   amount=500))
    assert rules.payer(tie, [PAYEE], USDC) == OTHER  # its transfer comes first


def test_the_solana_payer_is_the_sender_of_the_largest_amount_to_the_payee():
    # "b" lost most overall, but most of it went elsewhere: "a" sent the payee more.
    facts_ = sol(balance("payee", 30), balance("a", -20), balance("b", -110),
                 balance("elsewhere", 100),
                 moves=(TokenMove("b-ata", "payee-ata", "b", 10),
                        TokenMove("b-ata", "elsewhere-ata", "b", 100),
                        TokenMove("a-ata", "payee-ata", "a", 20)))
    p = rules.judge_transaction(facts_, ["payee"], "mint")
    assert isinstance(p, Observed) and (p.from_address, p.amount) == ("a", 30)


def test_a_solana_move_between_two_payees_pays_nothing():
    between = sol(balance("payee", 50), balance("payee2", -50),
                  moves=(TokenMove("payee2-ata", "payee-ata", "payee2", 50),))
    assert rules.judge_transaction(between, ["payee", "payee2"], "mint") == "wrong_recipient"
    beside = sol(balance("payee", 80), balance("payee2", -50), balance("a", -30),
                 moves=(TokenMove("payee2-ata", "payee-ata", "payee2", 50),
                        TokenMove("a-ata", "payee-ata", "a", 30)))
    p = rules.judge_transaction(beside, ["payee", "payee2"], "mint")
    assert isinstance(p, Observed) and (p.amount, p.from_address) == (30, "a")


def test_accepted_signers_are_the_payer_then_the_signers_once_each():
    assert rules.accepted_signers("payer", ("fee", "payer", "co")) == ("payer", "fee", "co")
    assert rules.accepted_signers("payer") == ("payer",)
    assert rules.accepted_signers("", ("fee",)) == ("fee",)
