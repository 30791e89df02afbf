"""The EVM scan asks for the AuthorizationUsed logs of the payers it found, and only then.

A scripted stand-in for the RPC client (test code: the adapter calls `pool.call` and `batch_on`)
answers the scan's batches; what the adapter asked for and what it made of the answers is checked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from verifier import config
from verifier.chains import evm_decode
from verifier.chains.evm import EvmAdapter
from verifier.errors import RetriableRpcError
from verifier.models import ChainView, Cursor
from verifier.rpc.failover import Endpoint

USDC = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
PAYEE = "0x2222222222222222222222222222222222222222"
PAYER = "0x4444444444444444444444444444444444444444"
TX = "0x" + "ab" * 32
BLOCK_5 = "0x" + "05" * 32
CFG = config.load({"X402_CHAINS": "base", "X402_BASE_RPC_URLS": "http://unused:8545",
                   "X402_BASE_PAYMENT_ADDRESS": PAYEE}).chains["base"]


class _Pool:
    async def call(self, label: str, op: Any, **_: Any) -> Any:
        return await op(ENDPOINT)


class ScriptedRpc:
    """Answers the adapter's batches: eth_chainId with Base's, each block by its number, and
    the eth_getLogs calls in order (the scan's Transfer logs, then AuthorizationUsed logs)."""

    def __init__(self, *logs: list[Any], blocks: dict[int, str] | None = None) -> None:
        self.logs = list(logs)
        self.blocks = {5: BLOCK_5, 9: "0x" + "09" * 32, **(blocks or {})}
        self.asked: list[list[tuple[str, list[Any]]]] = []
        self.pool = _Pool()

    async def batch_on(self, endpoint: Endpoint, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.asked.append(calls)
        out: list[Any] = []
        for method, params in calls:
            if method == "eth_chainId":
                out.append(hex(8453))
            elif method == "eth_getBlockByNumber":
                number = int(params[0], 16)
                out.append({"number": params[0], "hash": self.blocks[number]})
            elif method == "eth_getLogs":
                out.append(self.logs.pop(0))
            else:
                raise AssertionError(f"unexpected call {method}")
        return out

    def log_queries(self) -> list[dict[str, Any]]:
        return [params[0] for calls in self.asked for method, params in calls
                if method == "eth_getLogs"]


ENDPOINT = Endpoint("http://unused:8545", 0, asyncio.Semaphore(1))


def log(topics: list[str], index: int, data: str = "0x", block_hash: str = BLOCK_5) -> dict:
    return {"address": USDC, "blockNumber": hex(5), "blockHash": block_hash,
            "transactionHash": TX, "logIndex": hex(index), "removed": False, "data": data,
            "topics": topics}


TRANSFER = log([evm_decode.TRANSFER_TOPIC, evm_decode.topic_for(PAYER),
                evm_decode.topic_for(PAYEE)], 1, "0x" + f"{1_000:064x}")


def used(block_hash: str = BLOCK_5) -> dict:
    return log([evm_decode.AUTHORIZATION_USED_TOPIC, evm_decode.topic_for(PAYER), "0x" + "01" * 32],
               0, block_hash=block_hash)


async def scan(rpc: ScriptedRpc):
    adapter = EvmAdapter(CFG, rpc)  # type: ignore[arg-type]
    return await adapter.scan([Cursor("base", "", 0, None)], ChainView(head=9, final=9))


async def test_a_paying_range_asks_for_its_payers_authorizations_over_the_paying_blocks():
    rpc = ScriptedRpc([TRANSFER], [used()])
    result = await scan(rpc)

    [payment] = result.payments
    assert payment.exact and payment.amount == 1_000
    [_transfers, query] = rpc.log_queries()
    assert query == {"fromBlock": "0x5", "toBlock": "0x5", "address": USDC,
                     "topics": [evm_decode.AUTHORIZATION_USED_TOPIC,
                                [evm_decode.topic_for(PAYER)]]}


async def test_a_range_that_paid_nothing_asks_nothing_more():
    rpc = ScriptedRpc([])
    assert (await scan(rpc)).payments == []
    assert len(rpc.log_queries()) == 1


async def test_authorizations_from_another_block_than_the_transfers_are_read_again():
    rpc = ScriptedRpc([TRANSFER], [used("0x" + "66" * 32)])
    with pytest.raises(RetriableRpcError, match="reorg in between"):
        await scan(rpc)


async def test_a_malformed_authorization_answer_is_read_again():
    broken = used()
    broken["topics"] = broken["topics"][:2]
    rpc = ScriptedRpc([TRANSFER], [broken])
    with pytest.raises(RetriableRpcError, match="AuthorizationUsed"):
        await scan(rpc)
