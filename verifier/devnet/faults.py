"""A fault-injecting JSON-RPC reverse proxy over real HTTP, for reliability tests and the soak.

    with FaultProxy(anvil_url, seed=7, rate=0.10) as proxy:
        daemon env: X402_BASE_RPC_URLS=proxy.url
        ...
        proxy.injected  # Counter of the faults served, by kind

It sits between the daemon and a node (anvil, or the Solana test server) and forwards every
request, JSON-RPC batches included. Per request it may serve a fault instead of (or on top of)
the node's answer:

- chosen at random with probability ``rate``, deterministically from ``seed`` and the request's
  sequence number (request n gets the same decision in every run with the same seed);
- or taken from a schedule (``schedule(Fault.X, method=..., times=...)``), for exact tests:
  scheduled faults go first, to the next requests that carry the method (with ``gap``, at least
  that many requests pass untouched between two scheduled faults);
- and ``rewrite(method, fn)`` edits the node's answers (for hostile answers: a receipt for
  another transaction, huge numbers, malformed logs...), or replaces them with a JSON-RPC
  error (``ErrorAnswer``); ``refuse(method, code)`` answers a method with a JSON-RPC error (a
  gateway without ``getHealth``: -32601), and ``serve_from(url)`` forwards to another node from
  then on (an endpoint that starts serving another chain under the same URL).

Faults at the HTTP level hit the whole request; JSON-RPC level faults replace the answer to one
call of a batch (the one whose method fits the fault). Test code only: the daemon never imports
this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp
from aiohttp import web


class Fault(Enum):
    HTTP_429 = "http_429"  # Too Many Requests, with Retry-After
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    RESET = "reset"  # the TCP connection is reset (RST) before any answer
    HANG = "hang"  # no answer until well past the client's time-out, then the connection closes
    MALFORMED = "malformed_json"  # HTTP 200 with a body that is not JSON
    TRUNCATED = "truncated_json"  # the node's real answer, cut in the middle
    RPC_32005 = "rpc_-32005"  # JSON-RPC "limit exceeded" for one call
    RPC_32603 = "rpc_-32603"  # JSON-RPC "internal error" for one call
    LAGGING_HEAD = "lagging_head"  # eth_blockNumber / getSlot older than the node's
    NULL = "null_result"  # null for a block, receipt, logs or transaction the node has


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)
HEAD_METHODS = frozenset({"eth_blockNumber", "getSlot"})
NULLABLE_METHODS = frozenset({
    "eth_getBlockByNumber", "eth_getTransactionReceipt", "eth_getLogs", "eth_getCode",
    "eth_call", "getTransaction", "getSignaturesForAddress",
})
_RPC_ERRORS = {
    Fault.RPC_32005: {"code": -32005, "message": "limit exceeded"},
    Fault.RPC_32603: {"code": -32603, "message": "internal error"},
}
_ANSWER_FAULTS = frozenset({Fault.RPC_32005, Fault.RPC_32603, Fault.LAGGING_HEAD, Fault.NULL})
_MALFORMED_BODIES = (
    b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    b'{"jsonrpc": "2.0", "id": 1, "result": 0x12,,}',
    b"\x00\xff\xfe garbage \x80",
)

Rewrite = Callable[[Any, list[Any]], Any]
"""(result, params) -> new result (or an ErrorAnswer), for one method's answers."""


@dataclass(frozen=True)
class ErrorAnswer:
    """Returned by a rewrite: the call is answered with this JSON-RPC error instead (e.g. a
    final refusal such as -32602, which no random fault serves)."""

    code: int
    message: str


@dataclass
class _Scheduled:
    fault: Fault
    method: str | None
    times: int


@dataclass
class _RewriteRule:
    method: str
    fn: Rewrite | None  # None: the answer becomes ``error``
    times: int | None  # None: every answer
    error: dict[str, Any] | None = None


