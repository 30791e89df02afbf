"""One table of situations, run through BOTH chains' decoders and the one set of rules: each
chain must reach the same verdict and the same reason.

EVM cases are eth_getTransactionReceipt answers (and, when they pay, the eth_getLogs answer a
scan would see); Solana cases are getTransaction answers in jsonParsed encoding, with the
balances and token instructions the runtime would record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from solders.keypair import Keypair

from verifier import rules
from verifier.chains import evm_decode, solana_decode
from verifier.chains.solana_keys import associated_token_address
from verifier.errors import UnreadableAnswer
from verifier.models import ChainView, Observed, TxFacts

USDC = "usdc"
FAKE = "fake"  # a look-alike token with the same decimals
PAYER, PAYEE, OTHER = "payer", "payee", "other"
SMALL, BIG, ROUTER, RELAYER = "small", "big", "router", "relayer"  # see CLAIMANTS
PAYEE2 = "payee2"  # a second payment address
POLICY = rules.Policy(price_per_request=1_000, min_payment=100_000)
VIEW = ChainView(head=1_000, final=1_000)

EVM_TOKENS = {USDC: "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
              FAKE: "0x1111111111111111111111111111111111111111"}
EVM_WALLETS = {PAYER: "0x4444444444444444444444444444444444444444",
               PAYEE: "0x2222222222222222222222222222222222222222",
               OTHER: "0x3333333333333333333333333333333333333333",
               SMALL: "0x5555555555555555555555555555555555555555",
               BIG: "0x6666666666666666666666666666666666666666",
               ROUTER: "0x7777777777777777777777777777777777777777",
               RELAYER: "0x8888888888888888888888888888888888888888",
               PAYEE2: "0x9999999999999999999999999999999999999999"}
EVM_TX = "0x" + "ab" * 32

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
SOLANA_TOKENS = {USDC: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                 FAKE: str(Keypair.from_seed(bytes([9] * 32)).pubkey())}
SOLANA_WALLETS = {name: str(Keypair.from_seed(bytes([i + 1] * 32)).pubkey())
                  for i, name in enumerate([PAYER, PAYEE, OTHER, SMALL, BIG, ROUTER, RELAYER,
                                            PAYEE2])}
SOLANA_TX = str(Keypair.from_seed(bytes([7] * 32)).sign_message(b"x"))
START = 10**9  # every sender holds this much of every token before the transaction


@dataclass(frozen=True)
class Move:
    token: str
    sender: str
    recipient: str
    amount: int
    # EVM: an AuthorizationUsed log right before the Transfer (EIP-3009, an x402 "exact"
    # settlement), from this token contract (or `authorizing_token`) for this authorizer (or
    # `authorizer`). Solana has no such log: the same move is an ordinary transfer there.
    authorized: bool = False
    authorizer: str | None = None
    authorizing_token: str | None = None


@dataclass(frozen=True)
class Case:
    moves: tuple[Move, ...]
    failed: bool = False
    want: str | tuple[int, str, str] = "no_transfer"  # a reason, or (amount, status, payer)
    signer: str | None = None  # who sent the transaction (EVM tx.from, Solana fee payer);
    # None: the first move's sender
    want_solana: str | tuple[int, str, str] | None = None  # when Solana differs (no EIP-3009)


CASES = {
    "paid": Case((Move(USDC, PAYER, PAYEE, 1_000_000),), want=(1_000_000, "verified", PAYER)),
    "underpaid": Case((Move(USDC, PAYER, PAYEE, 99_999),), want=(99_999, "underpaid", PAYER)),
    "two transfers in one transaction add up": Case(
        (Move(USDC, PAYER, PAYEE, 60_000), Move(USDC, PAYER, PAYEE, 40_000)),
        want=(100_000, "verified", PAYER)),
    "failed": Case((Move(USDC, PAYER, PAYEE, 1_000_000),), failed=True, want="failed_tx"),
    "wrong token": Case((Move(FAKE, PAYER, PAYEE, 1_000_000),), want="wrong_token"),
    "wrong recipient": Case((Move(USDC, PAYER, OTHER, 1_000_000),), want="wrong_recipient"),
    "no token moved": Case((), want="no_transfer"),
    "self-transfer": Case((Move(USDC, PAYEE, PAYEE, 1_000_000),), want="wrong_recipient"),
    "only the usdc of a mixed transaction counts": Case(
        (Move(FAKE, PAYER, PAYEE, 10**12), Move(USDC, PAYER, PAYEE, 200_000)),
        want=(200_000, "verified", PAYER)),
    "wrong token is named before wrong recipient": Case(
        (Move(USDC, PAYER, OTHER, 1_000_000), Move(FAKE, PAYER, PAYEE, 1_000_000)),
        want="wrong_token"),
    "a failed transaction is failed whatever it moved": Case(
        (Move(FAKE, PAYER, PAYEE, 1_000_000),), failed=True, want="failed_tx"),
    "a zero transfer to the payee is no transfer": Case(
        (Move(USDC, PAYER, PAYEE, 0),), want="no_transfer"),
    # Who paid: the sender of the largest amount, not the first one.
    "two senders: the larger one is the payer": Case(
        (Move(USDC, SMALL, PAYEE, 10_000), Move(USDC, BIG, PAYEE, 10_000_000)),
        signer=RELAYER, want=(10_010_000, "verified", BIG)),
    "an EOA paying through a contract": Case(
        (Move(USDC, ROUTER, PAYEE, 2_000_000),), signer=PAYER,
        want=(2_000_000, "verified", ROUTER)),
    "equal amounts: the first sender is the payer": Case(
        (Move(USDC, BIG, PAYEE, 300_000), Move(USDC, SMALL, PAYEE, 300_000)),
        signer=RELAYER, want=(600_000, "verified", BIG)),
    # Self-payment is not revenue: a move between two payment addresses pays nothing.
    "a payee paying another payee": Case(
        (Move(USDC, PAYEE2, PAYEE, 5_000_000),), want="wrong_recipient"),
    "a payee paying another payee beside a real payment": Case(
        (Move(USDC, PAYEE2, PAYEE, 5_000_000), Move(USDC, PAYER, PAYEE, 200_000)),
        want=(200_000, "verified", PAYER)),
    # x402 "exact" payments (EIP-3009), whoever settled them: one request's price suffices.
    "an x402 exact payment of one request is verified": Case(
        (Move(USDC, PAYER, PAYEE, 1_000, authorized=True),),
        want=(1_000, "verified", PAYER), want_solana=(1_000, "underpaid", PAYER)),
    "an x402 exact payment below one request is underpaid": Case(
        (Move(USDC, PAYER, PAYEE, 999, authorized=True),), want=(999, "underpaid", PAYER)),
    "two exact payments in one transaction are exact": Case(
        (Move(USDC, PAYER, PAYEE, 500, authorized=True),
         Move(USDC, PAYER, PAYEE, 500, authorized=True)),
        want=(1_000, "verified", PAYER), want_solana=(1_000, "underpaid", PAYER)),
    "a plain transfer beside an exact one makes the payment plain": Case(
        (Move(USDC, PAYER, PAYEE, 1_000, authorized=True), Move(USDC, PAYER, PAYEE, 1_000)),
        want=(2_000, "underpaid", PAYER)),
    "another contract's AuthorizationUsed makes no exact payment": Case(
        (Move(USDC, PAYER, PAYEE, 1_000, authorized=True, authorizing_token=FAKE),),
        want=(1_000, "underpaid", PAYER)),
    "another authorizer's AuthorizationUsed makes no exact payment": Case(
        (Move(USDC, PAYER, PAYEE, 1_000, authorized=True, authorizer=OTHER),),
        want=(1_000, "underpaid", PAYER)),
    "an authorized look-alike is still the wrong token": Case(
        (Move(FAKE, PAYER, PAYEE, 10**12, authorized=True),), want="wrong_token"),
    "an exact payment of a failed transaction is failed": Case(
        (Move(USDC, PAYER, PAYEE, 1_000, authorized=True),), failed=True, want="failed_tx"),
}

# Whose proof may claim each paying case: its payer, and whoever signed the transaction.
CLAIMANTS = {
    "paid": {PAYER},
    "two senders: the larger one is the payer": {BIG, RELAYER},
    "an EOA paying through a contract": {ROUTER, PAYER},
    "equal amounts: the first sender is the payer": {BIG, RELAYER},
}
PAYEES = (PAYEE, PAYEE2)

AUTHORIZATION_USED = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"


# --- EVM: receipts and logs ----------------------------------------------------------------


def evm_log(move: Move, index: int) -> dict[str, Any]:
    return {"address": EVM_TOKENS[move.token], "blockNumber": hex(900),
            "blockHash": "0x" + "cd" * 32, "transactionHash": EVM_TX, "logIndex": hex(index),
            "removed": False, "data": "0x" + f"{move.amount:064x}",
            "topics": [evm_decode.TRANSFER_TOPIC, evm_decode.topic_for(EVM_WALLETS[move.sender]),
                       evm_decode.topic_for(EVM_WALLETS[move.recipient])]}


def evm_authorization_log(move: Move, index: int) -> dict[str, Any]:
    """What FiatToken's transferWithAuthorization logs right before the Transfer."""
    return {"address": EVM_TOKENS[move.authorizing_token or move.token], "blockNumber": hex(900),
            "blockHash": "0x" + "cd" * 32, "transactionHash": EVM_TX, "logIndex": hex(index),
            "removed": False, "data": "0x",
            "topics": [AUTHORIZATION_USED,
                       evm_decode.topic_for(EVM_WALLETS[move.authorizer or move.sender]),
                       "0x" + f"{index + 1:064x}"]}


