"""Where psycopg errors become DatabaseError: once, at the gateway, chained with ``from exc``."""

from __future__ import annotations

from types import TracebackType

import psycopg

from verifier.errors import DatabaseError


class wrapped:
    """``with wrapped("what"):`` / ``async with``: a psycopg error inside becomes DatabaseError
    naming what was being done, so no caller above the store sees psycopg's types."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, psycopg.Error):
            raise DatabaseError(describe(self.what, exc)) from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, exc, tb)


def describe(what: str, exc: BaseException) -> str:
    """One line: what failed, the error class, the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{what}: {exc.__class__.__name__}: {text}".strip().rstrip(":")
