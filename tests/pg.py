"""A real PostgreSQL for the tests: TEST_DATABASE_URL, else Docker (testcontainers), else pgserver.

One migrated template database per test run; each test gets a fresh copy of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from verifier import migrate
from verifier.devnet.postgres import create_database as create_database
from verifier.devnet.postgres import drop_database as drop_database


def docker_answers(timeout: float = 0.25) -> bool:
    """A Docker engine answers _ping on its socket: milliseconds either way, no long time-outs."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return False
    path = host[len("unix://"):]
    if not Path(path).exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"200 OK" in s.recv(256)
    except OSError:
        return False


@contextlib.contextmanager
def server(tmp_dir: Path) -> Iterator[str]:
    """Yields an admin URL of a real PostgreSQL server."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
    else:
        # As root, pgserver runs PostgreSQL as the user "pgserver", who must be able to reach
        # the data directory: pytest's own temporary folders are private (0700), so use one
        # of ours that others may traverse.
        base = Path(tempfile.mkdtemp(prefix="x402-test-pg-"))
        base.chmod(0o755)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            srv = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
        try:
            yield srv.get_uri()
        finally:
            srv.cleanup()
            shutil.rmtree(base, ignore_errors=True)


def migrated_template(admin_url: str) -> str:
    name = f"x402_template_{os.getpid()}"
    url = create_database(admin_url, name)
    migrate.run(url, say=lambda _msg: None)
    return name


def fresh_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"