def evm_logs(case: Case) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = []
    for m in case.moves:
        if m.authorized:
            logs.append(evm_authorization_log(m, len(logs)))
        logs.append(evm_log(m, len(logs)))
    return logs


def evm_receipt(case: Case) -> dict[str, Any]:
    # A reverted transaction keeps no logs: that is what a real receipt of status 0 holds.
    logs = [] if case.failed else evm_logs(case)
    return {"transactionHash": EVM_TX, "blockNumber": hex(900), "blockHash": "0x" + "cd" * 32,
            "from": EVM_WALLETS[signer_of(case)], "status": "0x0" if case.failed else "0x1",
            "logs": logs}


def signer_of(case: Case) -> str:
    return case.signer or (case.moves[0].sender if case.moves else PAYER)


def evm_facts(case: Case) -> TxFacts:
    return evm_decode.receipt_facts("base", evm_receipt(case), EVM_TX, EVM_TOKENS[USDC])


def evm_lookup(case: Case) -> Observed | str:
    usdc = EVM_TOKENS[USDC]
    return rules.judge_transaction(evm_facts(case), [EVM_WALLETS[p] for p in PAYEES], usdc)


def evm_scan(case: Case) -> list[Observed]:
    """What eth_getLogs answers a scan: USDC Transfer logs into a payee, of successful txs; then
    the USDC AuthorizationUsed logs of their senders."""
    usdc = EVM_TOKENS[USDC]
    payees = [EVM_WALLETS[p] for p in PAYEES]
    topics = {evm_decode.topic_for(a) for a in payees}
    receipt_logs = evm_receipt(case)["logs"]
    logs = [e for e in receipt_logs if e["address"] == usdc
            and e["topics"][0] == evm_decode.TRANSFER_TOPIC and e["topics"][2] in topics]
    transfers = evm_decode.logged_transfers("base", logs, 900, 900)
    senders = {evm_decode.topic_for(t.from_address) for t in transfers}
    used = [e for e in receipt_logs if e["address"] == usdc
            and e["topics"][0] == AUTHORIZATION_USED and e["topics"][1] in senders]
    authorizations = evm_decode.logged_authorizations(used, 900, 900)
    return rules.payments_from_transfers(transfers, payees, usdc, authorizations)


