"""What an API server calls (sql/api.sql), on the caller's own psycopg connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from verifier.sqlfiles import queries
from verifier.store.errors import wrapped


def _q() -> dict[str, str]:
    return queries("api.sql")


@contextmanager
def connect(conninfo: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection for the functions of verifier.api (as the CLI's claim uses)."""
    with wrapped("connect"), psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


def submit_claim(conn: psycopg.Connection, params: dict[str, Any]) -> tuple[Any, ...]:
    with wrapped("submit claim"):
        row = conn.execute(_q()["submit_claim"], params).fetchone()
    assert row is not None
    return tuple(row)


def claim_status(conn: psycopg.Connection, claim_id: int) -> tuple[str, str | None] | None:
    with wrapped("read claim"):
        row = conn.execute(_q()["claim_status"], {"claim_id": claim_id}).fetchone()
    return (row[0], row[1]) if row else None


def listen_claim_done(conn: psycopg.Connection, on: bool) -> None:
    with wrapped("listen for decided claims"):
        conn.execute(_q()["listen_claim_done" if on else "unlisten_claim_done"])


def wait_notify(conn: psycopg.Connection, timeout: float) -> None:
    """Returns after one notification or the timeout, whichever comes first."""
    with wrapped("wait for a decided claim"):
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            pass


def consume_request(conn: psycopg.Connection, params: dict[str, Any]) -> tuple[Any, ...]:
    with wrapped("consume request"):
        row = conn.execute(_q()["consume_request"], params).fetchone()
    assert row is not None
    return tuple(row)
