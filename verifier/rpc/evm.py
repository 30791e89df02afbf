"""JSON-RPC to EVM nodes through web3's AsyncWeb3 providers, with failover and retries.

Answers are taken raw from the provider (``make_request`` / ``make_batch_request``) so that
every error is classified here, once, into retriable or final (see verifier.errors): time-outs,
connection errors, HTTP 429 (with Retry-After) and 5xx, malformed JSON, JSON-RPC -32005, -32603
and server errors are retriable; a provider's "range too large" answer to eth_getLogs is its own
type so that the caller halves the range.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from web3 import AsyncWeb3
from web3.providers.rpc import AsyncHTTPProvider

from verifier.errors import FinalRpcError, RangeTooLargeError, RetriableRpcError, RpcError
from verifier.rpc.failover import Endpoint, EndpointPool, Observer, RetryPolicy

# Messages providers use to refuse an eth_getLogs range or result size.
RANGE_ERRORS = (
    "query returned more than",
    "log response size exceeded",
    "block range is too large",
    "range is too large",
    "exceed maximum block range",
    "response size exceeded",
    "too many results",
)


class EvmRpc:
    """A chain's EVM endpoints behind one failover pool."""

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        observe: Observer | None = None,
    ):
        self.chain = chain
        self.timeout = timeout
        self.pool = EndpointPool(chain, urls, concurrency=concurrency, policy=policy,
                                 observe=observe)
        self._sessions: list[aiohttp.ClientSession] = []
        self.requests = 0  # HTTP requests sent (a batch counts once)

    async def open(self) -> None:
        for endpoint in self.pool.endpoints:
            provider = AsyncHTTPProvider(
                endpoint.url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=self.timeout)},
                exception_retry_configuration=None,
            )
            session = aiohttp.ClientSession(
                raise_for_status=True,
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
            )
            await provider.cache_async_session(session)
            self._sessions.append(session)
            endpoint.client = AsyncWeb3(provider)

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()
        self._sessions.clear()

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.pool.endpoints

    async def request(self, method: str, params: list[Any]) -> Any:
        return await self.pool.call(method, lambda e: self.request_on(e, method, params))

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch (one HTTP request); results in call order."""
        if not calls:
            return []
        label = "batch:" + ",".join(sorted({m for m, _ in calls}))
        return await self.pool.call(label, lambda e: self.batch_on(e, calls))

    async def request_on(self, endpoint: Endpoint, method: str, params: list[Any]) -> Any:
        provider = _provider(endpoint)
        self.requests += 1
        try:
            answer = await provider.make_request(method, params)  # type: ignore[arg-type,unused-ignore]
        except Exception as exc:
            raise transport_error(exc, endpoint.url) from exc
        return result_of(answer, method, endpoint.url)

    async def batch_on(self, endpoint: Endpoint, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        provider = _provider(endpoint)
        self.requests += 1
        try:
            answers = await provider.make_batch_request(list(calls))  # type: ignore[arg-type]
        except Exception as exc:
            raise transport_error(exc, endpoint.url) from exc
        if not isinstance(answers, list):  # the whole batch was refused with one error
            result_of(answers, "batch", endpoint.url)
            raise RetriableRpcError("batch answered with a single non-list reply",
                                    endpoint=endpoint.url)
        if len(answers) != len(calls):
            raise RetriableRpcError(
                f"batch of {len(calls)} answered with {len(answers)} replies", endpoint=endpoint.url
            )
        return [result_of(a, m, endpoint.url) for a, (m, _) in zip(answers, calls, strict=True)]


def _provider(endpoint: Endpoint) -> AsyncHTTPProvider:
    w3 = endpoint.client
    assert isinstance(w3, AsyncWeb3), "EvmRpc.open() was not awaited"
    provider = w3.provider
    assert isinstance(provider, AsyncHTTPProvider)
    return provider


def result_of(answer: Any, method: str, endpoint: str) -> Any:
    if not isinstance(answer, dict):
        raise RetriableRpcError(f"{method}: malformed JSON-RPC reply", endpoint=endpoint)
    if answer.get("error") is not None:
        raise rpc_error(answer["error"], method, endpoint)
    if "result" not in answer:
        raise RetriableRpcError(f"{method}: reply has neither result nor error", endpoint=endpoint)
    return answer["result"]


def rpc_error(error: Any, method: str, endpoint: str) -> RpcError:
    """Sorts a JSON-RPC error object into range / retriable / final."""
    if not isinstance(error, dict):
        return RetriableRpcError(f"{method}: malformed error {error!r}", endpoint=endpoint)
    code = error.get("code")
    message = str(error.get("message", ""))
    low = message.lower()
    text = f"{method}: JSON-RPC error {code}: {message}"
    code = code if isinstance(code, int) else None
    if method == "eth_getLogs" and any(m in low for m in RANGE_ERRORS):
        return RangeTooLargeError(text, endpoint=endpoint, code=code)
    if "revert" in low:
        return FinalRpcError(text, endpoint=endpoint, code=code)
    if code in (429, -32005, -32603) or "rate limit" in low or "too many requests" in low:
        return RetriableRpcError(text, endpoint=endpoint, code=code)
    if code is not None and -32099 <= code <= -32000:
        return RetriableRpcError(text, endpoint=endpoint, code=code)
    return FinalRpcError(text, endpoint=endpoint, code=code)


def transport_error(exc: BaseException, endpoint: str) -> RpcError:
    """Sorts what the HTTP layer raised: everything here is retriable except HTTP 4xx."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"HTTP {exc.status} {exc.message}".strip()
        if exc.status == 429:
            headers = exc.headers if exc.headers is not None else {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return RetriableRpcError(text, endpoint=endpoint, code=429, retry_after=retry_after)
        if exc.status >= 500 or exc.status == 408:
            return RetriableRpcError(text, endpoint=endpoint, code=exc.status)
        return FinalRpcError(text, endpoint=endpoint, code=exc.status)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return RetriableRpcError("request timed out", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return RetriableRpcError(f"connection failed: {exc.__class__.__name__}: {exc}",
                                 endpoint=endpoint)
    if isinstance(exc, ValueError | UnicodeDecodeError):  # JSONDecodeError is a ValueError
        return RetriableRpcError(f"malformed reply: {exc}", endpoint=endpoint)
    return FinalRpcError(f"unexpected RPC failure: {exc.__class__.__name__}: {exc}",
                         endpoint=endpoint)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
