"""The database gateway: lock keys and lease names come from one table, and psycopg never leaks
out of it."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

import verifier
from tests.daemon import query
from verifier import migrate
from verifier.config import SUPPORTED_CHAINS
from verifier.errors import DatabaseError
from verifier.jobs import JOBS
from verifier.sqlfiles import data_root, parse_queries
from verifier.store import JOB_LEASES, LOCK_KEYS, WATCH_LEASES, ledger, reports
from verifier.store import api as gateway

ADVISORY = re.compile(r"pg_\w*advisory\w*\s*\(\s*([^,)]+)\s*,\s*(%\(\w+\)s|[^)]+)\)")


def test_lock_keys_are_unique_and_every_lock_takes_its_key_from_the_table(database_url):
    assert len(set(LOCK_KEYS.values())) == len(LOCK_KEYS)
    assert set(WATCH_LEASES) == set(SUPPORTED_CHAINS) and set(JOB_LEASES) == set(JOBS)
    rows = {name for (name,) in query(database_url, "SELECT name FROM verifier.leases")}
    assert rows == set(WATCH_LEASES.values()) | set(JOB_LEASES.values())  # made by 008
    seen = 0
    for path in (data_root() / "sql").glob("*.sql"):
        for name, sql in parse_queries(path.read_text(encoding="utf-8")).items():
            for space, key in ADVISORY.findall(sql):
                assert path.name == "locks.sql", f"{path.name}:{name} takes a lock itself"
                assert (space, key) == ("402", "%(key)s"), f"{name} hard-codes a key"
                seen += 1
    assert seen == 2  # lock, unlock: the migration runner's; the rest are leases


def test_lock_keys_are_not_written_anywhere_else_in_the_package():
    root = Path(verifier.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "locks.py":
            assert "LOCK_KEYS = " not in text and "advisory_lock(" not in text, path


def test_a_bad_database_name_is_a_database_error_chained_to_psycopg(pg_admin_url):
    bad = psycopg.conninfo.make_conninfo(pg_admin_url, dbname="x402_no_such_database")
    for read in (ledger.applied, reports.status, reports.server):
        with pytest.raises(DatabaseError) as failed:
            read(bad)
        assert isinstance(failed.value.__cause__, psycopg.OperationalError)
    with pytest.raises(DatabaseError), gateway.connect(bad):
        pass


def test_a_killed_connection_is_a_database_error(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn, \
            psycopg.connect(database_url, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        with pytest.raises(DatabaseError) as failed:
            gateway.claim_status(conn, 1)
    assert isinstance(failed.value.__cause__, psycopg.Error)
    assert "read claim" in str(failed.value)


def test_a_failed_migration_run_is_a_database_error_naming_the_file(empty_database_url, tmp_path):
    (tmp_path / "001_bad.sql").write_text("SELECT no_such_function();\n")
    with pytest.raises(DatabaseError, match=r"001_bad\.sql"):
        migrate.run(empty_database_url, folder=tmp_path, say=lambda _: None)
    assert ledger.applied(empty_database_url) == {}
