"""JSON-RPC to Solana nodes through solana-py's AsyncClient, with failover and retries.

Requests go through ``AsyncClient.send_rpc_request`` and come back as plain JSON values, so the
rules read exactly what the node sent (no typed re-encoding on the way). ``batch`` sends several
calls in one JSON-RPC batch through the client's HTTP provider: one HTTP request costs the
client about 1.5 ms of CPU in httpx, a batch item a tenth of that. Every error is sorted here,
once (see verifier.errors): time-outs, connection errors, HTTP 429 (with Retry-After) and
5xx, malformed replies, -32005 (node behind), -32603 and the "not available yet" codes are
retriable; -32007/-32009 (slot skipped, or missing in long-term storage) are their own final type
so the caller can pass over that slot; anything else is final.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx2
from pydantic import ValidationError
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.jsonrpc import JsonRpcRequest, SolanaJsonRpcError

from verifier.errors import FinalRpcError, RetriableRpcError, RpcError
from verifier.rpc.failover import Endpoint, EndpointPool, Observer, RetryPolicy

NODE_BEHIND = -32005
SLOT_SKIPPED = (-32007, -32009)
RETRIABLE_CODES = frozenset({
    429,  # rate limited, sent as a JSON-RPC code by rpcpool and others
    NODE_BEHIND,
    -32603,  # internal error
    -32004,  # block not available for slot (yet)
    -32014,  # block status not yet available
    -32016,  # minimum context slot not reached
    -32019,  # long-term storage unreachable
})


class SlotSkippedError(FinalRpcError):
    """-32007 / -32009: the node has no block for that slot (skipped, or missing in storage)."""


class BatchRefusedError(FinalRpcError):
    """The endpoint answered a JSON-RPC batch with a single error: it does not take batches."""


class _Batch:
    """A JSON-RPC batch body for the provider (anything with ``to_json`` will do)."""

    def __init__(self, calls: Sequence[tuple[str, list[Any]]]):
        self.text = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                                for i, (m, p) in enumerate(calls)])

    def to_json(self) -> str:
        return self.text


class SolanaRpc:
    """A chain's Solana endpoints behind one failover pool."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        chain: str = "solana",
        concurrency: int = 8,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        observe: Observer | None = None,
    ):
        self.chain = chain
        self.timeout = timeout
        self.concurrency = concurrency
        self.pool = EndpointPool(chain, urls, concurrency=concurrency, policy=policy,
                                 observe=observe)
        self.requests = 0  # HTTP requests sent, retries included

    def open(self) -> None:
        for endpoint in self.pool.endpoints:
            if endpoint.client is None:
                endpoint.client = AsyncClient(
                    endpoint.url, timeout=self.timeout, max_transport_retries=0,
                    max_connections=self.concurrency,
                    max_keepalive_connections=self.concurrency,
                )

    async def close(self) -> None:
        for endpoint in self.pool.endpoints:
            if isinstance(endpoint.client, AsyncClient):
                await endpoint.client.close()
            endpoint.client = None

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.pool.endpoints

    async def request(self, method: str, params: list[Any] | None = None) -> Any:
        return await self.pool.call(method, lambda e: self.request_on(e, method, params))

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP request. Each item is its result or the RpcError it got;
        a failure of the whole request is raised (after the pool's retries)."""
        label = "batch:" + ",".join(sorted({m for m, _ in calls}))
        return await self.pool.call(label, lambda e: self.batch_on(e, calls))

    async def batch_on(self, endpoint: Endpoint, calls: Sequence[tuple[str, list[Any]]]
                       ) -> list[Any]:
        client = endpoint.client
        assert isinstance(client, AsyncClient), "SolanaRpc.open() was not called"
        self.requests += 1
        try:
            # The provider is the client's own HTTP layer; AsyncClient has no public batch call.
            raw = await client._provider.make_request_unparsed(_Batch(calls))
        except SolanaRpcException as exc:
            raise transport_error(exc.__cause__ or exc, "batch", endpoint.url) from exc
        except httpx2.HTTPError as exc:
            raise transport_error(exc, "batch", endpoint.url) from exc
        try:
            answers = json.loads(raw)
        except ValueError as exc:
            raise RetriableRpcError(f"batch: malformed reply: {exc}",
                                    endpoint=endpoint.url) from exc
        if isinstance(answers, dict) and isinstance(answers.get("error"), dict):
            error = answers["error"]
            failure = rpc_error(error.get("code", 0), str(error.get("message", "")), "batch",
                                endpoint.url)
            if failure.retriable:
                raise failure
            raise BatchRefusedError(str(failure), endpoint=endpoint.url, code=failure.code)
        if not isinstance(answers, list):
            raise RetriableRpcError("batch: reply is not a list", endpoint=endpoint.url)
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        return [_item(by_id.get(i), method, endpoint.url) for i, (method, _) in enumerate(calls)]

    async def request_on(self, endpoint: Endpoint, method: str,
                         params: list[Any] | None = None) -> Any:
        client = endpoint.client
        assert isinstance(client, AsyncClient), "SolanaRpc.open() was not called"
        self.requests += 1
        try:
            return await client.send_rpc_request(JsonRpcRequest(method=method, params=params),
                                                 Any)
        except SolanaJsonRpcError as exc:
            raise rpc_error(exc.code, exc.message, method, endpoint.url) from exc
        except SolanaRpcException as exc:
            raise transport_error(exc.__cause__ or exc, method, endpoint.url) from exc
        except (ValidationError, ValueError) as exc:
            raise RetriableRpcError(f"{method}: malformed reply: {exc}",
                                    endpoint=endpoint.url) from exc
        except httpx2.HTTPError as exc:
            raise transport_error(exc, method, endpoint.url) from exc


def _item(answer: dict[str, Any] | None, method: str, endpoint: str) -> Any:
    if answer is None:
        return RetriableRpcError(f"{method}: missing from the batch reply", endpoint=endpoint)
    error = answer.get("error")
    if isinstance(error, dict):
        return rpc_error(error.get("code", 0), str(error.get("message", "")), method, endpoint)
    if "result" not in answer:
        return RetriableRpcError(f"{method}: reply has neither result nor error",
                                 endpoint=endpoint)
    return answer["result"]


def rpc_error(code: int, message: str, method: str, endpoint: str) -> RpcError:
    text = f"{method}: JSON-RPC error {code}: {message}"
    if code in SLOT_SKIPPED:
        return SlotSkippedError(text, endpoint=endpoint, code=code)
    if code in RETRIABLE_CODES or "too many requests" in message.lower():
        return RetriableRpcError(text, endpoint=endpoint, code=code)
    return FinalRpcError(text, endpoint=endpoint, code=code)


def transport_error(exc: BaseException, method: str, endpoint: str) -> RpcError:
    """Everything the HTTP layer raises is retriable except an HTTP 4xx other than 408/429."""
    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        text = f"{method}: HTTP {status}"
        if status == 429:
            return RetriableRpcError(text, endpoint=endpoint, code=429,
                                     retry_after=parse_retry_after(
                                         exc.response.headers.get("Retry-After")))
        if status >= 500 or status == 408:
            return RetriableRpcError(text, endpoint=endpoint, code=status)
        return FinalRpcError(text, endpoint=endpoint, code=status)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return RetriableRpcError(f"{method}: request timed out", endpoint=endpoint)
    if isinstance(exc, httpx2.TransportError | OSError):
        return RetriableRpcError(f"{method}: connection failed: {exc.__class__.__name__}: {exc}",
                                 endpoint=endpoint)
    return RetriableRpcError(f"{method}: {exc.__class__.__name__}: {exc}", endpoint=endpoint)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
