"""Shared pieces of the operations tests: job runners on their own pools, the daemon in-process
with a notifier and fast metrics, HTTP and datagram helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from tests.daemon import running_daemon as shared_running_daemon
from verifier.daemon import Daemon
from verifier.jobs import Jobs, utc_now
from verifier.systemd import Notifier

PAYEE = "0x2222222222222222222222222222222222222222"


@contextlib.asynccontextmanager
async def job_runner(url: str, *, instance: str, clock: Callable[[], datetime] = utc_now,
                     **options: Any) -> AsyncIterator[Jobs]:
    """A Jobs on a pool of its own: what one daemon instance has."""
    pool = AsyncConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True},
                               open=False)
    await pool.open(wait=True)
    try:
        yield Jobs(pool, backfill_hours=options.pop("backfill_hours", 24),
                   retention_days=options.pop("retention_days", 90), clock=clock,
                   instance=instance, **options)
    finally:
        await pool.close()


def daemon_env(rpc_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "X402_CHAINS": "base",
        "X402_BASE_RPC_URLS": rpc_url,
        "X402_BASE_PAYMENT_ADDRESS": PAYEE,
        "X402_BASE_START_BLOCK": "0",
        "X402_BASE_CONFIRMATIONS": "1",
        "X402_POLL_INTERVAL": "0.1",
        "X402_METRICS_ADDR": "127.0.0.1:0",
        "X402_WORKERS": "1",
        "X402_ANALYTICS_BACKFILL_HOURS": "3",
        # Scheduled runs would add to what the tests count: once a year, at New Year.
        "X402_CLEANUP_CRON": "0 0 1 1 *",
        "X402_ANALYTICS_CRON": "0 0 1 1 *",
        "X402_LOG_FORMAT": "console",
    }
    env.update(overrides)
    return env


@contextlib.asynccontextmanager
async def running_daemon(env: dict[str, str], database_url: str, *,
                         notifier: Notifier | None = None) -> AsyncIterator[Daemon]:
    """tests.daemon.running_daemon, with metrics refreshed often and a notifier of choice."""
    async with shared_running_daemon(env, database_url, notifier=notifier or Notifier(None),
                                     metrics_refresh=0.1) as daemon:
        yield daemon


def base_url(daemon: Daemon) -> str:
    assert daemon.metrics_server is not None
    host, port = daemon.metrics_server.address
    return f"http://{host}:{port}"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def notify_socket() -> tuple[socket.socket, str]:
    """A bound AF_UNIX datagram socket in a short path (sun_path is limited to 108 bytes)."""
    path = str(Path(tempfile.mkdtemp(prefix="x402-notify-")) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock, path


async def datagram(sock: socket.socket, within: float = 20.0) -> str:
    loop = asyncio.get_running_loop()
    return (await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout=within)).decode()


def admin_query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []
