"""The EVM harness itself: if these fail, the daemon's anvil tests prove nothing."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from verifier.devnet import solc
from verifier.devnet.anvil import Anvil, AnvilError, rpc
from verifier.devnet.evm import (
    ERC1271_INVALID,
    ERC1271_MAGIC,
    TRANSFER_TOPIC,
    USDC_BASE,
    USDC_ETHEREUM,
    DevnetError,
    EvmDevnet,
    eip191_hash,
    sign_claim,
    topic_address,
)

PAYEE = "0x2222222222222222222222222222222222222222"
OTHER = "0x3333333333333333333333333333333333333333"
MARKER = "0x4444444444444444444444444444444444444444"


def transfers_in(receipt: dict) -> list[dict]:
    return [log for log in receipt["logs"] if log["topics"][0] == TRANSFER_TOPIC]


def test_usdc_sits_at_the_canonical_base_address_with_6_decimals(devnet: EvmDevnet) -> None:
    assert devnet.chain_id == 8453
    assert devnet.usdc == USDC_BASE
    assert not devnet.is_test_usdc()  # Circle's FiatTokenV2_2 (tests/evm/test_usdc.py)
    assert devnet.is_test_usdc(devnet.lookalike)
    usdc = devnet.token()
    assert usdc.functions.decimals().call() == 6
    assert usdc.functions.name().call() == "USD Coin"
    assert usdc.functions.symbol().call() == "USDC"


def test_the_lookalike_looks_like_usdc_from_another_address(devnet: EvmDevnet) -> None:
    assert devnet.lookalike is not None and devnet.lookalike != USDC_BASE
    lookalike = devnet.token(devnet.lookalike)
    assert lookalike.functions.symbol().call() == "USDC"
    assert lookalike.functions.name().call() == "USD Coin"
    assert lookalike.functions.decimals().call() == 6

    payer = devnet.accounts[1]
    devnet.mint(payer, 10, token=devnet.lookalike)
    tx = devnet.transfer(payer, PAYEE, 10, token=devnet.lookalike)

    [log] = transfers_in(devnet.receipt(tx))
    assert log["address"] == devnet.lookalike
    assert devnet.transfer_logs(to=PAYEE) == []
    assert devnet.balance_of(PAYEE) == 0


def test_a_transfer_emits_exactly_one_transfer_log(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    devnet.mint(payer, 5_000_000)

    tx = devnet.transfer(payer, PAYEE, 1_234_567)

    assert tx.startswith("0x") and len(tx) == 66 and tx == tx.lower()
    receipt = devnet.receipt(tx)
    assert receipt["status"] == "0x1"
    [log] = receipt["logs"]
    assert log["address"] == USDC_BASE
    assert log["topics"] == [TRANSFER_TOPIC, topic_address(payer), topic_address(PAYEE)]
    assert int(log["data"], 16) == 1_234_567
    assert devnet.balance_of(PAYEE) == 1_234_567
    assert devnet.balance_of(payer) == 5_000_000 - 1_234_567
    # The daemon's query shape: logs of USDC, Transfer, any sender, to the payee.
    [found] = devnet.transfer_logs(to=PAYEE)
    assert found["transactionHash"] == tx


def test_a_reverted_payment_is_mined_with_status_0_and_no_logs(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    devnet.mint(payer, 1_000_000)

    tx = devnet.reverted_payment(payer, PAYEE, 500_000)

    receipt = devnet.receipt(tx)
    assert receipt["status"] == "0x0"
    assert receipt["logs"] == []
    assert devnet.transfer_logs(to=PAYEE) == []
    assert devnet.balance_of(PAYEE) == 0
    assert devnet.balance_of(payer) == 1_000_000
    # It did pay before reverting: the revert is the custom error raised after transferFrom
    # succeeded (a failed transferFrom would revert with "insufficient allowance" instead).
    selector = keccak(text="PaidThenReverted(address,uint256)")[:4].hex()
    call = {"from": payer.address.lower(), "to": devnet.transaction(tx)["to"],
            "data": devnet.transaction(tx)["input"]}  # fmt: skip
    with pytest.raises(DevnetError, match=selector):
        devnet.rpc("eth_call", call, "latest")


def test_batch_pay_to_the_same_payee_twice_gives_two_logs_in_one_tx(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    devnet.mint(payer, 1_000_000)

    tx = devnet.batch_pay(payer, [(PAYEE, 300_000), (OTHER, 1), (PAYEE, 200_000)])

    sent = devnet.transaction(tx)
    assert sent["from"] == payer.address.lower()
    assert sent["to"] != USDC_BASE and devnet.code(sent["to"]) != "0x"
    to_payee = devnet.transfer_logs(to=PAYEE)
    assert [int(log["data"], 16) for log in to_payee] == [300_000, 200_000]
    assert {log["transactionHash"] for log in to_payee} == {tx}
    assert len({log["logIndex"] for log in to_payee}) == 2
    assert all(log["topics"][1] == topic_address(payer) for log in to_payee)
    assert len(transfers_in(devnet.receipt(tx))) == 3
    assert devnet.balance_of(PAYEE) == 500_000


def test_the_1271_wallet_accepts_its_owner_signature_only(devnet: EvmDevnet) -> None:
    owner, stranger = devnet.accounts[3], devnet.accounts[4]
    wallet = devnet.wallet_1271(owner)
    message = "x402-claim:v1:base:0x" + "ab" * 32 + ":" + "cd" * 32
    signature = sign_claim(owner.key, message)

    assert devnet.is_valid_signature(wallet, message, signature) == ERC1271_MAGIC
    assert devnet.is_valid_signature(wallet, message, sign_claim(stranger.key, message)) == (
        ERC1271_INVALID
    )
    assert devnet.is_valid_signature(wallet, message + "x", signature) == ERC1271_INVALID
    assert devnet.is_valid_signature(wallet, message, "0x" + "11" * 65) == ERC1271_INVALID
    assert devnet.is_valid_signature(wallet, message, "0x") == ERC1271_INVALID
    # eip191_hash is the digest the signature is over (checked by recovering the signer).
    assert Account._recover_hash(eip191_hash(message), signature=signature) == owner.address


def test_the_1271_wallet_pays_from_its_own_address(devnet: EvmDevnet) -> None:
    owner, stranger = devnet.accounts[3], devnet.accounts[4]
    wallet = devnet.wallet_1271(owner)
    devnet.mint(wallet, 1_000_000)

    tx = devnet.wallet_pay(wallet, owner, PAYEE, 250_000)

    assert devnet.transaction(tx)["from"] == owner.address.lower()
    [log] = transfers_in(devnet.receipt(tx))
    assert log["topics"][1:] == [topic_address(wallet), topic_address(PAYEE)]
    assert devnet.balance_of(wallet) == 750_000
    with pytest.raises(DevnetError, match=r"failed \(status 0x0\)"):
        devnet.wallet_pay(wallet, stranger, PAYEE, 1)


@pytest.mark.parametrize("depth", [1, 3])
def test_reorg_replaces_the_last_d_blocks_and_drops_their_transactions(
    devnet: EvmDevnet, depth: int
) -> None:
    """What anvil_reorg(depth) does (anvil 1.7.1), which the daemon's reorg tests rely on.

    - The head keeps its number H; blocks H-depth+1..H get new hashes and the first new one's
      parent is the unchanged block H-depth. Blocks up to H-depth keep their hashes.
    - The new blocks are empty: every transaction of the replaced blocks is gone. Its receipt
      and its transaction lookups return null, eth_getLogs no longer returns its logs, its
      state changes are undone (balances, sender nonce).
    - Dropped transactions are not put back in the pool: nothing re-mines them later.
    """
    payer = devnet.accounts[1]
    devnet.mint(payer, 1_000_000)
    kept = devnet.transfer(payer, PAYEE, 1)
    dropped = []
    for _ in range(depth):
        dropped.append(devnet.transfer(payer, PAYEE, 10))
    head = devnet.head()
    assert int(devnet.receipt(dropped[0])["blockNumber"], 16) == head - depth + 1
    kept_receipt = devnet.receipt(kept)
    nonce_before = devnet.rpc("eth_getTransactionCount", payer.address.lower(), "latest")
    before = devnet.block_hashes(0, head)

    devnet.reorg(depth)

    assert devnet.head() == head
    after = devnet.block_hashes(0, head)
    common = head - depth
    assert after[: common + 1] == before[: common + 1]
    assert all(new != old for new, old in zip(after[common + 1 :], before[common + 1 :], strict=True))
    assert devnet.block(common + 1)["parentHash"] == after[common]
    assert all(devnet.block(n)["transactions"] == [] for n in range(common + 1, head + 1))
    for tx in dropped:
        assert devnet.receipt(tx) is None
        assert devnet.transaction(tx) is None
    assert devnet.receipt(kept) == kept_receipt
    assert [log["transactionHash"] for log in devnet.transfer_logs(to=PAYEE)] == [kept]
    assert devnet.balance_of(PAYEE) == 1
    nonce_after = devnet.rpc("eth_getTransactionCount", payer.address.lower(), "latest")
    assert int(nonce_after, 16) == int(nonce_before, 16) - depth
    assert devnet.rpc("txpool_status") == {"pending": "0x0", "queued": "0x0"}
    devnet.mine(2)
    assert all(devnet.receipt(tx) is None for tx in dropped)


def test_reorg_can_reinclude_a_signed_transaction_and_add_new_ones(devnet: EvmDevnet) -> None:
    """A signed raw transaction given to reorg keeps its hash and moves to a new block."""
    signer = devnet.new_accounts(1, seed="reinclude")[0]
    other = devnet.accounts[2]
    devnet.mint(signer, 1_000)
    devnet.mint(other, 1_000)
    raw = devnet.sign_transfer(signer, PAYEE, 7)
    tx = devnet.send_raw(raw)
    old = devnet.receipt(tx)
    devnet.mine(1)

    devnet.reorg(2, include=[(devnet.transfer_request(other, PAYEE, 5), 0), (raw, 1)])

    new = devnet.receipt(tx)
    assert new["status"] == "0x1"
    assert int(new["blockNumber"], 16) == int(old["blockNumber"], 16) + 1
    assert new["blockHash"] != old["blockHash"]
    logs = devnet.transfer_logs(to=PAYEE)
    assert [int(log["data"], 16) for log in logs] == [5, 7]
    assert logs[1]["transactionHash"] == tx and logs[1]["blockHash"] == new["blockHash"]
    assert devnet.balance_of(PAYEE) == 12


def test_with_automine_off_a_transfer_waits_for_mine(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    devnet.mint(payer, 100)
    devnet.set_automine(False)
    head = devnet.head()

    tx = devnet.transfer(payer, PAYEE, 100)

    assert devnet.receipt(tx) is None and devnet.head() == head
    assert devnet.mine(1) == head + 1
    assert int(devnet.receipt(tx)["blockNumber"], 16) == head + 1


def test_snapshot_and_revert_restore_chain_and_state(devnet: EvmDevnet) -> None:
    head = devnet.head()
    snapshot = devnet.snapshot()
    devnet.mint(PAYEE, 42)
    devnet.mine(3)

    devnet.revert(snapshot)

    assert devnet.head() == head
    assert devnet.balance_of(PAYEE) == 0
    with pytest.raises(DevnetError, match="refused"):
        devnet.revert(snapshot)


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_starts_from_the_same_baseline(devnet: EvmDevnet, evm_baseline, run) -> None:
    # Whichever of the two runs second finds what the other left behind undone.
    assert devnet.head() == evm_baseline.head
    assert devnet.balance_of(MARKER) == 0
    assert devnet.automine()
    devnet.mint(MARKER, 1)
    devnet.mine(5)
    devnet.set_automine(False)


def test_bulk_transfers_fill_the_requested_blocks(devnet: EvmDevnet) -> None:
    payers = devnet.new_accounts(20)
    devnet.mint_many([(payer, 10**12) for payer in payers])
    payees = [PAYEE, OTHER]
    transfers = [(payers[i % 20], payees[i % 2], 1_000 + i) for i in range(300)]
    first = devnet.head() + 1

    hashes = devnet.bulk_transfers(transfers, per_block=5)

    assert len(set(hashes)) == 300
    assert devnet.head() == first + 59
    blocks = devnet.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(first, first + 60)])
    for index, block in enumerate(blocks):
        assert set(block["transactions"]) == set(hashes[5 * index : 5 * index + 5])
    to_payee = devnet.transfer_logs(first, to=PAYEE)
    assert sum(int(log["data"], 16) for log in to_payee) == sum(1_000 + i for i in range(0, 300, 2))
    assert devnet.automine()


def test_bulk_transfers_notice_a_transfer_that_failed(devnet: EvmDevnet) -> None:
    rich, poor = devnet.new_accounts(2, seed="bulk-check")
    devnet.mint(rich, 100)

    with pytest.raises(DevnetError, match="1 of 2 transfers left no log"):
        devnet.bulk_transfers([(rich, PAYEE, 1), (poor, PAYEE, 1)])


def test_ethereum_devnet_has_chain_id_1_and_usdc_at_its_address(fresh_devnet) -> None:
    devnet = fresh_devnet("ethereum")

    assert devnet.chain_id == 1
    assert devnet.usdc == USDC_ETHEREUM
    assert devnet.token().functions.decimals().call() == 6
    assert devnet.code(USDC_BASE) == "0x"


def test_anvil_that_cannot_start_says_why() -> None:
    with pytest.raises(AnvilError, match="--no-such-flag"):
        Anvil(extra_args=["--no-such-flag"]).start()


def test_anvil_stop_ends_the_process() -> None:
    node = Anvil(chain_id=31337).start()
    url, process = node.url, node.process
    assert int(rpc(url, "eth_chainId"), 16) == 31337

    node.stop()

    assert process is not None and process.poll() is not None
    with pytest.raises(OSError):
        rpc(url, "eth_chainId", timeout=1.0)


def test_compiled_contracts_come_from_the_cache_without_node(monkeypatch) -> None:
    solc.contracts()  # fills the cache if this checkout never compiled

    def no_node(_input: object) -> dict:
        raise AssertionError("compiled again instead of using the cache")

    monkeypatch.setattr(solc, "_run_solc", no_node)
    sources = {p.name: p.read_text() for p in sorted(solc.CONTRACTS_DIR.glob("*.sol"))}
    assert solc.compile_sources(sources)["TestUSDC"] == solc.artifact("TestUSDC")
    sources["TestUSDC.sol"] += "\n// changed\n"
    with pytest.raises(AssertionError, match="compiled again"):
        solc.compile_sources(sources)


def test_a_compile_error_is_reported_with_solc_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(solc, "CACHE_DIR", tmp_path)
    broken = "pragma solidity ^0.8.20;\ncontract Broken { function f() public { undefined_name; } }\n"

    with pytest.raises(solc.SolcError, match="Undeclared identifier"):
        solc.compile_sources({"Broken.sol": broken})
    assert list(tmp_path.iterdir()) == []



def test_a_transfer_that_fails_is_an_error_not_a_silent_status_0(devnet: EvmDevnet) -> None:
    payer = devnet.accounts[1]
    devnet.mint(payer, 10)

    with pytest.raises(DevnetError, match=r"failed \(status 0x0\)"):
        devnet.transfer(payer, PAYEE, 11)
