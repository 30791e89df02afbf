"""Leadership: one watcher per chain, one run of a job at a time, one migration runner.

Watchers and jobs use rows of verifier.leases (migration 008), which only x402_daemon may write
or lock: a login that is not the daemon cannot keep it from its work (an advisory lock, which
any login may take under a guessable key, could). A watcher holds the lease 'watch:<chain>' on
a connection of its own and renews it after every step; another instance takes it over once it
expires or the holder's session is gone. A job locks its row 'job:<job>' for its run's
transaction. The migration runner, which runs as the schema owner before any table exists,
holds the one advisory lock left (LOCK_KEYS, the only place its key is written).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket

import psycopg

from verifier.config import SUPPORTED_CHAINS
from verifier.errors import DatabaseError
from verifier.sqlfiles import queries
from verifier.store.errors import describe

LOCK_KEYS: dict[str, int] = {"migrations": 1}
WATCH_LEASES = {chain: f"watch:{chain}" for chain in SUPPORTED_CHAINS}
JOB_LEASES = {job: f"job:{job}" for job in ("cleanup", "analytics", "retention")}
LEASE_SECONDS = 60.0  # a watcher that has not renewed its lease for this long loses it


def sql() -> dict[str, str]:
    return queries("locks.sql")


def holder_name() -> str:
    """Who holds a lease: host and process, and a random part (two watchers of one process,
    or a pid reused after a restart, are never the same holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


async def try_job_lock(conn: psycopg.AsyncConnection, job: str) -> bool:
    """The job's row lock for the transaction in hand; False while another run holds it."""
    cur = await conn.execute(sql()["try_job_lock"], {"name": JOB_LEASES[job]})
    return await cur.fetchone() is not None


def lock(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql()["lock"], {"key": LOCK_KEYS[name]})


def unlock(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql()["unlock"], {"key": LOCK_KEYS[name]})


class ChainLease:
    """A chain's lease, taken and renewed on a connection of its own (its session is the
    holder's proof of life): one active watcher per chain."""

    def __init__(self, conninfo: str, chain: str, seconds: float = LEASE_SECONDS):
        self.conninfo = conninfo
        self.name = WATCH_LEASES[chain]
        self.holder = holder_name()
        self.seconds = seconds
        self.conn: psycopg.AsyncConnection | None = None

    async def take(self) -> bool:
        """Takes the lease or renews it; False while another live instance holds it."""
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            cur = await self.conn.execute(sql()["take_lease"], {
                "name": self.name, "holder": self.holder, "seconds": self.seconds})
            return await cur.fetchone() is not None
        except psycopg.Error as exc:
            await self._close()
            raise DatabaseError(describe("lease", exc)) from exc

    async def release(self) -> None:
        """Gives the lease up at once (a clean stop), so a standby need not wait for it."""
        conn = self.conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(sql()["release_lease"],
                                   {"name": self.name, "holder": self.holder})
        await self._close()

    async def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
