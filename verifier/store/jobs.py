"""The scheduled jobs' statements (sql/jobs.sql): job runs, cleanup, analytics, retention.

A run is one transaction on one connection (``run_transaction``) holding its job's lock; the
job's work goes in a savepoint (``savepoint``) so a failure is recorded, not lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from verifier.config import SUPPORTED_CHAINS
from verifier.sqlfiles import queries
from verifier.store import locks
from verifier.store.errors import wrapped


def _q() -> dict[str, str]:
    return queries("jobs.sql")


@contextlib.asynccontextmanager
async def run_transaction(pool: AsyncConnectionPool, job: str
                          ) -> AsyncIterator[psycopg.AsyncConnection]:
    async with wrapped(f"job {job}"), pool.connection() as conn, conn.transaction():
        yield conn


@contextlib.asynccontextmanager
async def savepoint(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    async with wrapped("job"), conn.transaction():
        yield


async def _one(conn: psycopg.AsyncConnection, name: str, params: dict[str, Any]) -> Any:
    async with wrapped(name):
        row = await (await conn.execute(_q()[name], params)).fetchone()
    return row[0] if row else None


async def try_lock(conn: psycopg.AsyncConnection, job: str) -> bool:
    async with wrapped("job lock"):
        return await locks.try_job_lock(conn, job)


async def slot_done(conn: psycopg.AsyncConnection, job: str, slot: datetime) -> bool:
    return bool(await _one(conn, "slot_done", {"job": job, "slot": slot}))


async def record_run(conn: psycopg.AsyncConnection, **run: Any) -> None:
    """job, slot, status, detail (a dict), instance, started_at, finished_at."""
    async with wrapped("record job run"):
        await conn.execute(_q()["record_run"], {**run, "detail": Jsonb(run["detail"])})


async def cleanup(conn: psycopg.AsyncConnection, job_runs_before: datetime) -> tuple[int, int]:
    """(payments expired, old job runs pruned). Hot tokens' slots are merged back first."""
    await _one(conn, "merge_request_slots", {})
    expired = await _one(conn, "cleanup", {})
    async with wrapped("prune job runs"):
        cur = await conn.execute(_q()["prune_job_runs"], {"before": job_runs_before})
    return int(expired or 0), cur.rowcount


async def missing_analytics_hours(conn: psycopg.AsyncConnection, now: datetime,
                                  hours: int) -> list[datetime]:
    async with wrapped("find missing analytics hours"):
        cur = await conn.execute(_q()["missing_analytics_hours"],
                                 {"now": now, "hours": hours, "chains": len(SUPPORTED_CHAINS)})
        return [row[0] for row in await cur.fetchall()]


async def update_analytics(conn: psycopg.AsyncConnection, hour: datetime) -> None:
    async with wrapped("update analytics"):
        await conn.execute(_q()["update_analytics"], {"hour": hour})


async def archive_usage_batch(pool: AsyncConnectionPool, before: datetime, batch: int) -> int:
    """Moves up to ``batch`` old usage rows to the archive in its own short transaction."""
    async with wrapped("archive usage"), pool.connection() as conn:
        return int(await _one(conn, "archive_usage_batch", {"before": before, "batch": batch})
                   or 0)


async def prune_claims(conn: psycopg.AsyncConnection, before: datetime) -> int:
    """Deletes claims decided before ``before`` (never one whose token still exists)."""
    async with wrapped("prune claims"):
        cur = await conn.execute(_q()["prune_claims"], {"before": before})
    return cur.rowcount
