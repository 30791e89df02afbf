"""structlog set-up: JSON lines when not on a terminal (systemd, files), console on a terminal.

Every event, whatever logs it (ours, or the standard logging of a library), goes through
verifier.redact.scrub before it is written: no RPC credential reaches a log line, even inside an
exception's text or a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from verifier import redact


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = (structlog.processors.JSONRenderer() if use_json
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter(logging.BASIC_FORMAT))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def scrub_event(_logger: Any, _method: str, event: MutableMapping[str, Any]
                ) -> MutableMapping[str, Any]:
    """A structlog processor: every value of the event, credentials removed."""
    for key, value in event.items():
        event[key] = _scrub_value(value)
    return event


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact.scrub(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(v) for v in value]
    return redact.scrub(str(value))  # an exception, a path...: rendered as its text anyway


class ScrubbingFormatter(logging.Formatter):
    """The standard logging of libraries (aiohttp, asyncio), scrubbed the same way."""

    def format(self, record: logging.LogRecord) -> str:
        return redact.scrub(super().format(record))
