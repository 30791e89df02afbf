"""One JSON-RPC client for every chain: our own wire over aiohttp, behind the failover pool.

Each endpoint has one keep-alive HTTP session; a call or a JSON-RPC batch is one POST, at most
``concurrency`` at once per endpoint (the pool's semaphore). Every answer is sorted where it
arrives by verifier.rpc.classify, with the chain kind's table of JSON-RPC codes (``codes``), so
the adapters and the pool only ever see a result, a RetriableRpcError or a final RpcError.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from verifier.errors import RpcError
from verifier.rpc import classify
from verifier.rpc.classify import EVM, SOLANA, Codes
from verifier.rpc.failover import Endpoint, EndpointPool, Observer, RetryPolicy

Call = tuple[str, list[Any]]
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class RpcClient:
    """A chain's endpoints behind one failover pool.

    ``errors_in_place``: a batch item that failed is returned as its RpcError in its place
    (Solana's scan asks such items again one by one); otherwise the first one is raised, so
    the pool retries the whole batch (EVM's views and log ranges need every item)."""

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        *,
        codes: Codes,
        errors_in_place: bool = False,
        concurrency: int = 8,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        observe: Observer | None = None,
    ):
        self.chain = chain
        self.codes = codes
        self.errors_in_place = errors_in_place
        self.concurrency = concurrency
        self.timeout = timeout
        self.pool = EndpointPool(chain, urls, concurrency=concurrency, policy=policy,
                                 observe=observe)
        self.requests = 0  # HTTP requests sent, retries included (a batch counts once)
        self._ids = itertools.count(1)

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.pool.endpoints

    async def open(self) -> None:
        """Creates each endpoint's HTTP session (no request is sent)."""
        for endpoint in self.pool.endpoints:
            self._session(endpoint)

    async def close(self) -> None:
        for endpoint in self.pool.endpoints:
            session, endpoint.client = endpoint.client, None
            if isinstance(session, aiohttp.ClientSession):
                await session.close()

    async def request(self, method: str, params: list[Any] | None = None) -> Any:
        return await self.pool.call(method, lambda e: self.request_on(e, method, params))

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls in one HTTP request; answers in call order (see ``errors_in_place``).
        A failure of the whole request is raised after the pool's retries."""
        if not calls:
            return []
        return await self.pool.call(batch_label(calls), lambda e: self.batch_on(e, calls))

    async def request_on(self, endpoint: Endpoint, method: str,
                         params: list[Any] | None = None) -> Any:
        body = _call(next(self._ids), method, params)
        answer = await self._post(endpoint, body, method)
        return classify.result(answer, method, endpoint.name, self.codes)

    async def batch_on(self, endpoint: Endpoint, calls: Sequence[Call]) -> list[Any]:
        body = [_call(i, m, p) for i, (m, p) in enumerate(calls)]
        answers = await self._post(endpoint, body, "batch")
        items = classify.batch_items(answers, [m for m, _ in calls], endpoint.name, self.codes)
        if not self.errors_in_place:
            failed = next((i for i in items if isinstance(i, RpcError)), None)
            if failed is not None:
                raise failed
        return items

    async def _post(self, endpoint: Endpoint, body: Any, what: str) -> Any:
        """One HTTP POST; its JSON answer, or the RpcError the HTTP layer's outcome stands for."""
        session = self._session(endpoint)
        self.requests += 1
        try:
            async with session.post(endpoint.url, data=json.dumps(body).encode(),
                                    headers=_HEADERS) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.read()
        except Exception as exc:  # sorted (all retriable) in classify.transport_error
            raise classify.transport_error(exc, what, endpoint.name) from exc
        failure = classify.http_error(status, retry_after, what, endpoint.name)
        if failure is not None:
            raise failure
        return classify.decode(raw, what, endpoint.name)

    def _session(self, endpoint: Endpoint) -> aiohttp.ClientSession:
        if not isinstance(endpoint.client, aiohttp.ClientSession) or endpoint.client.closed:
            endpoint.client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=30),
            )
        return endpoint.client


def batch_label(calls: Sequence[Call]) -> str:
    """How a batch is named in logs and metrics: its methods."""
    return "batch:" + ",".join(sorted({m for m, _ in calls}))


def _call(ident: int, method: str, params: list[Any] | None) -> dict[str, Any]:
    call: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
    if params is not None:
        call["params"] = params
    return call


__all__ = ["EVM", "SOLANA", "Codes", "RpcClient", "batch_label"]
