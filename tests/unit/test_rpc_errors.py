"""Where RPC errors arrive they are sorted once: range, retriable or final."""


import aiohttp
import pytest
from multidict import CIMultiDict

from verifier.errors import FinalRpcError, RangeTooLargeError, RetriableRpcError
from verifier.rpc.evm import parse_retry_after, result_of, rpc_error, transport_error


@pytest.mark.parametrize("message", [
    "query returned more than 10000 results",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
    "block range is too large",
    "eth_getLogs range is too large, max is 1k blocks",
])
def test_provider_range_errors_on_getlogs(message):
    assert isinstance(rpc_error({"code": -32005, "message": message}, "eth_getLogs", "u"),
                      RangeTooLargeError)


@pytest.mark.parametrize("code,message,kind", [
    (-32005, "limit exceeded", RetriableRpcError),
    (-32603, "internal error", RetriableRpcError),
    (-32000, "header not found", RetriableRpcError),
    (429, "Too many requests", RetriableRpcError),
    (-32000, "execution reverted", FinalRpcError),
    (-32602, "invalid params", FinalRpcError),
    (-32601, "the method does not exist", FinalRpcError),
])
def test_json_rpc_errors(code, message, kind):
    err = rpc_error({"code": code, "message": message}, "eth_call", "u")
    assert type(err) is kind


def test_a_range_message_outside_getlogs_is_not_a_range_error():
    err = rpc_error({"code": -32005, "message": "query returned more than 10000 results"},
                    "eth_call", "u")
    assert type(err) is RetriableRpcError


def _http(status, headers=None):
    return aiohttp.ClientResponseError(None, (), status=status, message="x",  # type: ignore[arg-type]
                                       headers=CIMultiDict(headers or {}))


def test_http_429_carries_retry_after():
    err = transport_error(_http(429, {"Retry-After": "3"}), "u")
    assert isinstance(err, RetriableRpcError) and err.retry_after == 3.0


@pytest.mark.parametrize("exc,kind", [
    (_http(502), RetriableRpcError),
    (_http(503), RetriableRpcError),
    (_http(401), FinalRpcError),
    (TimeoutError(), RetriableRpcError),
    (aiohttp.ClientConnectionError("reset"), RetriableRpcError),
    (ValueError("Expecting value: line 1 column 1"), RetriableRpcError),
])
def test_transport_errors(exc, kind):
    assert type(transport_error(exc, "u")) is kind


def test_replies_without_result_are_retriable_and_null_results_pass_through():
    with pytest.raises(RetriableRpcError):
        result_of({"jsonrpc": "2.0", "id": 1}, "eth_blockNumber", "u")
    with pytest.raises(RetriableRpcError):
        result_of("garbage", "eth_blockNumber", "u")
    assert result_of({"jsonrpc": "2.0", "id": 1, "result": None}, "eth_getTransactionReceipt",
                     "u") is None


def test_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
