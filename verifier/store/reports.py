"""What reports on the daemon reads (sql/reports.sql): status, metrics counts, doctor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from verifier.sqlfiles import queries
from verifier.store.errors import wrapped


@dataclass(frozen=True)
class Counts:
    """Rows by (chain, status), and when each job last succeeded on any instance."""

    payments: dict[tuple[str, str], int]
    claims: dict[tuple[str, str], int]
    last_ok: dict[str, datetime]
    quarantined: dict[tuple[str, str], int] = field(default_factory=dict)  # (chain, reason)


def _q() -> dict[str, str]:
    return queries("reports.sql")


def status(conninfo: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per chain's cursors, the newest run of each job), as dicts."""
    with wrapped("read status"), \
            psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        cursors = list(conn.execute(_q()["chain_status"]).fetchall())
        runs = list(conn.execute(_q()["last_job_runs"]).fetchall())
    return cursors, runs


def quarantined(conninfo: str) -> list[dict[str, Any]]:
    """The Solana transactions put aside (verifier.solana_quarantine), as dicts."""
    with wrapped("read quarantine"), \
            psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(_q()["quarantined"]).fetchall())


async def counts(pool: AsyncConnectionPool, wait: float) -> Counts:
    async with wrapped("read metrics"), pool.connection(timeout=wait) as conn:
        found = []
        for name in ("payments_by_status", "claims_by_status"):
            rows = await (await conn.execute(_q()[name])).fetchall()
            found.append({(chain, st): int(n) for chain, st, n in rows})
        cur = await conn.execute(_q()["last_job_runs"])
        last_ok = {row[0]: row[7] for row in await cur.fetchall() if row[7] is not None}
        rows = await (await conn.execute(_q()["quarantined_by_reason"])).fetchall()
    return Counts(found[0], found[1], last_ok,
                  {(chain, reason): int(n) for chain, reason, n in rows})


async def ping(pool: AsyncConnectionPool, wait: float) -> None:
    """Raises DatabaseError (or TimeoutError) unless the database answers within ``wait`` s."""
    async with asyncio.timeout(wait), wrapped("ping"), pool.connection(timeout=wait) as conn:
        await conn.execute(_q()["ping"])


def server(conninfo: str, *, connect_timeout: int = 10) -> tuple[str, str]:
    """(server version, host/database) of the database at conninfo."""
    with wrapped("connect"), \
            psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout) as conn:
        row = conn.execute(_q()["server_version"]).fetchone()
        where = f"{conn.info.host or 'socket'}/{conn.info.dbname}"
    return (row[0] if row else "?"), where
