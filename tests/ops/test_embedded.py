"""The embedded PostgreSQL (X402_EMBEDDED_DIR) stays private to its owner: data directory and
socket directory 0700, no mode of a parent changed, peer authentication only, so that another
OS user (uid 65534 here) cannot connect, not even when it could reach the socket. These tests
run as root, as the embedded server's worst case: the server then runs as the user 'pgserver'."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from verifier import embedded
from verifier.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_nobody(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           str(embedded.bin_dir() / "psql"), "-X", "-w", "-d", url,
                           "-c", "SELECT 1"], capture_output=True, text=True, timeout=30)


def socket_dir(url: str) -> Path:
    return Path(url.rsplit("?host=", 1)[1])


def hba_rules(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT type, database, user_name, auth_method, options "
                            "FROM pg_hba_file_rules").fetchall()


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory under /tmp that others may pass through but not list (0711)."""
    made = Path(tempfile.mkdtemp(prefix="x402-emb-"))
    made.chmod(0o711)
    yield made
    subprocess.run(["rm", "-rf", str(made)], check=False)


def test_data_and_socket_are_private_and_parents_keep_their_modes(base):
    parent = base / "parent"
    parent.mkdir(mode=0o711)
    parent.chmod(0o711)
    root = parent / "embedded"
    before = {p: mode(p) for p in (Path("/tmp"), base, parent)}
    url = embedded.start(root)
    try:
        assert {p: mode(p) for p in before} == before
        pgdata = root / "pgdata"
        assert mode(pgdata) == 0o700 and pgdata.stat().st_uid != 0  # run as 'pgserver'
        assert socket_dir(url) == pgdata
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert hba_rules(url) == [("local", ["all"], ["all"], "peer", ["map=x402"])]
        refused = as_nobody(url)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
        # Even with the socket reachable, peer authentication keeps uid 65534 out.
        pgdata.chmod(0o711)
        (pgdata / ".s.PGSQL.5432").chmod(0o777)
        try:
            refused = as_nobody(url)
        finally:
            pgdata.chmod(0o700)
        assert refused.returncode != 0 and "authentication failed" in refused.stderr, refused
    finally:
        embedded.stop(root)
    assert not (root / "pgdata" / "postmaster.pid").exists()  # the last one out stopped it

    # A data directory left open by an older version (trust) is closed at the next start.
    (root / "pgdata" / "pg_hba.conf").write_text("local all all trust\nhost all all all trust\n")
    url = embedded.start(root)
    try:
        assert hba_rules(url) == [("local", ["all"], ["all"], "peer", ["map=x402"])]
        assert {p: mode(p) for p in before} == before
    finally:
        embedded.stop(root)


def test_a_parent_closed_to_the_server_user_is_refused_not_opened(base):
    base.chmod(0o700)
    root = base / "embedded"
    with pytest.raises(ConfigError, match=r"X402_EMBEDDED_DIR: .*cannot reach"):
        embedded.start(root)
    assert mode(base) == 0o700
    assert not (root / "pgdata").exists()


def test_a_long_path_keeps_its_socket_in_a_private_directory(base):
    root = base / ("a" * 60) / ("b" * 40)
    root.parent.mkdir(mode=0o711)
    root.parent.chmod(0o711)
    url = embedded.start(root)
    sockets = socket_dir(url)
    try:
        assert len(str(root / "pgdata" / ".s.PGSQL.5432")) > 107
        assert sockets.parent == Path("/tmp") and sockets.name.startswith("x402-pg-")
        assert mode(sockets) == 0o700 and sockets.stat().st_uid == (root / "pgdata").stat().st_uid
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        refused = as_nobody(url)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
        assert mode(root.parent) == 0o711 and mode(base) == 0o711
    finally:
        embedded.stop(root)
    assert not sockets.exists()


def test_the_server_stops_only_when_the_last_process_lets_it_go(base):
    root = base / "shared"
    url = embedded.start(root)
    try:
        joined = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from verifier import embedded; print(embedded.start(Path(sys.argv[1])))",
             str(root)], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.strip() == url  # the same server, joined
        with psycopg.connect(url) as conn:  # still up after the other process exited
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded.stop(root)
    assert not (root / "pgdata" / "postmaster.pid").exists()
