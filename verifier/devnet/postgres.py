"""An embedded PostgreSQL (pgserver) of its own that a test or the soak may stop and start, and
the statements that make and drop a database on a server (tests/pg.py uses them too).

The session's server is shared by every test, so stopping it would hurt others: this one lives
in its own data directory. Stopped and started with pg_ctl as the server's system user (the
user "pgserver" when running as root, as pgserver itself does), on the same Unix socket, so
clients reconnect to the same URL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from psycopg.conninfo import make_conninfo

from verifier import migrate
from verifier.store import admin


class RestartablePostgres:
    def __init__(self) -> None:
        # As root, the server runs as "pgserver", who must be able to traverse the folder.
        self.base = Path(tempfile.mkdtemp(prefix="x402-reliability-pg-"))
        self.base.chmod(0o755)
        self.pgdata = self.base / "pgdata"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            self._server = pgserver.get_server(self.pgdata, cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.admin_url = self._server.get_uri()
        self.restarts = 0

    def database(self, name: str = "x402") -> str:
        """A new database with every migration applied; its URL."""
        url = create_database(self.admin_url, name)
        migrate.run(url, say=lambda _msg: None)
        return url

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, as when a server goes away."""
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                      "-l", str(self.pgdata / "log"), "start"])
        self.restarts += 1

    def running(self) -> bool:
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def close(self) -> None:
        from pgserver.utils import PostmasterInfo

        if self.running():
            self._pg_ctl(["-w", "-m", "immediate", "stop"])
        # pgserver remembers the first postmaster; after a restart it would not stop ours.
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)
        self._server.cleanup()
        shutil.rmtree(self.base, ignore_errors=True)

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        user = self._server.system_user if os.geteuid() == 0 else None
        pg_ctl(args, pgdata=self.pgdata, user=user, timeout=60)

    def __enter__(self) -> RestartablePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_db(url: str, name: str) -> str:
    return make_conninfo(url, dbname=name)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """A fresh database ``name`` (dropped first if it exists); returns its URL."""
    admin.create_database(admin_url, name, template)
    return with_db(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    admin.drop_database(admin_url, name)
