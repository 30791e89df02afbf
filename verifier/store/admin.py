"""Administrative statements (sql/admin.sql): creating and dropping databases (the embedded
server's, the demo's, the tests' and the benchmarks')."""

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


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Drops ``name`` if it exists and creates it again, empty or as a copy of ``template``."""
    q = queries("admin.sql")
    with wrapped(f"create database {name}"), \
            psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
        if template:
            stmt = sql.SQL(q["create_database_from_template"]).format(
                name=sql.Identifier(name), template=sql.Identifier(template))
        else:
            stmt = sql.SQL(q["create_database"]).format(name=sql.Identifier(name))
        conn.execute(stmt)


def drop_database(admin_url: str, name: str) -> None:
    q = queries("admin.sql")
    with wrapped(f"drop database {name}"), psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL(q["drop_database"]).format(name=sql.Identifier(name)))