# --- Solana: getTransaction, jsonParsed ----------------------------------------------------


def ata(owner: str, token: str) -> str:
    return associated_token_address(SOLANA_WALLETS[owner], SOLANA_TOKENS[token], TOKEN_PROGRAM)


def solana_transaction(case: Case) -> dict[str, Any]:
    signer = signer_of(case)
    accounts = {(o, m.token): ata(o, m.token) for m in case.moves for o in (m.sender, m.recipient)}
    keys = [SOLANA_WALLETS[signer], *dict.fromkeys(accounts.values()), TOKEN_PROGRAM]
    pre = {a: START if any(ata(m.sender, m.token) == a for m in case.moves) else 0
           for a in accounts.values()}
    post = dict(pre)
    for m in case.moves if not case.failed else ():  # a failed transaction changes no balance
        post[ata(m.sender, m.token)] -= m.amount
        post[ata(m.recipient, m.token)] += m.amount
    return {"slot": 900, "blockTime": 1_747_059_490, "version": 0,
            "meta": {"err": {"InstructionError": [0, {"Custom": 1}]} if case.failed else None,
                     "fee": 5000, "innerInstructions": [], "logMessages": [],
                     "preTokenBalances": _balances(pre, accounts, keys),
                     "postTokenBalances": _balances(post, accounts, keys)},
            "transaction": {"signatures": [SOLANA_TX], "message": {
                "accountKeys": [{"pubkey": k, "signer": i == 0, "writable": k != TOKEN_PROGRAM,
                                 "source": "transaction"} for i, k in enumerate(keys)],
                "recentBlockhash": "41mww1wbRbSjvBaXwue59UpGr2K58Kxf8Zq59wgo7b5w",
                "instructions": [_transfer_checked(m) for m in case.moves]}}}


