"""Where RPC answers arrive they are sorted once, by one classifier for every chain: result,
retriable fault or final error. The same fault is the same class on EVM and Solana; only the
JSON-RPC code table differs per chain kind."""

import json

import aiohttp
import pytest
from aiohttp import web

from verifier.errors import (
    BatchRefusedError,
    ExecutionReverted,
    FinalRpcError,
    RangeTooLargeError,
    RetriableRpcError,
    SlotSkippedError,
)
from verifier.rpc import classify
from verifier.rpc.classify import EVM, SOLANA
from verifier.rpc.client import RpcClient
from verifier.rpc.failover import RetryPolicy

BOTH = pytest.mark.parametrize("codes", [EVM, SOLANA], ids=lambda c: c.kind)
R, F = RetriableRpcError, FinalRpcError

# --- the same on every chain ---------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("status,kind", [
    (429, R), (408, R), (500, R), (502, R), (503, R), (504, R),
    (400, F), (401, F), (403, F), (404, F), (413, F),
])
def test_http_status(codes, status, kind):
    assert type(classify.http_error(status, None, "m", "u")) is kind


@pytest.mark.parametrize("status", [200, 204, 302])
def test_a_status_below_400_lets_the_body_be_read(status):
    assert classify.http_error(status, None, "m", "u") is None


def test_http_429_carries_retry_after():
    err = classify.http_error(429, "3", "m", "u")
    assert isinstance(err, RetriableRpcError) and err.retry_after == 3.0 and err.code == 429


@pytest.mark.parametrize("exc", [
    TimeoutError(), aiohttp.ClientConnectionError("reset"),
    aiohttp.ServerDisconnectedError(), ConnectionResetError(), OSError("unreachable"),
    RuntimeError("something no one foresaw"),  # unknown: retriable too, see transport_error
])
def test_every_transport_exception_is_retriable(exc):
    assert type(classify.transport_error(exc, "m", "u")) is RetriableRpcError


@BOTH
@pytest.mark.parametrize("answer", [
    "garbage", 7, None, [], {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "2.0", "id": 1, "error": "boom"},
    {"jsonrpc": "2.0", "id": 1, "error": {"message": "no code"}},
    {"jsonrpc": "2.0", "id": 1, "error": {"code": "-32000", "message": "code is text"}},
])
def test_an_unreadable_answer_is_retriable(codes, answer):
    with pytest.raises(RetriableRpcError):
        classify.result(answer, "eth_blockNumber", "u", codes)


@BOTH
@pytest.mark.parametrize("raw", [b"<html>502</html>", b'{"result": 0x12,,}', b"\x00\xff\xfe"])
def test_a_body_that_is_not_json_is_retriable(codes, raw):
    with pytest.raises(RetriableRpcError):
        classify.decode(raw, "m", "u")


@BOTH
def test_a_null_result_passes_through(codes):
    assert classify.result({"jsonrpc": "2.0", "id": 1, "result": None}, "m", "u", codes) is None


@BOTH
@pytest.mark.parametrize("answers", [
    {"jsonrpc": "2.0", "id": 0, "result": "0x1"},  # one object, no error
    "garbage",
    [{"jsonrpc": "2.0", "id": 0, "result": 1}],  # wrong length
    [{"jsonrpc": "2.0", "id": 0, "result": 1}, {"jsonrpc": "2.0", "result": 2}],  # id missing
    [{"jsonrpc": "2.0", "id": 0, "result": 1}, {"jsonrpc": "2.0", "id": 0, "result": 2}],
])
def test_an_unreadable_batch_is_retriable(codes, answers):
    with pytest.raises(RetriableRpcError):
        classify.batch_items(answers, ["a", "b"], "u", codes)


