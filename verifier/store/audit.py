"""The soak's audit (sql/audit.sql): what the database holds, read back to compare with what the
chains hold. Read-only, but for the one statement an operator runs by hand (retry the Solana
quarantine now), which the soak runs as the operator would. psycopg errors are left as they
are: the soak reconnects on OperationalError while it restarts PostgreSQL under the daemon."""

from __future__ import annotations

from typing import Any

import psycopg

from verifier.sqlfiles import queries


def rows(conn: psycopg.Connection, name: str) -> list[tuple[Any, ...]]:
    return conn.execute(queries("audit.sql")[name]).fetchall()


def count(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute(queries("audit.sql")[name]).fetchone()
    assert row is not None  # a COUNT(*) answers one row
    return int(row[0])


def retry_quarantined_now(conn: psycopg.Connection) -> None:
    conn.execute(queries("audit.sql")["retry_quarantined_now"])
