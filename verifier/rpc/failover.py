"""Several RPC endpoints per chain: failover, retries and a concurrency limit per endpoint.

Every call goes to the most preferred endpoint that is not cooling down after a failure, so
traffic returns to the first URL once it recovers. An endpoint found serving another chain
(WrongChainError) is left out of every call, except those that check the chain in the same
request (``checks_chain``): such a call brings it back once it answers for the right chain.
Only retriable faults (as classified where they arrive, see verifier.errors) are retried, with
exponential backoff and jitter through tenacity, honouring a Retry-After when the server sent
one. Anything else is final at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from verifier import redact
from verifier.errors import RetriableRpcError, RpcError, WrongChainError

T = TypeVar("T")
log = structlog.get_logger("verifier.rpc")


@dataclass
class Endpoint:
    url: str
    rank: int
    limit: asyncio.Semaphore
    failures: int = 0
    cooling_until: float = 0.0
    # Filled by the owner: per-endpoint client objects (a web3 instance, an HTTP session...).
    client: object = None
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0})
    foreign: str | None = None  # why it was last found serving another chain; None: it is not

    @property
    def name(self) -> str:
        """'#<position> scheme://host[:port]': how logs and errors name it (never the URL,
        which may carry an API key or a password)."""
        return redact.name(self.rank, self.url)

    @property
    def label(self) -> str:
        """'<rank>:host[:port]': its metrics label."""
        return redact.label(self.rank, self.url)

    def available(self, now: float) -> bool:
        return now >= self.cooling_until


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_wait: float = 0.05
    max_wait: float = 4.0
    cooldown: float = 5.0  # first cooldown of a failed endpoint; doubles per failure
    max_cooldown: float = 60.0
    max_retry_after: float = 30.0


Observer = Callable[[Endpoint, str, float, BaseException | None], None]


class EndpointPool:
    """Runs an operation against the best endpoint, failing over and retrying."""

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        *,
        concurrency: int,
        policy: RetryPolicy | None = None,
        observe: Observer | None = None,
    ):
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.chain = chain
        self.policy = policy or RetryPolicy()
        redact.remember(urls)
        self.endpoints = [
            Endpoint(url, rank, asyncio.Semaphore(concurrency)) for rank, url in enumerate(urls)
        ]
        self._observe = observe

    def choose(self, checks_chain: bool = False) -> Endpoint:
        now = time.monotonic()
        usable = [e for e in self.endpoints if checks_chain or e.foreign is None]
        if not usable:
            raise WrongChainError(f"{self.chain}: every RPC endpoint serves another chain "
                                  f"({self.endpoints[0].foreign})")
        for endpoint in usable:
            if endpoint.available(now):
                return endpoint
        return min(usable, key=lambda e: e.cooling_until)

    def all_foreign(self) -> bool:
        """No endpoint was last seen serving the configured chain."""
        return all(e.foreign is not None for e in self.endpoints)

    async def call(self, what: str, op: Callable[[Endpoint], Awaitable[T]], *,
                   checks_chain: bool = False) -> T:
        """Runs ``op`` on an endpoint; retriable faults fail over and retry, others raise.
        ``checks_chain``: ``op`` raises WrongChainError unless the answer it returns came from
        the configured chain, so endpoints found on another chain may be asked too."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(self.policy.attempts, len(self.endpoints) + 1)),
            wait=self._wait,
            retry=retry_if_exception(self._retriable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(what, op, checks_chain=checks_chain)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retriable(self, exc: BaseException) -> bool:
        if isinstance(exc, WrongChainError) and self.all_foreign():
            return False  # nowhere else to ask
        return isinstance(exc, RpcError) and exc.retriable

    async def call_on(self, endpoint: Endpoint, what: str,
                      op: Callable[[Endpoint], Awaitable[T]]) -> T:
        """Like call(), on this endpoint only: start-up checks ask every endpoint in turn, and a
        passing fault must not make them fail (or skip the endpoint) at once."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=self._backoff,
            retry=retry_if_exception(lambda e: isinstance(e, RpcError) and e.retriable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(what, op, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, what: str, op: Callable[[Endpoint], Awaitable[T]],
                    endpoint: Endpoint | None = None, *, checks_chain: bool = False) -> T:
        endpoint = endpoint or self.choose(checks_chain)
        started = time.monotonic()
        error: BaseException | None = None
        try:
            async with endpoint.limit:
                endpoint.stats["requests"] += 1
                result = await op(endpoint)
        except RpcError as exc:
            error = exc
            exc.endpoint = exc.endpoint or endpoint.name
            endpoint.stats["errors"] += 1
            if isinstance(exc, WrongChainError):
                self._foreign(endpoint, exc)
            elif exc.retriable:
                self._cool(endpoint)
                log.warning("rpc_retriable_error", chain=self.chain, endpoint=endpoint.name,
                            call=what, error=str(exc))
            raise
        else:
            endpoint.failures = 0
            if checks_chain and endpoint.foreign is not None:
                endpoint.foreign = None
                log.warning("rpc_endpoint_back_on_chain", chain=self.chain,
                            endpoint=endpoint.name)
            return result
        finally:
            if self._observe:
                self._observe(endpoint, what, time.monotonic() - started, error)

    def _foreign(self, endpoint: Endpoint, exc: WrongChainError) -> None:
        """Serving another chain: out of every call that does not check the chain, and asked
        again by those only after the longest cooldown."""
        if endpoint.foreign is None:
            log.error("rpc_endpoint_on_another_chain", chain=self.chain, endpoint=endpoint.name,
                      error=str(exc))
        endpoint.foreign = str(exc)
        endpoint.cooling_until = time.monotonic() + self.policy.max_cooldown

    def _cool(self, endpoint: Endpoint) -> None:
        if len(self.endpoints) == 1:
            return  # nowhere to fail over to: the backoff between attempts is enough
        endpoint.failures += 1
        pause = min(self.policy.cooldown * 2 ** (endpoint.failures - 1), self.policy.max_cooldown)
        endpoint.cooling_until = time.monotonic() + pause

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableRpcError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.policy.max_retry_after)
        if len(self.endpoints) > 1 and any(e.available(time.monotonic()) for e in self.endpoints):
            return 0.0  # another endpoint is ready: fail over at once
        return self._backoff(state)

    def _backoff(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableRpcError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.policy.max_retry_after)
        backoff = wait_exponential_jitter(multiplier=self.policy.initial_wait,
                                          max=self.policy.max_wait,
                                          jitter=self.policy.initial_wait)
        return float(backoff(state))
