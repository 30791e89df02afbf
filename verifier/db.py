"""Connections: the configured DATABASE_URL, or the embedded server when it is unset."""

from __future__ import annotations

from pathlib import Path

from verifier import embedded


def resolve_url(database_url: str | None, embedded_dir: Path) -> str:
    return database_url or embedded.start(embedded_dir)
