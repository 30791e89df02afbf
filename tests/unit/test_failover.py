"""Failover and retry policy of the endpoint pool, driven by operations that fail on purpose."""

import asyncio
import time

import pytest

from verifier.errors import FinalRpcError, RetriableRpcError
from verifier.rpc.failover import EndpointPool, RetryPolicy

FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.002, cooldown=0.05,
                   max_cooldown=0.05, max_retry_after=0.05)


def pool(*urls: str) -> EndpointPool:
    return EndpointPool("base", urls, concurrency=2, policy=FAST)


async def test_a_final_error_is_not_retried():
    p = pool("http://a")
    calls = []

    async def op(endpoint):
        calls.append(endpoint.url)
        raise FinalRpcError("invalid params")

    with pytest.raises(FinalRpcError):
        await p.call("eth_call", op)
    assert calls == ["http://a"]


async def test_retriable_errors_are_retried_until_the_attempts_run_out():
    p = pool("http://a")
    calls = []

    async def op(endpoint):
        calls.append(endpoint.url)
        raise RetriableRpcError("timed out")

    with pytest.raises(RetriableRpcError):
        await p.call("eth_blockNumber", op)
    assert len(calls) == FAST.attempts


async def test_failover_to_the_second_then_back_to_the_first_after_its_cooldown():
    p = pool("http://a", "http://b")
    first_down = True
    served = []

    async def op(endpoint):
        if endpoint.url == "http://a" and first_down:
            raise RetriableRpcError("connection refused")
        served.append(endpoint.url)
        return endpoint.url

    assert await p.call("eth_blockNumber", op) == "http://b"
    assert await p.call("eth_blockNumber", op) == "http://b"  # a is cooling down
    first_down = False
    await asyncio.sleep(FAST.cooldown + 0.01)
    assert await p.call("eth_blockNumber", op) == "http://a"  # the preferred one is back
    assert served == ["http://b", "http://b", "http://a"]


async def test_retry_after_is_honoured_and_capped():
    p = pool("http://a")
    attempts = []

    async def op(endpoint):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RetriableRpcError("HTTP 429", code=429, retry_after=0.03)
        return "ok"

    assert await p.call("eth_getLogs", op) == "ok"
    assert attempts[1] - attempts[0] >= 0.03


async def test_errors_name_the_endpoint_that_failed():
    p = pool("http://a")

    async def op(endpoint):
        raise FinalRpcError("nope")

    with pytest.raises(FinalRpcError) as err:
        await p.call("eth_call", op)
    assert err.value.endpoint == "#1 http://a"  # named by position and origin, never the URL


async def test_the_client_fails_over_from_a_dead_endpoint_and_honours_retry_after():
    """The pool on top of the one client: a refused connection fails over to the next URL; an
    HTTP 429 there waits its Retry-After (0.03 s) before the same call is asked again."""
    from aiohttp import web

    from verifier.rpc.client import EVM, RpcClient

    seen: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.Response(status=429, headers={"Retry-After": "0.03"})
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": "0x2105"})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rpc = RpcClient("base", ["http://127.0.0.1:9/", f"http://127.0.0.1:{port}/"], codes=EVM,
                    policy=FAST)
    await rpc.open()
    try:
        assert await rpc.request("eth_chainId", []) == "0x2105"
    finally:
        await rpc.close()
        await runner.cleanup()
    assert rpc.endpoints[0].stats["errors"] >= 1 and len(seen) == 2
    assert seen[1] - seen[0] >= 0.03


async def test_an_endpoint_on_another_chain_is_dropped_and_only_a_chain_checked_call_revives_it():
    from verifier.errors import WrongChainError

    p = pool("http://a", "http://b")
    switched = {"http://a"}
    asked = []

    async def checked(endpoint):  # like an EVM batch carrying eth_chainId
        asked.append(endpoint.url)
        if endpoint.url in switched:
            raise WrongChainError("serves chain id 1, expected 8453")
        return endpoint.url

    async def unchecked(endpoint):  # like a Solana getTransaction
        asked.append(endpoint.url)
        return endpoint.url

    assert await p.call("batch", checked, checks_chain=True) == "http://b"
    assert p.endpoints[0].foreign is not None and p.endpoints[1].foreign is None
    await asyncio.sleep(FAST.max_cooldown + 0.01)
    asked.clear()
    assert await p.call("getTransaction", unchecked) == "http://b"  # never a, even cooled down
    assert asked == ["http://b"]
    switched.add("http://b")
    asked.clear()
    with pytest.raises(WrongChainError):  # nowhere on the chain: said at once, not retried
        await p.call("batch", checked, checks_chain=True)
    assert len(asked) <= 2
    with pytest.raises(WrongChainError, match="every RPC endpoint serves another chain"):
        await p.call("getTransaction", unchecked)
    switched.clear()
    await asyncio.sleep(FAST.max_cooldown + 0.01)
    assert await p.call("batch", checked, checks_chain=True) == "http://a"
    assert [e.foreign for e in p.endpoints] == [None, "serves chain id 1, expected 8453"]
