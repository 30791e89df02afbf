"""An embedded PostgreSQL (the ``pgserver`` wheel) for when DATABASE_URL is not set.

It runs PostgreSQL 16 on a Unix socket under ``<embedded_dir>/pgdata``. The server stops when
the last process that opened it exits; the data stays for the next run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from verifier.errors import ConfigError


def start(embedded_dir: Path, database: str = "x402") -> str:
    """Starts (or joins) the embedded server and returns a URL for ``database``, created if new."""
    server = _server(embedded_dir / "pgdata")
    admin = server.get_uri()
    _ensure_database(admin, database)
    return server.get_uri(database)


def bin_dir() -> Path:
    """Client programs (psql, pg_dump) matching the embedded server's major version."""
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise ConfigError(_MISSING) from exc
    return Path(POSTGRES_BIN_PATH)


_MISSING = (
    "DATABASE_URL: not set, and the embedded PostgreSQL is not installed "
    "(pip install 'x402-verifier[embedded]', or set DATABASE_URL)"
)


def _server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for XDG_RUNTIME_DIR, unset under systemd services and CI.
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:
            raise ConfigError(_MISSING) from exc
        pgdata.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(pgdata.resolve(), cleanup_mode="stop")


def _ensure_database(admin_url: str, database: str) -> None:
    from verifier.store import admin

    admin.ensure_database(admin_url, database)