@BOTH
def test_batch_items_are_matched_by_id_and_errors_kept_in_place(codes):
    answers = [{"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}},
               {"jsonrpc": "2.0", "id": 0, "result": "first"}]
    first, second = classify.batch_items(answers, ["a", "b"], "u", codes)
    assert first == "first" and type(second) is FinalRpcError


@BOTH
@pytest.mark.parametrize("code,kind", [(-32600, BatchRefusedError), (-32005, R)])
def test_a_batch_answered_with_one_error(codes, code, kind):
    with pytest.raises(kind):
        classify.batch_items({"jsonrpc": "2.0", "id": None, "error": {"code": code,
                                                                      "message": "no"}},
                             ["a", "b"], "u", codes)


# --- the JSON-RPC code table, per chain kind -------------------------------------------------

RANGE_MESSAGES = [
    "query returned more than 10000 results",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
    "block range is too large",
    "eth_getLogs range is too large, max is 1k blocks",
]
S = SlotSkippedError
# (method, code, message, EVM's class, Solana's class)
CODES = [
    ("m", -32005, "limit exceeded", R, R),
    ("m", -32603, "internal error", R, R),
    ("m", 429, "Too many requests", R, R),
    ("m", -32001, "too many requests for a specific RPC call", R, R),
    ("m", -32099, "rate limit reached", R, R),
    ("m", -32000, "header not found", R, F),  # EVM's server-error range only
    ("m", -32002, "Transaction simulation failed", R, F),
    ("m", -32004, "Block not available for slot 5", R, R),
    ("m", -32014, "Block status not yet available", R, R),
    ("m", -32016, "Minimum context slot has not been reached", R, R),
    ("m", -32019, "Failed to query long-term storage", R, R),
    ("m", -32007, "Slot 5 was skipped", R, S),
    ("m", -32009, "Slot 5 missing in long-term storage", R, S),
    ("m", -32015, "Transaction version (0) is not supported", R, F),
    ("eth_call", -32000, "execution reverted", ExecutionReverted, F),
    ("eth_call", 3, "execution reverted: nope", ExecutionReverted, F),
    ("m", -32602, "invalid params", F, F),
    ("m", -32601, "the method does not exist", F, F),
    ("m", -32600, "invalid request", F, F),
    *[("eth_getLogs", -32005, m, RangeTooLargeError, R) for m in RANGE_MESSAGES],
    ("eth_call", -32005, "query returned more than 10000 results", R, R),  # not getLogs
]


@pytest.mark.parametrize("method,code,message,evm,solana", CODES)
def test_json_rpc_codes(method, code, message, evm, solana):
    error = {"code": code, "message": message}
    assert type(classify.rpc_error(error, method, "u", EVM)) is evm
    assert type(classify.rpc_error(error, method, "u", SOLANA)) is solana


def test_retry_after_forms():
    assert classify.parse_retry_after("7") == 7.0
    assert classify.parse_retry_after(" 0.5 ") == 0.5
    assert classify.parse_retry_after("-3") == 0.0
    assert classify.parse_retry_after(None) is None
    assert classify.parse_retry_after("soon") is None
    assert classify.parse_retry_after("inf") is None
    assert classify.parse_retry_after("nan") is None
    assert classify.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert classify.parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT") > 3600


# --- the wire: one client over real HTTP ------------------------------------------------------

FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.002, max_retry_after=0.01)


@pytest.fixture
async def node():
    """A JSON-RPC server that answers each request with the next scripted reply: a callable
    (body -> web.Response) or a JSON value written back as is."""
    script: list = []
    seen: list = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        seen.append(body)
        reply = script.pop(0)
        if callable(reply):
            return reply(body)
        return web.Response(text=json.dumps(reply), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/", script, seen
    await runner.cleanup()


def echo(result):
    return lambda body: web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})


def batch_echo(*results):
    return lambda body: web.json_response(
        [{"jsonrpc": "2.0", "id": c["id"], "result": r} for c, r in zip(body, results, strict=True)
         ][::-1])


async def client(url, codes, **kwargs) -> RpcClient:
    rpc = RpcClient("test", [url], codes=codes, policy=FAST, **kwargs)
    await rpc.open()
    return rpc


