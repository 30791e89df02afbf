"""Advisory locks, and the one table of their keys.

Every lock is the two-key form (402, key); LOCK_KEYS is the only place a key is written, and
sql/locks.sql takes it as a parameter. A watcher holds a session lock on its own connection (one
active watcher per chain); a job holds a transaction lock for its run; migrations hold a
session lock while they apply.
"""

from __future__ import annotations

import contextlib

import psycopg

from verifier.errors import DatabaseError
from verifier.sqlfiles import queries
from verifier.store.errors import describe

LOCK_KEYS: dict[str, int] = {
    "migrations": 1,
    "watch:base": 10, "watch:ethereum": 11, "watch:solana": 12,
    "job:cleanup": 20, "job:analytics": 21, "job:retention": 22,
}
WATCHER_LOCK = {k.split(":", 1)[1]: v for k, v in LOCK_KEYS.items() if k.startswith("watch:")}
JOB_KEYS = {k.split(":", 1)[1]: v for k, v in LOCK_KEYS.items() if k.startswith("job:")}


def sql() -> dict[str, str]:
    return queries("locks.sql")


async def try_xact_lock(conn: psycopg.AsyncConnection, name: str) -> bool:
    """The transaction-level lock ``name``; False when another session holds it."""
    row = await (await conn.execute(sql()["try_xact_lock"], {"key": LOCK_KEYS[name]})).fetchone()
    return bool(row and row[0])


def lock(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql()["lock"], {"key": LOCK_KEYS[name]})


def unlock(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql()["unlock"], {"key": LOCK_KEYS[name]})


class ChainLock:
    """A session advisory lock held on its own connection: one active watcher per chain.

    If the connection dies the lock is released by PostgreSQL and a standby takes over."""

    def __init__(self, conninfo: str, key: int):
        self.conninfo = conninfo
        self.key = key
        self.conn: psycopg.AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            cur = await self.conn.execute(sql()["try_lock"], {"key": self.key})
            row = await cur.fetchone()
            return bool(row and row[0])
        except psycopg.Error as exc:
            await self.release()
            raise DatabaseError(describe("advisory lock", exc)) from exc

    async def still_held(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            await self.conn.execute(queries("reports.sql")["ping"])
            return True
        except psycopg.Error:
            await self.release()
            return False

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(sql()["unlock"], {"key": self.key})
            await conn.close()