def _balances(amounts: dict[str, int], accounts: dict[tuple[str, str], str],
              keys: list[str]) -> list[dict[str, Any]]:
    return [{"accountIndex": keys.index(account), "mint": SOLANA_TOKENS[token],
             "owner": SOLANA_WALLETS[owner], "programId": TOKEN_PROGRAM,
             "uiTokenAmount": {"amount": str(amounts[account]), "decimals": 6,
                               "uiAmount": amounts[account] / 10**6,
                               "uiAmountString": str(amounts[account] / 10**6)}}
            for (owner, token), account in accounts.items()]


def _transfer_checked(m: Move) -> dict[str, Any]:
    return {"programId": TOKEN_PROGRAM, "program": "spl-token", "stackHeight": None,
            "parsed": {"type": "transferChecked", "info": {
                "source": ata(m.sender, m.token), "destination": ata(m.recipient, m.token),
                "authority": SOLANA_WALLETS[m.sender], "mint": SOLANA_TOKENS[m.token],
                "tokenAmount": {"amount": str(m.amount), "decimals": 6}}}}


def solana_facts(case: Case) -> TxFacts:
    facts = solana_decode.transaction_facts(solana_transaction(case), SOLANA_TX)
    assert facts is not None
    return facts


def solana_lookup(case: Case) -> Observed | str:
    return rules.judge_transaction(solana_facts(case), [SOLANA_WALLETS[p] for p in PAYEES],
                                   SOLANA_TOKENS[USDC])


# --- the table -----------------------------------------------------------------------------


def verdict(result: Observed | str, wallets: dict[str, str]) -> str | tuple[int, str, str]:
    """A chain's answer in chain-free words: a reason, or (amount, status, payer's name)."""
    if isinstance(result, str):
        return result
    names = {address: name for name, address in wallets.items()}
    assert result.to_address == wallets[PAYEE]
    return (result.amount, rules.judge(result, VIEW, POLICY).status, names[result.from_address])


@pytest.mark.parametrize("name", list(CASES))
def test_both_chains_reach_the_same_verdict(name: str) -> None:
    case = CASES[name]
    evm = verdict(evm_lookup(case), EVM_WALLETS)
    solana = verdict(solana_lookup(case), SOLANA_WALLETS)
    want_solana = case.want if case.want_solana is None else case.want_solana
    assert (evm, solana) == (case.want, want_solana)


