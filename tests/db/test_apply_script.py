"""scripts/apply_x402_migration.sh, run for real against fresh databases."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.db import data
from verifier import embedded
from verifier.sqlfiles import data_root

SCRIPT = data_root() / "scripts" / "apply_x402_migration.sh"
GUIDE_OBJECTS = """
SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'x402_%%'),
       (SELECT count(*) FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'v_x402_%%'),
       (SELECT count(*) FROM pg_proc WHERE proname LIKE '%%x402%%')
"""
# A password with the characters that break naive URL handling (':' '@' '/' '%' and a space).
PASSWORD = "p:ss@w/rd% 1"


def apply(url: str, env: dict[str, str], cwd: Path, *args: str,
          **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd,
                          env={**env, "DATABASE_URL": url, **extra_env},
                          capture_output=True, text=True, timeout=120)


def objects(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as c:
        return c.execute(GUIDE_OBJECTS).fetchone()


def dumps(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dump")) if folder.exists() else []


def test_dry_run_changes_nothing(empty_database_url, pg_env, tmp_path):
    done = apply(empty_database_url, pg_env, tmp_path, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing will be changed" in done.stdout
    assert "would back up with: pg_dump -Fc" in done.stdout
    assert "would apply:" in done.stdout and "--single-transaction" in done.stdout
    assert "the x402 schema is not (fully) there yet" in done.stdout
    assert objects(empty_database_url) == (0, 0, 0)
    assert not (tmp_path / "var").exists()


def test_real_run_backs_up_applies_and_verifies(empty_database_url, pg_env, tmp_path):
    done = apply(empty_database_url, pg_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert objects(empty_database_url) == (4, 4, 2)
    [backup] = dumps(tmp_path / "var" / "backups")
    assert backup.stat().st_size > 0
    assert backup.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    for name in ("x402_analytics", "v_x402_top_payers", "cleanup_expired_x402_payments",
                 "update_x402_analytics"):
        assert name in done.stdout  # the verification queries' output is printed
    assert "x402 schema applied" in done.stdout

    # The guide's example statements work on the result.
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        pid = data.payment(c)
        assert c.execute("SELECT verified_at IS NOT NULL FROM x402_payments WHERE id = %(id)s",
                         {"id": pid}).fetchone()[0]

    listed = subprocess.run(["pg_restore", "--list", str(backup)], env=pg_env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr


def test_run_then_migration_runner_keeps_the_data(empty_database_url, pg_env, tmp_path):
    """An operator who used the script can switch to `x402-verifier migrate` later."""
    from verifier import migrate

    assert apply(empty_database_url, pg_env, tmp_path, "--skip-backup").returncode == 0
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        pid = data.payment(c, requests_allocated=3)
    migrate.run(empty_database_url, say=lambda _m: None)
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        tok = data.token(c, pid)
        assert data.consume(c, tok) == (True, 2, None)


def test_skip_backup_writes_no_dump(empty_database_url, pg_env, tmp_path):
    done = apply(empty_database_url, pg_env, tmp_path, "--skip-backup")
    assert done.returncode == 0, done.stderr
    assert "skipping the backup" in done.stdout
    assert objects(empty_database_url) == (4, 4, 2)
    assert dumps(tmp_path / "var" / "backups") == []


def test_backup_dir_is_configurable(empty_database_url, pg_env, tmp_path):
    target = tmp_path / "elsewhere"
    done = apply(empty_database_url, pg_env, tmp_path, BACKUP_DIR=str(target))
    assert done.returncode == 0, done.stderr
    assert len(dumps(target)) == 1


def test_failing_backup_aborts_before_the_migration(empty_database_url, pg_env, tmp_path):
    done = apply(empty_database_url, pg_env, tmp_path, PG_DUMP="false")
    assert done.returncode == 1
    assert "backup failed" in done.stderr
    assert objects(empty_database_url) == (0, 0, 0)


def test_pg_dump_errors_reach_the_operator_and_partial_dumps_are_removed(
        empty_database_url, pg_env, tmp_path):
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\n"
                    "for a; do case $prev in -f) : > \"$a\"; printf partial > \"$a\";; esac; "
                    "prev=$a; done\n"
                    "echo 'pg_dump: error: disk quota exceeded' >&2\nexit 1\n")
    fake.chmod(0o755)
    done = apply(empty_database_url, pg_env, tmp_path, PG_DUMP=str(fake))
    assert done.returncode == 1
    assert "pg_dump: error: disk quota exceeded" in done.stderr
    assert dumps(tmp_path / "var" / "backups") == []
    assert objects(empty_database_url) == (0, 0, 0)


def test_unreachable_database_fails_at_the_backup(pg_env, tmp_path):
    url = f"postgresql://nobody@/x?host={tmp_path}"
    done = apply(url, pg_env, tmp_path)
    assert done.returncode == 1
    assert "pg_dump" in done.stderr and "backup failed" in done.stderr


def test_a_failing_migration_leaves_the_database_as_it_was(empty_database_url, pg_env, tmp_path):
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute("CREATE TABLE v_x402_top_payers (id INTEGER)")  # the view's name is taken
    done = apply(empty_database_url, pg_env, tmp_path, "--skip-backup")
    assert done.returncode == 1
    assert "migration failed and was rolled back" in done.stderr
    assert objects(empty_database_url) == (0, 0, 0)  # x402_payments was rolled back too


def test_usage_errors(empty_database_url, pg_env, tmp_path):
    assert apply(empty_database_url, pg_env, tmp_path, "--bogus").returncode == 2
    unset = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=pg_env,
                           capture_output=True, text=True, timeout=60)
    assert unset.returncode == 2 and "DATABASE_URL is not set" in unset.stderr


# --- password authentication over TCP --------------------------------------------------------
# The shared test server trusts every connection on a Unix socket, so it cannot show that a
# password reaches the server intact. This starts a small server of its own that listens on
# 127.0.0.1 and demands SCRAM passwords.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _password_server(root: Path) -> Iterator[str]:
    bindir = embedded.bin_dir()
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own user runs it
        with warnings.catch_warnings():  # pgserver warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        ensure_prefix_permissions(root)
        user = "pgserver"
    root.chmod(0o777)
    pgdata, pwfile = root / "pgdata", root / "pw"
    pwfile.write_text("admin-secret\n")
    pwfile.chmod(0o644)
    subprocess.run([str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8"],
                   user=user, check=True, capture_output=True, timeout=120)
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    subprocess.run([str(bindir / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(root / "log"),
                    "-o", options, "start"], user=user, check=True, capture_output=True,
                   timeout=120)
    try:
        yield f"postgresql://postgres:admin-secret@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"],
                       user=user, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def operator_db(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A database owned by a role whose password contains ':' and '@', reached over TCP."""
    with _password_server(tmp_path_factory.mktemp("scram")) as admin:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE x402_operator LOGIN PASSWORD {}").format(
                sql.Literal(PASSWORD)))
            c.execute("CREATE DATABASE x402_operator OWNER x402_operator")
        port = admin.rsplit(":", 1)[1].split("/")[0]
        yield {
            "url": f"postgresql://x402_operator:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
                   "/x402_operator",
            "conninfo": make_conninfo(host="127.0.0.1", port=port, user="x402_operator",
                                      password=PASSWORD, dbname="x402_operator"),
            "wrong": f"postgresql://x402_operator:{quote('p:ss@wrong', safe='')}@127.0.0.1:"
                     f"{port}/x402_operator",
        }


def test_password_with_colon_and_at_works_in_a_url(operator_db, pg_env, tmp_path):
    wrong = apply(operator_db["wrong"], pg_env, tmp_path)
    assert wrong.returncode == 1
    assert "password authentication failed" in wrong.stderr  # the server does check it

    done = apply(operator_db["url"], pg_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert objects(operator_db["url"]) == (4, 4, 2)
    assert len(dumps(tmp_path / "var" / "backups")) == 1
    assert "postgresql://x402_operator:***@127.0.0.1:" in done.stdout
    assert quote(PASSWORD, safe="") not in done.stdout + done.stderr


def test_password_with_colon_and_at_works_in_a_conninfo_string(operator_db, pg_env, tmp_path):
    done = apply(operator_db["conninfo"], pg_env, tmp_path, "--skip-backup")
    assert done.returncode == 0, done.stderr
    assert objects(operator_db["url"]) == (4, 4, 2)
    assert "password=*** dbname=x402_operator" in done.stdout
    assert "1'" not in done.stdout  # no piece of the password is shown
