"""`x402-verifier status`: where each chain's watcher stands, from the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
from psycopg.rows import dict_row

from verifier.sqlfiles import queries


def gather(url: str) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(queries()["chain_status"]).fetchall())


def show(url: str, *, as_json: bool = False) -> int:
    rows = gather(url)
    if as_json:
        print(json.dumps(rows, default=_default, indent=2))
        return 0
    if not rows:
        print("no chain has been scanned yet")
        return 0
    header = ("chain", "cursor", "updated", "pending payments", "waiting claims")
    table = [header] + [
        (r["chain"], str(r["position"]), _age(r["updated_at"]), str(r["pending_payments"]),
         str(r["waiting_claims"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago"


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
