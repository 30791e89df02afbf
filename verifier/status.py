"""`x402-verifier status`: where each chain stands, and the last runs of the scheduled jobs.

Cursors, pending payments and waiting claims come from the database. The head comes from the
chain's RPC when the chains are configured (else '-'). Lag is head minus cursor on EVM chains;
on Solana the cursor is the slot of the newest signature seen on a payment token account, which
stays put while nobody pays, so its lag is not shown here (the daemon's /metrics has it).
Solana transactions put aside because they could not be read (verifier.solana_quarantine) are
listed after the jobs, with why, how often they were tried and when they are tried next.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from verifier import redact
from verifier.config import ChainConfig
from verifier.errors import VerifierError
from verifier.store import reports

HEAD_TIMEOUT = 10.0


def gather(url: str, chains: Mapping[str, ChainConfig]) -> dict[str, Any]:
    rows, runs = reports.status(url)
    quarantined = reports.quarantined(url)
    cursors = {r["chain"]: r for r in rows}
    heads = asyncio.run(_heads(chains)) if chains else {}
    names = list(chains) + sorted(set(cursors) - set(chains))
    report = {"chains": [_chain_row(n, cursors.get(n), heads.get(n), chains.get(n))
                         for n in names],
              "jobs": [_job_row(r) for r in runs],
              "quarantined": quarantined}
    for row in report["chains"]:
        row["quarantined"] = sum(1 for q in quarantined if q["chain"] == row["chain"])
    return report


def _chain_row(name: str, cursor: dict[str, Any] | None, head: int | str | None,
               cfg: ChainConfig | None) -> dict[str, Any]:
    position = cursor["position"] if cursor else None
    evm = (cfg.kind if cfg else ("solana" if name == "solana" else "evm")) == "evm"
    return {
        "chain": name,
        "head": head if isinstance(head, int) else None,
        "head_error": head if isinstance(head, str) else None,
        "cursor": position,
        "lag": head - position if evm and isinstance(head, int) and position is not None
        else None,
        "cursor_updated_at": cursor["updated_at"] if cursor else None,
        "pending_payments": cursor["pending_payments"] if cursor else 0,
        "waiting_claims": cursor["waiting_claims"] if cursor else 0,
    }


def _job_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "job": r["job"], "status": r["status"], "slot": r["slot"],
        "started_at": r["started_at"],
        "seconds": round((r["finished_at"] - r["started_at"]).total_seconds(), 3),
        "detail": r["detail"], "instance": r["instance"], "last_ok_at": r["last_ok_at"],
    }


async def _heads(chains: Mapping[str, ChainConfig]) -> dict[str, int | str]:
    """Each chain's head, or why it could not be read."""
    names = list(chains)
    found = await asyncio.gather(*(_head(chains[n]) for n in names))
    return dict(zip(names, found, strict=True))


async def _head(cfg: ChainConfig) -> int | str:
    from verifier.chains import open_adapter

    try:
        async with asyncio.timeout(HEAD_TIMEOUT):
            adapter = await open_adapter(cfg)
            try:
                return (await adapter.view()).head
            finally:
                await adapter.close()
    except (VerifierError, TimeoutError, OSError) as exc:
        return redact.scrub(f"{exc.__class__.__name__}: {exc}".strip())


def show(url: str, chains: Mapping[str, ChainConfig], *, as_json: bool = False) -> int:
    report = gather(url, chains)
    if as_json:
        print(json.dumps(report, default=_default, indent=2))
        return 0
    rows = [("chain", "head", "cursor", "lag", "cursor updated", "pending payments",
             "waiting claims")]
    rows += [(c["chain"], _cell(c["head"]), _cell(c["cursor"]), _cell(c["lag"]),
              _age(c["cursor_updated_at"]), str(c["pending_payments"]), str(c["waiting_claims"]))
             for c in report["chains"]]
    _table(rows, empty="no chain configured or scanned yet")
    for c in report["chains"]:
        if c["head_error"]:
            print(f"  {c['chain']}: head unavailable: {c['head_error']}")
    print()
    jobs = [("job", "last run", "status", "seconds", "detail", "last ok")]
    jobs += [(j["job"], _age(j["started_at"]), j["status"], f"{j['seconds']:.3f}",
              json.dumps(j["detail"], sort_keys=True), _age(j["last_ok_at"]))
             for j in report["jobs"]]
    _table(jobs, empty="no job has run yet")
    if report["quarantined"]:
        print()
        print(f"quarantined transactions ({len(report['quarantined'])}): listed on a payment "
              "account, not readable yet; retried until they are")
        held = [("chain", "signature", "account", "slot", "reason", "code", "attempts",
                 "first seen", "next retry")]
        held += [(q["chain"], q["signature"], q["account"], str(q["slot"]), q["reason"],
                  _cell(q["error_code"]), str(q["attempts"]), _age(q["first_seen"]),
                  _until(q["next_retry_at"])) for q in report["quarantined"]]
        _table(held, empty="")
    return 0


def _table(rows: Sequence[tuple[str, ...]], *, empty: str) -> None:
    if len(rows) == 1:
        print(empty)
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago"


def _until(when: datetime) -> str:
    seconds = (when - datetime.now(UTC)).total_seconds()
    return "due" if seconds <= 0 else f"in {seconds:.0f}s"


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
