"""The soak's audit (sql/audit.sql): what the database holds, read back to compare with what the
chains hold. Read-only. psycopg errors are left as they are: the soak reconnects on
OperationalError while it restarts PostgreSQL under the daemon."""

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