@BOTH
async def test_a_call_and_a_batch_on_the_wire(node, codes):
    url, script, seen = node
    rpc = await client(url, codes)
    script += [echo("0x10"), batch_echo("a", "b")]
    try:
        assert await rpc.request("eth_blockNumber", []) == "0x10"
        assert await rpc.batch([("x", [1]), ("y", [2])]) == ["a", "b"]  # matched by id
    finally:
        await rpc.close()
    assert seen[0]["method"] == "eth_blockNumber" and seen[0]["jsonrpc"] == "2.0"
    assert [c["method"] for c in seen[1]] == ["x", "y"]
    assert rpc.requests == 2 and rpc.endpoints[0].stats["requests"] == 2


@BOTH
@pytest.mark.parametrize("fault", [
    lambda body: web.Response(status=503, text="down"),
    lambda body: web.Response(status=429, text="slow", headers={"Retry-After": "0"}),
    lambda body: web.Response(text="<html>nginx</html>", content_type="text/html"),
    lambda body: web.json_response({"jsonrpc": "2.0", "id": body["id"]}),
    lambda body: web.json_response({"jsonrpc": "2.0", "id": body["id"],
                                    "error": {"code": -32603, "message": "internal"}}),
], ids=["503", "429", "html", "no-result", "-32603"])
async def test_a_passing_fault_on_the_wire_is_retried(node, codes, fault):
    url, script, _ = node
    rpc = await client(url, codes)
    script += [fault, echo(5)]
    try:
        assert await rpc.request("getSlot") == 5
    finally:
        await rpc.close()
    assert rpc.requests == 2


@BOTH
async def test_http_401_is_final_on_the_wire(node, codes):
    url, script, _ = node
    rpc = await client(url, codes)
    script.append(lambda body: web.Response(status=401, text="no key"))
    try:
        with pytest.raises(FinalRpcError) as err:
            await rpc.request("getSlot")
    finally:
        await rpc.close()
    assert err.value.code == 401 and rpc.requests == 1


async def test_a_refused_connection_is_retriable():
    rpc = await client("http://127.0.0.1:9/", EVM)
    try:
        with pytest.raises(RetriableRpcError):
            await rpc.request("eth_chainId", [])
    finally:
        await rpc.close()


def one_item_fails(body):
    return web.json_response([{"jsonrpc": "2.0", "id": 0, "result": "ok"},
                              {"jsonrpc": "2.0", "id": 1,
                               "error": {"code": -32602, "message": "invalid params"}}])


async def test_a_failed_batch_item_is_raised_or_kept_in_place(node):
    url, script, _ = node
    raising = await client(url, EVM)
    in_place = await client(url, SOLANA, errors_in_place=True)
    script += [one_item_fails, one_item_fails]
    try:
        with pytest.raises(FinalRpcError):
            await raising.batch([("a", []), ("b", [])])
        ok, failed = await in_place.batch([("a", []), ("b", [])])
    finally:
        await raising.close()
        await in_place.close()
    assert ok == "ok" and type(failed) is FinalRpcError


async def test_an_empty_batch_sends_nothing(node):
    url, _, seen = node
    rpc = await client(url, SOLANA)
    try:
        assert await rpc.batch([]) == []
    finally:
        await rpc.close()
    assert seen == []


@pytest.mark.parametrize("slot", ["12", None, 1.5, True, -1, {"slot": 3}])
async def test_a_garbled_solana_head_is_a_retriable_fault(node, slot):
    from tests.solana.conftest import solana_config
    from verifier.chains.solana import SolanaAdapter

    url, script, _ = node
    adapter = SolanaAdapter(solana_config([url], ["11111111111111111111111111111111"]),
                            policy=FAST)
    await adapter.open()
    script += [echo(slot), echo(slot)]
    try:
        with pytest.raises(RetriableRpcError):
            await adapter.view()
    finally:
        await adapter.close()