@pytest.mark.parametrize("name", list(CASES))
def test_an_evm_scan_finds_what_a_lookup_finds(name: str) -> None:
    lookup = evm_lookup(CASES[name])
    assert evm_scan(CASES[name]) == ([lookup] if isinstance(lookup, Observed) else [])


def test_the_payment_carries_the_transaction_and_its_block() -> None:
    case = CASES["paid"]
    evm, solana = evm_lookup(case), solana_lookup(case)
    assert isinstance(evm, Observed) and isinstance(solana, Observed)
    assert (evm.chain, evm.tx_hash, evm.block_number, evm.block_hash) == (
        "base", EVM_TX, 900, "0x" + "cd" * 32)
    assert (solana.chain, solana.tx_hash, solana.block_number, solana.block_hash) == (
        "solana", SOLANA_TX, 900, None)


def test_a_scanned_transaction_moving_more_usdc_than_exists_is_a_corrupt_answer():
    """Two logs of one transaction, each possible, together above all the USDC there is: the
    answer is unreadable (asked again), never a payment to record or to set aside."""
    half = evm_decode.MAX_USDC_UNITS // 2 + 1
    logs = [evm_log(Move(USDC, PAYER, PAYEE, half), 0), evm_log(Move(USDC, PAYER, PAYEE, half), 1)]
    with pytest.raises(evm_decode.UnreadableAnswer, match="more USDC than exists"):
        evm_decode.logged_transfers("base", logs, 900, 900)
    assert len(evm_decode.logged_transfers("base", logs[:1], 900, 900)) == 1

@pytest.mark.parametrize("name", list(CLAIMANTS))
def test_both_chains_accept_proofs_by_the_payer_and_the_signer(name: str) -> None:
    case = CASES[name]
    accepted = {}
    for chain, facts, lookup, wallets in (
            ("evm", evm_facts(case), evm_lookup(case), EVM_WALLETS),
            ("solana", solana_facts(case), solana_lookup(case), SOLANA_WALLETS)):
        assert isinstance(lookup, Observed)
        names = {address: who for who, address in wallets.items()}
        accepted[chain] = {names[a] for a in rules.accepted_signers(lookup.from_address,
                                                                     facts.signers)}
    assert accepted == {"evm": CLAIMANTS[name], "solana": CLAIMANTS[name]}


def test_the_exact_minimum_is_a_setting_of_its_own() -> None:
    exact = evm_lookup(CASES["an x402 exact payment of one request is verified"])
    plain = evm_lookup(CASES["a plain transfer beside an exact one makes the payment plain"])
    assert isinstance(exact, Observed) and exact.exact
    assert isinstance(plain, Observed) and not plain.exact
    dearer = rules.Policy(price_per_request=1_000, min_payment=100_000, exact_min_payment=5_000)
    assert rules.judge(exact, VIEW, dearer) == rules.Verdict("underpaid", 101, 0)
    assert rules.judge(exact, VIEW, POLICY) == rules.Verdict("verified", 101, 1)
    cheaper = rules.Policy(price_per_request=1_000, min_payment=1_500)
    assert rules.judge(plain, VIEW, cheaper).status == "verified"  # plain: X402_MIN_PAYMENT_USDC


def test_a_malformed_usdc_authorization_log_is_a_corrupt_receipt_not_a_plain_payment() -> None:
    receipt = evm_receipt(CASES["an x402 exact payment of one request is verified"])
    receipt["logs"][0]["topics"] = receipt["logs"][0]["topics"][:2]  # the nonce topic lost
    with pytest.raises(UnreadableAnswer, match="AuthorizationUsed"):
        evm_decode.receipt_facts("base", receipt, EVM_TX, EVM_TOKENS[USDC])
    with pytest.raises(UnreadableAnswer, match="AuthorizationUsed"):
        evm_decode.logged_authorizations(receipt["logs"][:1], 900, 900)
