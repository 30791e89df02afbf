"""Hostile inputs: each gets its exact rejection reason, nothing is written that should not be,
and the daemon keeps serving (every test ends with a fresh payment claimed and spent).

One daemon serves the whole module (Base on anvil, behind a FaultProxy that rewrites answers
for the hostile-RPC cases), so that "it keeps serving" means the same process after every
hostile input, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
import pytest_asyncio

from tests import pg
from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import OTHER, PAYEE, Chain, daemon_env, fresh_chain
from tests.reliability.support import Paid, claim, payments, proof
from verifier import api, config, rules
from verifier.daemon import Daemon
from verifier.devnet.anvil import Anvil
from verifier.devnet.evm import TRANSFER_TOPIC, sign_claim
from verifier.devnet.faults import FaultProxy
from verifier.errors import ConfigError, DatabaseError

pytestmark = pytest.mark.asyncio(loop_scope="module")

YES_MAN = "0x" + "5e" * 20  # EIP-1271 wallet whose isValidSignature says yes to anything
# Runtime code: mstore(0, 0x1626ba7e << 224); return(0, 32).
YES_MAN_CODE = "0x631626ba7e60e01b60005260206000f3"


@dataclass
class World:
    chain: Chain
    proxy: FaultProxy
    url: str
    payers: Iterator[int]


@pytest.fixture(scope="module")
def hostile_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = pg.fresh_name()
    url = pg.create_database(pg_admin_url, name, template=template_db)
    yield url
    pg.drop_database(pg_admin_url, name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(hostile_db: str) -> AsyncIterator[World]:
    with fresh_chain() as chain, FaultProxy(chain.url) as proxy:
        env = daemon_env(proxy.url, X402_CLAIM_NOT_FOUND_GRACE_SECONDS="0")
        async with running_daemon(env, hostile_db):
            yield World(chain, proxy, hostile_db, iter(range(10**6)))


@pytest.fixture(autouse=True)
def no_rewrites_left(world: World) -> Iterator[None]:
    yield
    world.proxy.clear()


def pay(world: World, amount: int = 1_000_000, mine: int = 3) -> Paid:
    d = world.chain.devnet
    [payer] = d.new_accounts(1, seed=f"hostile-{next(world.payers)}")
    d.mint(payer, 10**9)
    tx = d.transfer(payer, PAYEE, amount)
    d.mine(mine)
    return Paid(tx, payer, amount)


async def valid_claim(world: World, paid: Paid) -> api.ClaimResult:
    _, token_hash = api.new_token()
    return await claim(world.url, paid.tx_hash, token_hash, proof(paid.signer, paid.tx_hash,
                                                                  token_hash))


async def still_serving(world: World) -> None:
    """A fresh payment is verified, claimed with a proof, and its token buys a request."""
    paid = pay(world, 1_500_000)
    token, token_hash = api.new_token()
    result = await claim(world.url, paid.tx_hash, token_hash,
                         proof(paid.signer, paid.tx_hash, token_hash))
    assert (result.status, result.reason) == ("issued", None)
    use = await consume(world.url, token, "/still-serving")
    assert use.allowed and use.requests_remaining == 1_499
    assert payments(world.url)[paid.tx_hash] == ("verified", 1_500_000)


# The daemon runs on the test's event loop: every database call of a test goes through a
# thread, or a row lock the daemon holds would wait for a loop that is blocked waiting for it.


async def submit(world: World, chain: str | None, tx: str | None, token_hash: str | None,
                 proof_: str | None) -> api.ClaimResult:
    def run() -> api.ClaimResult:
        with psycopg.connect(world.url, autocommit=True) as conn:
            return api.submit_claim(conn, chain, tx, token_hash, proof_)  # type: ignore[arg-type]

    return await asyncio.to_thread(run)


async def consume(url: str, token: str, endpoint: str = "/x", **fields) -> api.Consumption:
    def run() -> api.Consumption:
        with psycopg.connect(url, autocommit=True) as conn:
            return api.consume(conn, token, endpoint, fields.pop("method", "GET"),
                               fields.pop("status_code", 200), **fields)

    return await asyncio.to_thread(run)


def claim_rows(world: World) -> int:
    return query(world.url, "SELECT count(*) FROM verifier.claims")[0][0]


TX = "0x" + "ab" * 32
SIG = "5" * 88  # base58 of the right length, but no signature of anything
HASH = "cd" * 32
INJECT = "'; DROP TABLE x402_payments; --"

# (chain, tx_hash, token_hash, proof) -> the reason verifier.submit_claim refuses at once.
REFUSED_AT_ONCE = {
    "tx_short": ("base", "0x1234", HASH, None, "malformed_tx_hash"),
    "tx_oversized": ("base", "0x" + "ab" * 50_000, HASH, None, "malformed_tx_hash"),
    "tx_without_0x": ("base", "ab" * 32, HASH, None, "malformed_tx_hash"),
    "tx_not_hex": ("base", "0x" + "zz" * 32, HASH, None, "malformed_tx_hash"),
    "tx_trailing_newline": ("base", TX + "\n", HASH, None, "malformed_tx_hash"),
    "tx_sql": ("base", "0x' OR '1'='1", HASH, None, "malformed_tx_hash"),
    "tx_null": ("base", None, HASH, None, "malformed_tx_hash"),
    "solana_sig_not_base58": ("solana", "0OIl" * 22, HASH, None, "malformed_tx_hash"),
    "solana_sig_oversized": ("solana", "5" * 5_000, HASH, None, "malformed_tx_hash"),
    "chain_capitalised": ("Base", TX, HASH, None, "unsupported_chain"),
    "chain_trailing_space": ("base ", TX, HASH, None, "unsupported_chain"),
    "chain_empty": ("", TX, HASH, None, "unsupported_chain"),
    "chain_unknown": ("dogecoin", TX, HASH, None, "unsupported_chain"),
    "chain_sql": ("base" + INJECT, TX, HASH, None, "unsupported_chain"),
    "chain_null": (None, TX, HASH, None, "unsupported_chain"),
    "token_hash_uppercase": ("base", TX, HASH.upper(), None, "malformed_token_hash"),
    "token_hash_short": ("base", TX, HASH[:63], None, "malformed_token_hash"),
    "token_hash_sql": ("base", TX, INJECT, None, "malformed_token_hash"),
    "token_hash_is_a_plaintext_token": ("base", TX, "x402_" + "A" * 43, None,
                                        "malformed_token_hash"),
    "token_hash_null": ("base", TX, None, None, "malformed_token_hash"),
    "proof_oversized": ("base", TX, HASH, "0x" + "ab" * 8193, "malformed_proof"),
    "proof_sql": ("base", TX, HASH, "0x' OR 1=1 --", "malformed_proof"),
    "proof_base64url": ("base", TX, HASH, "q83v-_==", "malformed_proof"),
    "proof_padding_inside": ("base", TX, HASH, "q8==3v+/", "malformed_proof"),
    "nul_in_chain": ("ba\x00se", TX, HASH, None, "malformed_input"),
    "nul_in_tx_hash": ("base", TX[:10] + "\x00" + TX[11:], HASH, None, "malformed_input"),
    "nul_in_token_hash": ("base", TX, HASH[:5] + "\x00" + HASH[6:], None, "malformed_input"),
    "nul_in_proof": ("base", TX, HASH, "ab\x00cd", "malformed_input"),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_ONCE))
async def test_malformed_claims_are_refused_at_once_and_write_nothing(world, case):
    chain, tx, token_hash, proof_, reason = REFUSED_AT_ONCE[case]
    before = claim_rows(world)
    result = await submit(world, chain, tx, token_hash, proof_)
    assert (result.claim_id, result.status, result.reason) == (None, "rejected", reason)
    assert claim_rows(world) == before
    assert query(world.url, "SELECT to_regclass('public.x402_payments') IS NOT NULL") == [(True,)]
    await still_serving(world)


@pytest.mark.parametrize("chain, tx", [("ethereum", TX), ("solana", SIG)])
async def test_a_chain_this_daemon_does_not_watch_is_rejected_unsupported(world, chain, tx):
    result = await claim(world.url, tx, api.new_token()[1], None, chain=chain)
    assert (result.status, result.reason) == ("rejected", "unsupported_chain")
    await still_serving(world)


async def test_an_unknown_transaction_is_not_found(world):
    result = await claim(world.url, "0x" + secrets.token_hex(32), api.new_token()[1], None)
    assert (result.status, result.reason) == ("rejected", "not_found")
    await still_serving(world)


@pytest.mark.parametrize("forgery", ["proof_for_another_token", "right_key_other_message",
                                     "signature_of_64_bytes", "proof_by_a_stranger"])
async def test_forged_proofs_are_bad_proof_and_the_payer_can_still_claim(world, forgery):
    paid = pay(world)
    _, token_hash = api.new_token()
    message = rules.claim_message("base", paid.tx_hash, token_hash)
    stranger = world.chain.devnet.accounts[9]
    forged = {
        "proof_for_another_token": proof(paid.signer, paid.tx_hash, api.new_token()[1]),
        "right_key_other_message": sign_claim(paid.signer.key, message.replace(":v1:", ":v2:")),
        "signature_of_64_bytes": proof(paid.signer, paid.tx_hash, token_hash)[:-2],
        "proof_by_a_stranger": proof(stranger, paid.tx_hash, token_hash),
    }[forgery]
    result = await claim(world.url, paid.tx_hash, token_hash, forged)
    assert (result.status, result.reason) == ("rejected", "bad_proof")
    assert (await valid_claim(world, paid)).status == "issued"
    await still_serving(world)


async def test_a_replayed_claim_returns_the_existing_claim(world):
    paid = pay(world)
    _, token_hash = api.new_token()
    signed = proof(paid.signer, paid.tx_hash, token_hash)
    first = await claim(world.url, paid.tx_hash, token_hash, signed)
    rows = claim_rows(world)
    again = await submit(world, "base", paid.tx_hash, token_hash, signed)
    shouting = await submit(world, "base", "0x" + paid.tx_hash[2:].upper(), token_hash, None)
    assert first.status == "issued"
    assert (again.claim_id, again.status) == (first.claim_id, "issued")
    assert (shouting.claim_id, shouting.status) == (first.claim_id, "issued")
    assert claim_rows(world) == rows
    await still_serving(world)


async def test_a_used_token_hash_for_another_transaction_is_token_hash_in_use(world):
    one, two = pay(world), pay(world)
    _, token_hash = api.new_token()
    first = await claim(world.url, one.tx_hash, token_hash,
                        proof(one.signer, one.tx_hash, token_hash))
    rows = claim_rows(world)
    reuse = await submit(world, "base", two.tx_hash, token_hash,
                   proof(two.signer, two.tx_hash, token_hash))
    assert first.status == "issued"
    assert (reuse.claim_id, reuse.status, reuse.reason) == (None, "rejected", "token_hash_in_use")
    assert claim_rows(world) == rows
    assert (await valid_claim(world, two)).status == "issued"
    await still_serving(world)


async def test_a_yes_man_eip1271_contract_does_not_let_a_stranger_claim_an_eoa_payment(world):
    """EIP-1271 is asked of the payer's own address only, and only when it holds code: a
    stranger's contract that approves every signature has no say over an EOA's payment."""
    d = world.chain.devnet
    d.rpc("anvil_setCode", YES_MAN, YES_MAN_CODE)
    assert d.is_valid_signature(YES_MAN, "anything", "0x" + "00" * 65) == bytes.fromhex("1626ba7e")
    paid = pay(world)
    stranger = d.accounts[8]
    _, token_hash = api.new_token()
    stolen = await claim(world.url, paid.tx_hash, token_hash,
                         proof(stranger, paid.tx_hash, token_hash))
    assert (stolen.status, stolen.reason) == ("rejected", "bad_proof")
    assert query(world.url, "SELECT count(*) FROM x402_tokens t JOIN x402_payments p "
                            "ON p.id = t.payment_id WHERE p.tx_hash = %(tx)s",
                 {"tx": paid.tx_hash}) == [(0,)]
    assert (await valid_claim(world, paid)).status == "issued"
    await still_serving(world)


async def test_a_payment_from_a_yes_man_wallet_is_claimable_as_its_contract_decides(world):
    """The other side of the rule: when the payer is itself a contract, its isValidSignature
    is the authority, even a careless one (here it accepts anyone's signature)."""
    d = world.chain.devnet
    d.rpc("anvil_setCode", YES_MAN, YES_MAN_CODE)
    d.fund([YES_MAN], 10**18)
    d.mint(YES_MAN, 10**7)
    tx = d.transfer(YES_MAN, PAYEE, 1_000_000)
    d.mine(3)
    _, token_hash = api.new_token()
    anyone = d.accounts[7]
    result = await claim(world.url, tx, token_hash, proof(anyone, tx, token_hash))
    assert result.status == "issued"
    assert query(world.url, "SELECT from_address FROM x402_payments WHERE tx_hash = %(tx)s",
                 {"tx": tx}) == [(YES_MAN,)]
    await still_serving(world)


async def test_a_lookalike_token_paying_more_than_all_usdc_is_wrong_token(world):
    d = world.chain.devnet
    [payer] = d.new_accounts(1, seed="lookalike-whale")
    d.mint(payer, 2**256 - 1, token=world.chain.lookalike)
    tx = d.transfer(payer, PAYEE, 2**256 - 1, token=world.chain.lookalike)
    d.mine(3)
    _, token_hash = api.new_token()
    result = await claim(world.url, tx, token_hash, proof(payer, tx, token_hash))
    assert (result.status, result.reason) == ("rejected", "wrong_token")
    assert tx not in payments(world.url)
    await still_serving(world)


async def test_a_usdc_transfer_to_someone_else_is_wrong_recipient(world):
    d = world.chain.devnet
    [payer] = d.new_accounts(1, seed="pays-other")
    d.mint(payer, 10**9)
    tx = d.transfer(payer, OTHER, 5_000_000)
    d.mine(3)
    _, token_hash = api.new_token()
    result = await claim(world.url, tx, token_hash, proof(payer, tx, token_hash))
    assert (result.status, result.reason) == ("rejected", "wrong_recipient")
    assert tx not in payments(world.url)
    await still_serving(world)


async def test_a_plain_ether_transfer_to_the_payee_is_no_transfer(world):
    d = world.chain.devnet
    [payer] = d.new_accounts(1, seed="pays-ether")
    tx = d.send({"from": payer.address.lower(), "to": PAYEE, "value": hex(10**18)})
    d.mine(3)
    _, token_hash = api.new_token()
    result = await claim(world.url, tx, token_hash, proof(payer, tx, token_hash))
    assert (result.status, result.reason) == ("rejected", "no_transfer")
    await still_serving(world)


# --- hostile RPC answers, through the proxy --------------------------------------------------


async def test_a_receipt_for_another_transaction_is_never_paid_nor_not_paid(world):
    paid = pay(world)
    decoy = "0x" + "77" * 32
    world.proxy.rewrite("eth_getTransactionReceipt",
                        lambda r, _p: {**r, "transactionHash": decoy} if r else r)
    # The watcher must not record it first: this is about the claim's own lookup.
    world.proxy.rewrite("eth_getLogs", lambda r, _p: [e for e in r
                                                       if e["transactionHash"] != paid.tx_hash])
    _, token_hash = api.new_token()
    submitted = await submit(world, "base", paid.tx_hash, token_hash,
                             proof(paid.signer, paid.tx_hash, token_hash))
    await eventually(lambda: query(world.url, "SELECT attempts >= 3 FROM verifier.claims "
                                              "WHERE id = %(id)s", {"id": submitted.claim_id})
                     == [(True,)], within=30)
    assert query(world.url, "SELECT status, reason FROM verifier.claims WHERE id = %(id)s",
                 {"id": submitted.claim_id}) == [("waiting", "rpc_unavailable")]
    assert paid.tx_hash not in payments(world.url)
    world.proxy.clear()
    result = await asyncio.to_thread(_wait, world.url, submitted.claim_id)
    assert result.status == "issued"
    assert payments(world.url)[paid.tx_hash] == ("verified", paid.amount)
    await still_serving(world)


async def test_an_oversized_receipt_is_read_whole_and_right(world):
    """20,000 unrelated logs (about 8 MB of JSON) around the payment's own."""
    paid = pay(world, 3_210_000)
    junk = {"address": "0x" + "99" * 20, "topics": [TRANSFER_TOPIC, "0x" + "00" * 32,
                                                    "0x" + "00" * 12 + PAYEE[2:]],
            "data": "0x" + "ff" * 32, "blockNumber": "0x1", "transactionHash": paid.tx_hash,
            "logIndex": "0x0", "blockHash": "0x" + "00" * 32, "removed": False}
    world.proxy.rewrite("eth_getTransactionReceipt",
                        lambda r, _p: {**r, "logs": [junk] * 20_000 + r["logs"]} if r else r)
    world.proxy.rewrite("eth_getLogs", lambda r, _p: [e for e in r
                                                       if e["transactionHash"] != paid.tx_hash])
    result = await valid_claim(world, paid)
    assert result.status == "issued"
    assert payments(world.url)[paid.tx_hash] == ("verified", 3_210_000)
    await still_serving(world)


@pytest.mark.parametrize("head", ["-0x5", "0x" + "f" * 64, "12345", None, {"number": "0x1"}])
async def test_a_nonsensical_head_verifies_nothing_early(world, head):
    """eth_blockNumber says the head is negative, astronomically high, decimal, null or an
    object. An unconfirmed payment claimed meanwhile is not verified on the strength of it."""
    world.proxy.rewrite("eth_blockNumber", lambda _r, _p: head)
    paid = pay(world, mine=0)  # needs 2 more blocks
    _, token_hash = api.new_token()
    submitted = await submit(world, "base", paid.tx_hash, token_hash,
                             proof(paid.signer, paid.tx_hash, token_hash))
    # Decided to wait (unconfirmed, or the node's answers are refused), then several more
    # polls under the same nonsense, and still not verified.
    await eventually(lambda: query(world.url, "SELECT reason FROM verifier.claims WHERE id = "
                                              "%(id)s", {"id": submitted.claim_id})
                     in ([("unconfirmed",)], [("rpc_unavailable",)]), within=30)
    seen = world.proxy.rewritten["eth_blockNumber"]
    await eventually(lambda: world.proxy.rewritten["eth_blockNumber"] >= seen + 10, within=30)
    assert query(world.url, "SELECT status FROM verifier.claims WHERE id = %(id)s",
                 {"id": submitted.claim_id}) == [("waiting",)]
    assert payments(world.url).get(paid.tx_hash, ("absent",))[0] in ("absent", "pending")
    world.proxy.clear()
    world.chain.devnet.mine(2)
    assert (await asyncio.to_thread(_wait, world.url, submitted.claim_id)).status == "issued"
    await still_serving(world)


def _corrupt(tx: str, how: str):
    def edit(entry: dict) -> dict:
        if entry.get("transactionHash") != tx:
            return entry
        return {
            "empty_data": {**entry, "data": "0x"},
            "huge_data": {**entry, "data": "0x" + "ff" * 32},
            "two_topics": {**entry, "topics": entry["topics"][:2]},
            "topic_not_hex": {**entry, "topics": [*entry["topics"][:2], "0xnothex"]},
            "negative_block": {**entry, "blockNumber": "-0x1"},
            "block_out_of_range": {**entry, "blockNumber": hex(10**12)},
            "no_block_hash": {k: v for k, v in entry.items() if k != "blockHash"},
        }[how]

    return lambda result, _params: [edit(e) for e in result] if isinstance(result, list) \
        else result


@pytest.mark.parametrize("how", ["empty_data", "huge_data", "two_topics", "topic_not_hex",
                                 "negative_block", "block_out_of_range", "no_block_hash"])
async def test_a_corrupt_log_for_a_payment_neither_loses_nor_misrecords_it(world, how):
    """eth_getLogs answers with the payment's log mangled, five times over. The watcher must not
    record a wrong payment nor step past the right one: once the node answers properly, the
    payment is there with its true amount."""
    d = world.chain.devnet
    [payer] = d.new_accounts(1, seed=f"corrupt-{how}")
    d.mint(payer, 10**9)
    tx = d.send(d.transfer_request(payer, PAYEE, 2_222_222), wait=False)
    world.proxy.rewrite("eth_getLogs", _corrupt(tx, how), times=5)
    d._wait_mined(tx)
    await eventually(lambda: world.proxy.rewritten["eth_getLogs"] >= 5, within=30)
    assert payments(world.url).get(tx, ("absent", 0)) in (("absent", 0), ("pending", 2_222_222))
    d.mine(3)
    await eventually(lambda: payments(world.url).get(tx) == ("verified", 2_222_222), within=30)
    await still_serving(world)


async def test_receipt_logs_that_are_not_a_list_are_a_fault_not_no_transfer(world):
    paid = pay(world)
    world.proxy.rewrite("eth_getLogs", lambda r, _p: [e for e in r
                                                       if e["transactionHash"] != paid.tx_hash])
    world.proxy.rewrite("eth_getTransactionReceipt",
                        lambda r, _p: {**r, "logs": "0xdeadbeef"} if r else r, times=3)
    result = await valid_claim(world, paid)
    assert result.status == "issued"
    await still_serving(world)


def _wait(url: str, claim_id: int) -> api.ClaimResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return api.wait_for_claim(conn, claim_id, timeout=30)


# --- consume_request ---------------------------------------------------------------------------


async def test_consume_refuses_malformed_and_unknown_tokens_and_nul_bytes(world):
    paid = pay(world)
    token, token_hash = api.new_token()
    assert (await claim(world.url, paid.tx_hash, token_hash,
                        proof(paid.signer, paid.tx_hash, token_hash))).status == "issued"
    sql_hash = tuple(query(world.url, "SELECT allowed, reason FROM verifier.consume_request("
                                      "%(h)s, '/x', 'GET', 200)", {"h": INJECT})[0])
    unknown = await consume(world.url, "x402_" + secrets.token_urlsafe(32))
    nul_path = await consume(world.url, token, "/x\x00y")
    nul_agent = await consume(world.url, token, user_agent="evil\x00agent")
    left = await consume(world.url, token)
    assert sql_hash == (False, "malformed_token")
    assert (unknown.allowed, unknown.reason) == (False, "unknown_token")
    assert (nul_path.allowed, nul_path.reason) == (False, "malformed_input")
    assert (nul_agent.allowed, nul_agent.reason) == (False, "malformed_input")
    assert left.allowed and left.requests_remaining == 999  # the refusals took nothing
    assert query(world.url, "SELECT count(*) FROM x402_usage u JOIN x402_payments p ON "
                            "p.id = u.payment_id WHERE p.tx_hash = %(tx)s",
                 {"tx": paid.tx_hash}) == [(1,)]
    await still_serving(world)


@pytest.mark.parametrize("field, value, error", [
    ("status_code", 999, psycopg.errors.CheckViolation),
    ("response_time_ms", -5, psycopg.errors.CheckViolation),
    ("ip_address", "not-an-ip", psycopg.errors.InvalidTextRepresentation),
])
async def test_consume_with_an_impossible_value_fails_whole_and_takes_nothing(
        world, field, value, error):
    paid = pay(world)
    token, token_hash = api.new_token()
    assert (await claim(world.url, paid.tx_hash, token_hash,
                        proof(paid.signer, paid.tx_hash, token_hash))).status == "issued"
    args = {"endpoint": "/x", "method": "GET", "status_code": 200, "response_time_ms": 5,
            "ip_address": "203.0.113.7", field: value}
    with pytest.raises(DatabaseError) as refused:
        await consume(world.url, token, **args)
    assert isinstance(refused.value.__cause__, error)
    after = await consume(world.url, token)
    assert after.allowed and after.requests_remaining == 999
    await still_serving(world)


async def test_sql_in_usage_fields_is_stored_as_text(world):
    paid = pay(world)
    token, token_hash = api.new_token()
    assert (await claim(world.url, paid.tx_hash, token_hash,
                        proof(paid.signer, paid.tx_hash, token_hash))).status == "issued"
    use = await consume(world.url, token, "/x" + INJECT, user_agent=INJECT)
    assert use.allowed
    assert query(world.url, "SELECT endpoint, user_agent FROM x402_usage WHERE endpoint LIKE "
                            "'/x''%%'") == [("/x" + INJECT, INJECT)]
    assert query(world.url, "SELECT count(*) >= 1 FROM x402_payments") == [(True,)]
    await still_serving(world)


# --- configuration -----------------------------------------------------------------------------


def base_env(url: str, **overrides: str) -> dict[str, str]:
    return {**daemon_env(url), "DATABASE_URL": "postgresql://unused", **overrides}


@pytest.mark.parametrize("variable, value", [
    ("X402_BASE_PAYMENT_ADDRESS", "0x1234"),
    ("X402_BASE_PAYMENT_ADDRESS", "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"),
    ("X402_BASE_PAYMENT_ADDRESS", "0x2222222222222222222222222222222222222222'--"),
    ("X402_BASE_PAYMENT_ADDRESS", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB49"),  # bad EIP-55
    ("X402_BASE_RPC_URLS", "ftp://127.0.0.1:8545"),
    ("X402_BASE_USDC_ADDRESS", "USDC"),
    ("X402_CHAINS", "base,dogecoin"),
])
async def test_a_bad_setting_is_a_config_error_naming_its_variable(world, variable, value):
    with pytest.raises(ConfigError) as refused:
        config.load(base_env(world.chain.url, **{variable: value}))
    assert str(refused.value).startswith(variable + ":")
    await still_serving(world)


async def test_a_base_rpc_that_is_really_another_chain_is_refused_naming_it(world, database_url):
    with Anvil(chain_id=1) as ethereum:
        impostor = ethereum.url
        cfg = config.load({**daemon_env(f"{world.chain.url},{impostor}"),
                           "DATABASE_URL": database_url})
        with pytest.raises(ConfigError) as refused:
            async with Daemon.open(cfg, database_url):
                pass
    message = str(refused.value)
    assert message.startswith("X402_BASE_RPC_URLS: " + impostor)
    assert "chain id 1, expected 8453" in message
    await still_serving(world)


async def test_a_usdc_address_without_code_is_refused_at_start(world, database_url):
    cfg = config.load({**daemon_env(world.chain.url), "DATABASE_URL": database_url,
                       "X402_BASE_USDC_ADDRESS": "0x" + "12" * 20})
    with pytest.raises(ConfigError) as refused:
        async with Daemon.open(cfg, database_url):
            pass
    assert str(refused.value).startswith("X402_BASE_USDC_ADDRESS: no contract code")
    await still_serving(world)



# --- a hostile Solana node -----------------------------------------------------------------------


async def test_a_garbled_signature_list_does_not_stop_the_solana_watcher(database_url):
    """getSignaturesForAddress entries without a slot, or not even objects: the watcher fails
    that poll, logs it, and carries on; the payment is verified once the node answers sanely."""
    from verifier.devnet.solana_server import SolanaServer
    from verifier.devnet.solana_tokens import TokenKit

    with SolanaServer() as node, FaultProxy(node.url) as proxy:
        kit = TokenKit(node)
        kit.create_usdc()
        payer, payee = kit.wallet(), kit.wallet()
        kit.fund(payer.pubkey(), 10**9)
        kit.create_ata(payee.pubkey())
        start = node.slot + 1
        garbage = itertools.cycle([[{"signature": "1" * 88}], ["not an object"],
                                   {"signature": None}])
        proxy.rewrite("getSignaturesForAddress", lambda _r, _p: next(garbage), times=6)
        env = {"X402_CHAINS": "solana", "X402_SOLANA_RPC_URLS": proxy.url,
               "X402_SOLANA_PAYMENT_ADDRESS": str(payee.pubkey()),
               "X402_SOLANA_START_BLOCK": str(start), "X402_POLL_INTERVAL": "0.05",
               "X402_METRICS_ADDR": "off", "X402_LOG_FORMAT": "console"}
        sig = kit.transfer(payer, payee.pubkey(), 1_234_000)
        async with running_daemon(env, database_url) as daemon:
            await eventually(lambda: proxy.rewritten["getSignaturesForAddress"] >= 6)
            await eventually(lambda: payments(database_url, "solana").get(sig)
                             == ("verified", 1_234_000))
            assert all(w.status.active for w in daemon.watchers)
