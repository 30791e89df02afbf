"""A real PgBouncer (Debian package `pgbouncer`, installed by `make install`) in transaction mode
in front of a test database."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def binary() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer"
                                          if Path("/usr/sbin/pgbouncer").exists() else None)
    if not found:
        raise RuntimeError("pgbouncer is not installed: run `make install` (apt-get install "
                           "pgbouncer) or install the pgbouncer package")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def transaction_pooler(database_url: str, pool_size: int = 20) -> Iterator[str]:
    """Yields a URL of `database_url` through a PgBouncer in transaction mode (at most
    `pool_size` server connections, up to 1,000 clients)."""
    target = conninfo_to_dict(database_url)
    dbname = str(target["dbname"])
    upstream = " ".join(f"{k}={v}" for k, v in target.items()
                        if k in ("host", "port", "user", "password") and v not in (None, ""))
    work = Path(tempfile.mkdtemp(prefix="x402-pgbouncer-"))
    work.chmod(0o777)
    port = _free_port()
    run_as = ""
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; the owner of a Unix-socket server can reach it.
        host = str(target.get("host", ""))
        owner = pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else None
        run_as = f"user = {owner if owner and owner != 'root' else 'postgres'}"
    ini = work / "pgbouncer.ini"
    ini.write_text(f"""[databases]
{dbname} = {upstream} dbname={dbname}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {pool_size}
max_db_connections = {pool_size}
log_connections = 0
log_disconnections = 0
pidfile = {work / "pgbouncer.pid"}
{run_as}
""")
    # Its output goes to a file: a pipe nobody reads fills up and stalls PgBouncer.
    out = (work / "pgbouncer.out").open("wb")
    proc = subprocess.Popen([binary(), str(ini)], stdout=out, stderr=subprocess.STDOUT)
    url = make_conninfo("", host="127.0.0.1", port=port, dbname=dbname,
                        user=str(target.get("user") or "postgres"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(url, autocommit=True, prepare_threshold=None,
                                     connect_timeout=2) as c:
                    c.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not start: "
                                       + (work / "pgbouncer.out").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        shutil.rmtree(work, ignore_errors=True)
