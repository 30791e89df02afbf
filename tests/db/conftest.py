from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest

from verifier import embedded


@pytest.fixture(scope="session")
def pg_env() -> dict[str, str]:
    """The environment for psql/pg_dump: the embedded server's client programs come first, since
    an older system pg_dump refuses a newer server."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["PATH"] = f"{embedded.bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def conn_of() -> Iterator[Callable[[str], psycopg.Connection]]:
    """Opens autocommit connections to any test database, closed after the test."""
    opened: list[psycopg.Connection] = []

    def connect(url: str) -> psycopg.Connection:
        opened.append(psycopg.connect(url, autocommit=True))
        return opened[-1]

    yield connect
    for c in opened:
        c.close()
