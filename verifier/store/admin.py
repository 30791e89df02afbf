"""Administrative statements (sql/admin.sql): creating the embedded server's database."""

from __future__ import annotations

import psycopg
from psycopg import sql

from verifier.sqlfiles import queries
from verifier.store.errors import wrapped


def ensure_database(admin_url: str, database: str) -> None:
    """Creates ``database`` unless it exists (identifiers quoted by psycopg.sql)."""
    q = queries("admin.sql")
    with wrapped(f"create database {database}"), \
            psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute(q["database_exists"], {"name": database}).fetchone():
            conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(database)))
