"""Where the SQL lives, and the named queries loaded from it.

SQL is kept in .sql files. A query file holds blocks headed by ``-- name: <query_name>``; each
is loaded once and used with ``%(param)s`` placeholders, never built from strings.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def _candidates() -> list[Path]:
    checkout = Path(__file__).resolve().parent.parent
    installed = Path(sys.prefix) / "share" / "x402-verifier"
    return [checkout, installed]


@cache
def data_root() -> Path:
    """The folder holding migrations/ and sql/ (the checkout, or a wheel's share folder)."""
    for root in _candidates():
        if (root / "migrations").is_dir() and (root / "sql").is_dir():
            return root
    raise FileNotFoundError("x402-verifier's migrations/ and sql/ folders were not found")


def migrations_dir() -> Path:
    return data_root() / "migrations"


def parse_queries(text: str) -> dict[str, str]:
    """Split a query file into {name: sql}. Text before the first name is a comment."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        sql = body.strip()
        if not sql:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = sql
    return queries


@cache
def queries(filename: str) -> dict[str, str]:
    """The named queries of sql/<filename>, loaded once."""
    return parse_queries((data_root() / "sql" / filename).read_text(encoding="utf-8"))
