"""Every RPC answer sorted once, where it arrives: a result, a retriable fault or a final error.

The same fault gets the same class on every chain. An HTTP status, a transport exception or an
unreadable answer (bad JSON, not an object, neither result nor error, a batch of the wrong
length or with an id missing) mean the same on EVM and Solana; only what a JSON-RPC error code
means differs per chain kind, and that is a table (``EVM``, ``SOLANA``). Pure: no I/O here.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from verifier.errors import (
    BatchRefusedError,
    ExecutionReverted,
    FinalRpcError,
    RangeTooLargeError,
    RetriableRpcError,
    RpcError,
    SlotSkippedError,
)

# Messages that mean "slow down" whatever the code, on every chain.
BUSY_MESSAGES = ("rate limit", "too many requests")
# Messages providers use to refuse an eth_getLogs range or result size.
RANGE_MESSAGES = (
    "query returned more than",
    "log response size exceeded",
    "block range is too large",
    "range is too large",
    "exceed maximum block range",
    "response size exceeded",
    "too many results",
)


@dataclass(frozen=True)
class Codes:
    """What one chain kind's JSON-RPC error codes and messages mean; the rest is final."""

    kind: str
    retriable: frozenset[int]
    retriable_range: tuple[int, int] | None = None  # inclusive
    own_types: Mapping[int, type[RpcError]] = field(default_factory=dict)
    final_messages: tuple[str, ...] = ()  # checked before the retriable codes
    reverted_messages: tuple[str, ...] = ()  # ExecutionReverted, checked first of all
    range_methods: frozenset[str] = frozenset()  # where RANGE_MESSAGES mean RangeTooLargeError


EVM = Codes(
    "evm",
    retriable=frozenset({429, -32005, -32603}),
    retriable_range=(-32099, -32000),  # implementation-defined server errors: header not found...
    reverted_messages=("revert",),  # execution reverted: asking again gives the same answer
    range_methods=frozenset({"eth_getLogs"}),
)
SOLANA = Codes(
    "solana",
    retriable=frozenset({
        429,  # rate limited, sent as a JSON-RPC code by rpcpool and others
        -32005,  # node behind
        -32603,  # internal error
        -32004,  # block not available for slot (yet)
        -32014,  # block status not yet available
        -32016,  # minimum context slot not reached
        -32019,  # long-term storage unreachable
    }),
    own_types={-32007: SlotSkippedError, -32009: SlotSkippedError},
)


def unreadable(what: str, endpoint: str, detail: str) -> RetriableRpcError:
    """An answer that cannot be read is a node or proxy failing, never a verdict: retried."""
    return RetriableRpcError(f"{what}: unreadable answer: {detail}", endpoint=endpoint)


def rpc_error(error: Any, method: str, endpoint: str, codes: Codes) -> RpcError:
    """A JSON-RPC error object sorted by the chain kind's table."""
    if not isinstance(error, dict) or not _is_int(error.get("code")):
        return unreadable(method, endpoint, f"error object {error!r:.120}")
    code: int = error["code"]
    message = str(error.get("message", ""))
    low = message.lower()
    text = f"{method}: JSON-RPC error {code}: {message}"
    if method in codes.range_methods and any(m in low for m in RANGE_MESSAGES):
        return RangeTooLargeError(text, endpoint=endpoint, code=code)
    if code in codes.own_types:
        return codes.own_types[code](text, endpoint=endpoint, code=code)
    if any(m in low for m in codes.reverted_messages):
        return ExecutionReverted(text, endpoint=endpoint, code=code)
    if any(m in low for m in codes.final_messages):
        return FinalRpcError(text, endpoint=endpoint, code=code)
    if code in codes.retriable or _in_range(code, codes.retriable_range) \
            or any(m in low for m in BUSY_MESSAGES):
        return RetriableRpcError(text, endpoint=endpoint, code=code)
    return FinalRpcError(text, endpoint=endpoint, code=code)


def http_error(status: int, retry_after: str | None, what: str, endpoint: str
               ) -> RpcError | None:
    """429, 408 and 5xx are retriable (429 with its Retry-After), any other 4xx is final;
    None when the status lets the body be read."""
    text = f"{what}: HTTP {status}"
    if status == 429:
        return RetriableRpcError(text, endpoint=endpoint, code=429,
                                 retry_after=parse_retry_after(retry_after))
    if status >= 500 or status == 408:
        return RetriableRpcError(text, endpoint=endpoint, code=status)
    if status >= 400:
        return FinalRpcError(text, endpoint=endpoint, code=status)
    return None


def transport_error(exc: BaseException, what: str, endpoint: str) -> RetriableRpcError:
    """Whatever the HTTP layer raises is retriable, known or not. An unknown exception may be a
    passing fault as well as a bug; called final, it would reach places where a final error is
    a verdict (a refused batch, a reverted EIP-1271 call rejects a claim). Retried, a lasting
    bug still surfaces once the attempts run out, and never as "not paid"."""
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
        return RetriableRpcError(f"{what}: request timed out", endpoint=endpoint)
    return RetriableRpcError(f"{what}: request failed: {exc.__class__.__name__}: {exc}",
                             endpoint=endpoint)


def decode(raw: bytes, what: str, endpoint: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise unreadable(what, endpoint, f"not JSON ({exc})") from exc


def item(answer: Any, method: str, endpoint: str, codes: Codes) -> Any:
    """One call's answer: its result, or the RpcError it stands for (returned, not raised)."""
    if not isinstance(answer, dict):
        return unreadable(method, endpoint, f"not an object: {answer!r:.80}")
    if answer.get("error") is not None:
        return rpc_error(answer["error"], method, endpoint, codes)
    if "result" not in answer:
        return unreadable(method, endpoint, "neither result nor error")
    return answer["result"]


def result(answer: Any, method: str, endpoint: str, codes: Codes) -> Any:
    """One call's result; its error raised."""
    found = item(answer, method, endpoint, codes)
    if isinstance(found, RpcError):
        raise found
    return found


def batch_items(answers: Any, methods: Sequence[str], endpoint: str, codes: Codes
                ) -> list[Any]:
    """A batch answer matched to the calls (ids 0..n-1) in call order: each item its result or
    its RpcError. Raises when the answer as a whole is an error or cannot be read."""
    if isinstance(answers, dict) and answers.get("error") is not None:
        failure = rpc_error(answers["error"], "batch", endpoint, codes)
        if failure.retriable:
            raise failure
        raise BatchRefusedError(str(failure), endpoint=endpoint, code=failure.code)
    if not isinstance(answers, list):
        raise unreadable("batch", endpoint, "not a list")
    if len(answers) != len(methods):
        raise unreadable("batch", endpoint, f"{len(answers)} replies to {len(methods)} calls")
    by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
    missing = [i for i in range(len(methods)) if i not in by_id]
    if missing:
        raise unreadable("batch", endpoint, f"no reply with id {missing[0]}")
    return [item(by_id[i], m, endpoint, codes) for i, m in enumerate(methods)]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(code: int, bounds: tuple[int, int] | None) -> bool:
    return bounds is not None and bounds[0] <= code <= bounds[1]