class FaultProxy:
    """A reverse proxy to ``upstream`` on 127.0.0.1, serving faults (see the module doc)."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rate: float = 0.0,
        faults: Iterable[Fault] = ALL_FAULTS,
        retry_after: float = 1,
        hang: float = 3.0,
        lag: int = 5,
        gap: int = 0,
        max_body: int = 256 * 1024 * 1024,
    ):
        self.upstream = upstream
        self.seed = seed
        self.rate = rate
        self.faults = tuple(faults)
        self.retry_after = retry_after
        self.hang = hang
        self.lag = lag
        self.gap = gap  # requests left alone between two scheduled faults
        self._last_scheduled = -gap - 1
        self.max_body = max_body
        self.requests = 0  # HTTP requests received
        self.calls: Counter[str] = Counter()  # JSON-RPC calls received, by method
        self.injected: Counter[Fault] = Counter()
        # (fault, method) for every call a fault hit: all calls of the request for HTTP-level
        # faults, the one replaced answer for JSON-RPC level faults.
        self.hits: Counter[tuple[Fault, str]] = Counter()
        self.rewritten: Counter[str] = Counter()
        self.url = ""
        self._schedule: list[_Scheduled] = []
        self._rewrites: list[_RewriteRule] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name="fault-proxy")
        self._thread.start()
        if not ready.wait(10) or not self.url:
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        # A fault that drops a connection makes aiohttp log a traceback: expected here.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/", self._http)
        app.router.add_post("/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = loop.run_until_complete(_client_session())
        ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- steering ----------------------------------------------------------------------------

    def schedule(self, fault: Fault, *, method: str | None = None, times: int = 1) -> None:
        """The next ``times`` requests carrying ``method`` (any request if None) get ``fault``."""
        with self._lock:
            self._schedule.append(_Scheduled(fault, method, times))

    def scheduled_left(self) -> int:
        with self._lock:
            return sum(s.times for s in self._schedule)

    def rewrite(self, method: str, fn: Rewrite, *, times: int | None = None) -> None:
        """Answers to ``method`` pass through ``fn(result, params)`` (``times`` of them, or all)."""
        with self._lock:
            self._rewrites.append(_RewriteRule(method, fn, times))

    def refuse(self, method: str, code: int = -32601, message: str = "Method not found", *,
               times: int | None = None) -> None:
        """Answers to ``method`` become the JSON-RPC error ``code`` (``times`` of them, or all)."""
        with self._lock:
            self._rewrites.append(_RewriteRule(method, None, times,
                                               {"code": code, "message": message}))

    def serve_from(self, upstream: str) -> None:
        """From the next request on, forward to ``upstream``: an endpoint that starts serving
        another node, or another chain, under the same URL."""
        with self._lock:
            self.upstream = upstream

    def clear(self) -> None:
        """No more scheduled faults or rewrites (the random rate stays as set)."""
        with self._lock:
            self._schedule.clear()
            self._rewrites.clear()

    def total_injected(self) -> int:
        return sum(self.injected.values())

    # --- the decision ------------------------------------------------------------------------

    def _decide(self, number: int, methods: list[str]) -> tuple[Fault | None, str | None]:
        """The fault for request ``number`` and, when scheduled for one, the method it hits."""
        with self._lock:
            spaced = number - self._last_scheduled > self.gap
            for item in self._schedule if spaced else ():
                aimed = [item.method] if item.method else methods
                if (item.method is None or item.method in methods) \
                        and _applies(item.fault, aimed):
                    item.times -= 1
                    if item.times <= 0:
                        self._schedule.remove(item)
                    self._last_scheduled = number
                    return item.fault, item.method
        if self.rate <= 0:
            return None, None
        digest = hashlib.sha256(f"{self.seed}:{number}".encode()).digest()
        rng = random.Random(digest)
        if rng.random() >= self.rate:
            return None, None
        fitting = [f for f in self.faults if _applies(f, methods)]
        return (rng.choice(fitting), None) if fitting else (None, None)

    # --- serving -----------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests += 1
            number = self.requests
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        methods = [c.get("method", "") for c in calls if isinstance(c, dict)]
        self.calls.update(methods)
        fault, aimed = self._decide(number, methods)
        if fault is not None:
            self.injected[fault] += 1
            if fault not in _ANSWER_FAULTS:
                self.hits.update((fault, m) for m in methods)
        early = await self._before_upstream(fault, request, number)
        if early is not None:
            return early
        status, answer = await self._forward(body, request.headers.get("Content-Type"))
        if status != 200:
            return web.Response(status=status, body=answer)
        if fault is Fault.TRUNCATED:
            return web.Response(body=answer[: max(1, len(answer) // 2)],
                                content_type="application/json")
        if fault is None and not self._rewrites:
            return web.Response(body=answer, content_type="application/json")
        try:
            decoded = json.loads(answer)
        except ValueError:
            return web.Response(body=answer, content_type="application/json")
        decoded = self._edit(decoded, calls, fault, aimed, number)
        return web.Response(body=json.dumps(decoded).encode(), content_type="application/json")

    async def _before_upstream(self, fault: Fault | None, request: web.Request,
                               number: int) -> web.StreamResponse | None:
        if fault is Fault.HTTP_429:
            return web.Response(status=429, text="Too Many Requests",
                                headers={"Retry-After": _seconds(self.retry_after)})
        if fault is Fault.HTTP_502:
            return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        if fault is Fault.HTTP_503:
            return web.Response(status=503, text="Service Unavailable")
        if fault is Fault.MALFORMED:
            return web.Response(body=_MALFORMED_BODIES[number % len(_MALFORMED_BODIES)],
                                content_type="application/json")
        if fault is Fault.RESET:
            _reset(request)
            return web.Response(status=500)  # never reaches the client
        if fault is Fault.HANG:
            await asyncio.sleep(self.hang)
            _reset(request)
            return web.Response(status=500)
        return None

    async def _forward(self, body: bytes, content_type: str | None) -> tuple[int, bytes]:
        assert self._session is not None
        with self._lock:
            upstream = self.upstream
        try:
            async with self._session.post(
                upstream, data=body,
                headers={"Content-Type": content_type or "application/json"},
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 502, f"upstream failed: {exc}".encode()

    def _edit(self, decoded: Any, calls: list[Any], fault: Fault | None, aimed: str | None,
              number: int) -> Any:
        answers = decoded if isinstance(decoded, list) else [decoded]
        by_id = {c.get("id"): c for c in calls if isinstance(c, dict)}
        for answer in answers:
            if isinstance(answer, dict) and "result" in answer:
                call = by_id.get(answer.get("id"), {})
                self._apply_rewrites(answer, call.get("method", ""), call.get("params") or [])
        if fault is not None:
            target = _target(fault, answers, by_id, aimed, number)
            if target is not None:
                method = by_id.get(target.get("id"), {}).get("method", "")
                self.hits[(fault, method)] += 1
                _apply_fault(fault, target, self.lag)
        return decoded

    def _apply_rewrites(self, answer: dict[str, Any], method: str, params: list[Any]) -> None:
        with self._lock:
            rules = [r for r in self._rewrites if r.method == method]
            for rule in rules:
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rewrites.remove(rule)
        for rule in rules:
            if "result" not in answer:
                break  # refused by an earlier rule
            self.rewritten[method] += 1
            if rule.fn is None:
                answer.pop("result")
                answer["error"] = dict(rule.error or {})
                return
            result = rule.fn(answer["result"], params)
            if isinstance(result, ErrorAnswer):
                del answer["result"]
                answer["error"] = {"code": result.code, "message": result.message}
                return
            answer["result"] = result


async def _client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                 connector=aiohttp.TCPConnector(limit=256))


def _applies(fault: Fault, methods: list[str]) -> bool:
    if fault is Fault.LAGGING_HEAD:
        return any(m in HEAD_METHODS for m in methods)
    if fault is Fault.NULL:
        return any(m in NULLABLE_METHODS for m in methods)
    return bool(methods)


def _target(fault: Fault, answers: list[Any], by_id: dict[Any, Any], aimed: str | None,
            number: int) -> dict[str, Any] | None:
    """The answer of the batch the JSON-RPC level fault replaces."""
    wanted: frozenset[str] | None
    if fault not in _ANSWER_FAULTS:
        return None
    if aimed is not None:
        wanted = frozenset({aimed})
    elif fault in _RPC_ERRORS:
        wanted = None
    elif fault is Fault.LAGGING_HEAD:
        wanted = HEAD_METHODS
    else:
        wanted = NULLABLE_METHODS
    fitting = [a for a in answers if isinstance(a, dict) and "result" in a and (
        wanted is None or by_id.get(a.get("id"), {}).get("method") in wanted)]
    if not fitting:
        return None
    return fitting[number % len(fitting)]


def _apply_fault(fault: Fault, answer: dict[str, Any], lag: int) -> None:
    if fault in _RPC_ERRORS:
        answer.pop("result", None)
        answer["error"] = dict(_RPC_ERRORS[fault])
    elif fault is Fault.NULL:
        answer["result"] = None
    elif fault is Fault.LAGGING_HEAD:
        real = answer["result"]
        if isinstance(real, str) and real.startswith("0x"):
            answer["result"] = hex(max(0, int(real, 16) - lag))
        elif isinstance(real, int):
            answer["result"] = max(0, real - lag)


def _reset(request: web.Request) -> None:
    """Closes the client's connection with a TCP RST (SO_LINGER 0), answering nothing."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
