"""The migration runner (verifier.migrate, `x402-verifier migrate`) and the 002 rollback file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from tests.db import data
from verifier import migrate
from verifier.errors import DatabaseError, MigrationError
from verifier.sqlfiles import migrations_dir

# Later migrations (004+) belong to other pieces; these tests hold for whatever is there.
ALL = [m.filename for m in migrate.discover()]
OURS = ["001_verifier_schema.sql", "002_x402_payments.sql", "003_verifier_consume.sql"]
SCHEMAS = {"schemas": ["public", "verifier"]}

# Everything that makes up the schema, as text, so two databases can be compared.
CATALOG = {
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "columns": """
        SELECT table_schema, table_name, column_name, data_type, numeric_precision,
               numeric_scale, is_nullable, column_default, is_identity
          FROM information_schema.columns WHERE table_schema = ANY(%(schemas)s)
         ORDER BY 1, 2, ordinal_position""",
    "constraints": """
        SELECT n.nspname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
          JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "indexes": """
        SELECT schemaname, indexname, indexdef FROM pg_indexes
         WHERE schemaname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
         WHERE schemaname = ANY(%(schemas)s) ORDER BY 1, 2""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_functiondef(p.oid) FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY(%(schemas)s) ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND n.nspname = ANY(%(schemas)s) ORDER BY 1, 2""",
}


def catalog(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as c:
        return {name: c.execute(q, SCHEMAS).fetchall() for name, q in CATALOG.items()}


def ledger(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as c:
        return c.execute("SELECT filename, sha256 FROM verifier.schema_migrations "
                         "ORDER BY filename").fetchall()


def quiet(_msg: str) -> None:
    pass


def test_runner_applies_everything_once_then_nothing(empty_database_url, database_url):
    said: list[str] = []
    assert migrate.run(empty_database_url, say=said.append) == ALL
    assert said == [f"applied {name}" for name in ALL]
    expected = [(m.filename, m.sha256) for m in migrate.discover()]
    assert ledger(empty_database_url) == expected
    said.clear()
    assert migrate.run(empty_database_url, say=said.append) == []
    assert said == ["database is up to date"]
    assert ledger(empty_database_url) == expected
    assert catalog(empty_database_url) == catalog(database_url)


def test_rollback_files_are_never_applied():
    names = [m.filename for m in migrate.discover()]
    assert names[:3] == OURS
    assert not [n for n in names if "rollback" in n]
    assert (migrations_dir() / "002_x402_payments_rollback.sql").exists()


def test_dry_run_applies_nothing(empty_database_url, database_url):
    said: list[str] = []
    assert migrate.run(empty_database_url, dry_run=True, say=said.append) == ALL
    assert said == [f"would apply {name}" for name in ALL]
    with psycopg.connect(empty_database_url) as c:
        assert c.execute("SELECT to_regnamespace('verifier')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                         ).fetchone()[0] == 0
    assert migrate.run(database_url, dry_run=True, say=quiet) == []


def test_an_edited_applied_file_is_refused_and_nothing_changes(empty_database_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    migrate.run(empty_database_url, folder=folder, say=quiet)
    before_ledger, before_catalog = ledger(empty_database_url), catalog(empty_database_url)

    with (folder / "002_x402_payments.sql").open("a") as f:
        f.write("\nCREATE TABLE edited_after_the_fact (id INTEGER);\n")
    (folder / "999_later.sql").write_text("CREATE TABLE later_migration (id INTEGER);\n")
    with pytest.raises(MigrationError, match=r"002_x402_payments\.sql changed after it was applied"):
        migrate.run(empty_database_url, folder=folder, say=quiet)

    assert ledger(empty_database_url) == before_ledger
    assert catalog(empty_database_url) == before_catalog


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    (folder / "999_broken.sql").write_text(
        "CREATE TABLE half_done (id INTEGER);\nSELECT no_such_function();\n")
    with pytest.raises(DatabaseError, match=r"999_broken\.sql") as failed:
        migrate.run(empty_database_url, folder=folder, say=quiet)
    assert isinstance(failed.value.__cause__, psycopg.errors.UndefinedFunction)
    assert [name for name, _ in ledger(empty_database_url)] == ALL
    with psycopg.connect(empty_database_url) as c:
        assert c.execute("SELECT to_regclass('half_done')").fetchone()[0] is None


def test_two_concurrent_runners_apply_each_file_once(empty_database_url, database_url, conn):
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def runner(k: int) -> None:
        try:
            results[k] = migrate.run(empty_database_url, say=quiet)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    # Hold the runners' lock so that both are surely waiting on it before either starts.
    with psycopg.connect(empty_database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(402, 1)")
        threads = [threading.Thread(target=runner, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for _ in range(3000):
            waiting = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND NOT granted").fetchone()[0]
            if waiting == 2:
                break
            holder.execute("SELECT pg_sleep(0.01)")
        assert waiting == 2
        holder.execute("SELECT pg_advisory_unlock(402, 1)")
        for t in threads:
            t.join(timeout=60)

    assert not errors
    assert sorted(results.values()) == [[], ALL]
    assert [name for name, _ in ledger(empty_database_url)] == ALL
    assert catalog(empty_database_url) == catalog(database_url)


def run_psql(url: str, file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f",
                           str(file)], env=env, capture_output=True, text=True, timeout=60)


def test_migrate_rollback_migrate_restores_the_schema(database_url, pg_env):
    migrated = catalog(database_url)
    rollback = migrations_dir() / "002_x402_payments_rollback.sql"
    done = run_psql(database_url, rollback, pg_env)
    assert done.returncode == 0, done.stderr

    left = catalog(database_url)
    assert [r for r in left["relations"] if r[0] == "public"] == []
    functions = {r[1] for r in left["functions"]}
    assert "payments_before_write" not in functions and "consume_request" in functions
    assert [name for name, _ in ledger(database_url)] == [n for n in ALL if n != OURS[1]]
    again = run_psql(database_url, rollback, pg_env)  # a second rollback is harmless
    assert again.returncode == 0, again.stderr

    assert migrate.run(database_url, say=quiet) == ["002_x402_payments.sql"]
    assert catalog(database_url) == migrated
    for grants in ("006_roles.sql", "008_least_privilege.sql"):  # by hand, as README says
        done = run_psql(database_url, migrations_dir() / grants, pg_env)
        assert done.returncode == 0, done.stderr
    with psycopg.connect(database_url, autocommit=True) as c:
        tok = data.token(c, data.payment(c, requests_allocated=2))
        assert data.consume(c, tok) == (True, 1, None)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", "migrate", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(empty_database_url, pg_env, tmp_path):
    env = {**pg_env, "DATABASE_URL": empty_database_url}

    dry = cli(env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"would apply {name}" for name in ALL]

    first = cli(env)
    assert first.returncode == 0, first.stderr
    assert [name for name, _ in ledger(empty_database_url)] == ALL
    second = cli(env)
    assert (second.returncode, second.stdout.strip()) == (0, "database is up to date")

    bad_config = cli({**env, "X402_CONFIG_FILE": str(tmp_path / "missing.toml")})
    assert bad_config.returncode == 2
    assert "X402_CONFIG_FILE" in bad_config.stderr

    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute("UPDATE verifier.schema_migrations SET sha256 = repeat('0', 64) "
                  "WHERE filename = '002_x402_payments.sql'")
    edited = cli(env)
    assert edited.returncode == 1
    assert "002_x402_payments.sql changed after it was applied" in edited.stderr

    unreachable = cli({**env, "DATABASE_URL": f"postgresql://nobody@/x?host={tmp_path}"})
    assert unreachable.returncode == 1
