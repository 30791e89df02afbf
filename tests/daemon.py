"""Running the real daemon inside a test, and waiting for what it writes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import psycopg

from verifier import config
from verifier.daemon import Daemon

T = TypeVar("T")


@contextlib.asynccontextmanager
async def running_daemon(env: dict[str, str], database_url: str,
                         **daemon_options: Any) -> AsyncIterator[Daemon]:
    """The daemon as `x402-verifier run` starts it, on this event loop; stopped on exit.
    `daemon_options` go to Daemon.open (e.g. notifier, metrics_refresh)."""
    cfg = config.load({**env, "DATABASE_URL": database_url})
    stop = asyncio.Event()
    async with Daemon.open(cfg, database_url, **daemon_options) as daemon:
        task = asyncio.create_task(daemon.run(stop))
        try:
            yield daemon
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)


async def eventually(probe: Callable[[], T | None], within: float = 20.0,
                     every: float = 0.1) -> T:
    """Polls `probe` (run in a thread: it may block) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s; last value {value!r}")
        await asyncio.sleep(every)


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
