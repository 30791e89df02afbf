"""The migration ledger (verifier.schema_migrations): read in one place, applied under a lock.

The runner (verifier.migrate), the daemon's start check and doctor all read it through
``applied``/``applied_async``; an absent ledger reads as nothing applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool

from verifier.sqlfiles import queries
from verifier.store import locks
from verifier.store.errors import wrapped


def _q() -> dict[str, str]:
    return queries("migrations.sql")


def applied_on(conn: psycopg.Connection) -> dict[str, str]:
    """{filename: sha256} of every applied migration, on an open connection."""
    with wrapped("read the migration ledger"):
        row = conn.execute(_q()["ledger_exists"]).fetchone()
        if not row or not row[0]:
            return {}
        return {name: sha for name, sha in conn.execute(_q()["applied"]).fetchall()}


def applied(conninfo: str, *, connect_timeout: int = 10) -> dict[str, str]:
    with wrapped("read the migration ledger"), \
            psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout) as conn:
        return applied_on(conn)


async def applied_async(pool: AsyncConnectionPool) -> dict[str, str]:
    async with wrapped("read the migration ledger"), pool.connection() as conn:
        row = await (await conn.execute(_q()["ledger_exists"])).fetchone()
        if not row or not row[0]:
            return {}
        return dict(await (await conn.execute(_q()["applied"])).fetchall())


@contextmanager
def locked(conninfo: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection holding the migrations lock until the block ends."""
    with wrapped("migrate"), psycopg.connect(conninfo, autocommit=True) as conn:
        locks.lock(conn, "migrations")
        try:
            yield conn
        finally:
            locks.unlock(conn, "migrations")


def apply(conn: psycopg.Connection, filename: str, sha256: str, text: str) -> None:
    """One migration file and its ledger row, in one transaction."""
    with wrapped(f"apply {filename}"), conn.transaction():
        conn.execute(text)  # no parameters: the simple protocol runs the whole file
        conn.execute(_q()["record"], {"filename": filename, "sha256": sha256})
