"""Applies migrations/NNN_*.sql in order, each in its own transaction, exactly once.

The ledger (verifier.schema_migrations) records each file's name and SHA-256; an applied file
that has changed since stops the run. A session advisory lock keeps two runners from
interleaving: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verifier.errors import MigrationError
from verifier.sqlfiles import migrations_dir
from verifier.store import ledger

_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    filename: str
    sql: str
    sha256: str


def discover(folder: Path | None = None) -> list[Migration]:
    """The forward migrations in a folder, in order; rollback files are never among them."""
    folder = folder or migrations_dir()
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        name = path.name
        if name.endswith("_rollback.sql"):
            continue
        match = _FILE.match(name)
        if not match:
            raise MigrationError(f"{name}: migration files are named NNN_lowercase_words.sql")
        if match.group(1) in numbers:
            raise MigrationError(f"{name} and {numbers[match.group(1)]} share a number")
        numbers[match.group(1)] = name
        raw = path.read_bytes()
        found.append(Migration(name, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()))
    return found


def pending(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """Migrations not yet applied; refuses when an applied file was edited afterwards."""
    for m in migrations:
        recorded = applied.get(m.filename)
        if recorded is not None and recorded != m.sha256:
            raise MigrationError(
                f"{m.filename} changed after it was applied (applied sha256 {recorded[:12]}, "
                f"file now {m.sha256[:12]}); write a new migration instead of editing it"
            )
    return [m for m in migrations if m.filename not in applied]


def run(
    conninfo: str,
    *,
    dry_run: bool = False,
    folder: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Applies what is pending (or, with dry_run, only says what would run). Returns the names."""
    migrations = discover(folder)
    if not migrations:
        raise MigrationError("no migration files found")
    with ledger.locked(conninfo) as conn:
        todo = pending(migrations, ledger.applied_on(conn))
        for m in todo:
            if dry_run:
                say(f"would apply {m.filename}")
                continue
            ledger.apply(conn, m.filename, m.sha256, m.sql)
            say(f"applied {m.filename}")
        if not todo:
            say("database is up to date")
        return [m.filename for m in todo]
