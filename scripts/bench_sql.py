#!/usr/bin/env python3
"""Fills a database at the x402 guide's 30-day scale and times the statements the guide promises.

Usage: .venv/bin/python scripts/bench_sql.py [--runs N] [--reuse] [--scale F]

Uses the database `x402_bench` on the server of DATABASE_URL (created, or dropped and created
again), or on the embedded PostgreSQL under var/ when DATABASE_URL is unset. The fill (30,000
payments and tokens, 3,000,000 usage rows, 2,160 analytics rows) runs inside the server with
generate_series. Each statement then runs N times as a prepared statement over one connection;
the figures are client-side wall times (round trip included), median and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import config, db, migrate
from verifier.sqlfiles import queries

BENCH_DB = "x402_bench"
DAYS = 30
PAYMENTS = 30_000
USAGE = 3_000_000
PAYERS = 3_000
USAGE_CHUNK = 500_000

Q = queries("bench.sql")
ADMIN = queries("admin.sql")


@dataclass(frozen=True)
class Case:
    label: str
    query: str
    promise_ms: float | None
    params: Callable[[int], dict[str, Any]] | None = None
    heavy: bool = False


@dataclass(frozen=True)
class Figure:
    label: str
    runs: int
    median_ms: float
    p99_ms: float
    promise_ms: float | None
    rows: int
    server_median_ms: float | None = None
    server_p99_ms: float | None = None

    @property
    def verdict(self) -> str:
        """Against the promise: both sides' p99, else the server's p99, else the medians."""
        promise = self.promise_ms
        if promise is None:
            return "(no promise)"
        server_p99 = self.server_p99_ms if self.server_p99_ms is not None else self.p99_ms
        server_median = (self.server_median_ms if self.server_median_ms is not None
                         else self.median_ms)
        if self.p99_ms < promise and server_p99 < promise:
            return "meets"
        if server_p99 < promise:
            return "server meets; client p99 over"
        if self.median_ms < promise and server_median < promise:
            return "median meets, p99 over"
        return "MISSES"


def say(msg: str) -> None:
    print(msg, flush=True)


# --- the database -------------------------------------------------------------------------------

def bench_url(keep: bool) -> str:
    """The bench database's URL; dropped and created again unless keep and it exists."""
    settings = config.load(os.environ, chains=False)
    base = db.resolve_url(settings.database_url, settings.embedded_dir)
    with psycopg.connect(base, autocommit=True) as admin:
        exists = admin.execute(ADMIN["database_exists"], {"name": BENCH_DB}).fetchone()
        name = sql.Identifier(BENCH_DB)
        if not (keep and exists):
            admin.execute(sql.SQL(ADMIN["drop_database"]).format(name=name))
            admin.execute(sql.SQL(ADMIN["create_database"]).format(name=name))
    return make_conninfo(base, dbname=BENCH_DB)


def fill(url: str, scale: float) -> None:
    payments, usage = int(PAYMENTS * scale), int(USAGE * scale)
    migrate.run(url, say=lambda m: say(f"  {m}"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(Q["fast_fill"])
        params = {"days": DAYS, "payments": payments, "payers": PAYERS}
        timed(f"{payments:,} payments", lambda: conn.execute(Q["fill_payments"], params))
        timed(f"{payments:,} tokens", lambda: conn.execute(Q["fill_tokens"]))
        timed(f"{usage:,} usage rows", lambda: fill_usage(conn, payments, usage))
        timed("settle requests_used and statuses",
              lambda: conn.execute(Q["settle_payments"]))
        timed(f"{DAYS * 24 * 3:,} analytics rows (update_x402_analytics per hour)",
              lambda: conn.execute(Q["fill_analytics"], {"days": DAYS}))
        # Usage arrives in time order in a running system; the fill does not, so the table is
        # put in that order (heap and indexes) before anything is measured.
        timed("CLUSTER x402_usage in created_at order", lambda: conn.execute(Q["cluster_usage"]))
        timed("VACUUM ANALYZE", lambda: conn.execute(Q["vacuum_analyze"]))


def fill_usage(conn: psycopg.Connection, payments: int, target: int) -> None:
    done, first = 0, 0
    while done < target:
        last = first + USAGE_CHUNK - 1
        cur = conn.execute(Q["fill_usage"], {"first": first, "last": last, "payments": payments,
                                              "limit": target - done})
        done += cur.rowcount
        first = last + 1
        say(f"    {done:,} usage rows")


def one(conn: psycopg.Connection, query: str | sql.Composed, params: dict[str, Any] | None = None) -> tuple:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise SystemExit(f"bench: no row from {query!r}")
    return row


def timed(label: str, step: Callable[[], object]) -> None:
    start = time.perf_counter()
    step()
    say(f"  {label}: {time.perf_counter() - start:.1f} s")


def is_filled(url: str, scale: float) -> bool:
    with psycopg.connect(url) as conn:
        if not one(conn, Q["has_schema"])[0]:
            return False
        counts = one(conn, Q["counts"])
        # Earlier runs add a few hundred usage rows (consume_request is measured too).
        return counts[0] == int(PAYMENTS * scale) and counts[2] >= int(USAGE * scale)


# --- the measurements ---------------------------------------------------------------------------

def cycle(values: list[Any], key: str) -> Callable[[int], dict[str, Any]]:
    return lambda i: {key: values[i % len(values)]}


def sample(conn: psycopg.Connection, name: str, n: int) -> list[Any]:
    rows = conn.execute(Q[name], {"n": n}).fetchall()
    if not rows:
        raise SystemExit(f"bench: no rows for sample {name}")
    return [r if len(r) > 1 else r[0] for r in rows]


def measure(conn: psycopg.Connection, case: Case, runs: int) -> Figure:
    """Client-side wall time of the prepared statement (round trip and decoding included), then
    the server's own execution time from EXPLAIN ANALYZE over as many runs (at most 100)."""
    times: list[float] = []
    rows = 0
    for i in range(runs):
        params = case.params(i) if case.params else None
        start = time.perf_counter_ns()
        cur = conn.execute(case.query, params, prepare=True)
        rows = len(cur.fetchall())
        times.append((time.perf_counter_ns() - start) / 1e6)
    explain = sql.Composed([sql.SQL(Q["explain"]), sql.SQL("\n"), sql.SQL(case.query)])
    server = []
    for i in range(min(runs, 100)):
        plan = one(conn, explain, case.params(i) if case.params else None)[0]
        server.append(float(plan[0]["Execution Time"]))
    return Figure(case.label, runs, statistics.median(times), p99(times), case.promise_ms, rows,
                  statistics.median(server), p99(server))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def read_cases(conn: psycopg.Connection, runs: int) -> list[Case]:
    txs = sample(conn, "sample_tx_hashes", runs)
    tokens = sample(conn, "sample_live_tokens", runs)
    payers = sample(conn, "sample_payers", runs)
    return [
        Case("payment lookup by tx_hash", Q["lookup_payment"], 1,
             lambda i: {"tx_hash": txs[i % len(txs)][0]}),
        Case("payment lookup by (chain, tx_hash)", Q["lookup_payment_chain"], 1,
             lambda i: {"chain": txs[i % len(txs)][1], "tx_hash": txs[i % len(txs)][0]}),
        Case("token validation (SELECT)", Q["validate_token"], 1, cycle(tokens, "token_hash")),
        Case("v_x402_active_payments WHERE from_address", Q["active_by_payer"], 10,
             cycle(payers, "from_address")),
        Case("v_x402_active_payments count + sum (daily)", Q["active_summary"], 10),
        Case("v_x402_active_payments, all rows", Q["active_all"], 10, heavy=True),
        Case("v_x402_stats_24h", Q["stats_24h"], 50, heavy=True),
        Case("v_x402_top_payers", Q["top_payers"], 50, heavy=True),
        Case("v_x402_endpoint_stats (top 10)", Q["endpoint_stats"], 50, heavy=True),
        Case("x402_analytics, last 24 hours", Q["analytics_last_24h"], 50),
    ]


def write_cases(conn: psycopg.Connection, runs: int) -> list[Case]:
    tokens = sample(conn, "sample_live_tokens", runs)
    hours = sample(conn, "sample_hours", DAYS * 24)
    return [
        Case("verifier.consume_request (commit)", Q["consume_request"], None,
             cycle(tokens, "token_hash")),
        Case("update_x402_analytics(hour)", Q["update_analytics"], 50, cycle(hours, "hour"),
             heavy=True),
        Case("cleanup_expired_x402_payments(), steady", Q["cleanup"], None, heavy=True),
    ]


def run_cases(conn: psycopg.Connection, cases: list[Case], runs: int) -> Iterator[Figure]:
    for case in cases:
        n = min(runs, 200) if case.heavy else runs
        for _ in range(min(5, n)):  # warm the plan cache and shared buffers
            conn.execute(case.query, case.params(0) if case.params else None, prepare=True)
        figure = measure(conn, case, n)
        say(f"  {figure.label}: median {figure.median_ms:.3f} ms, p99 {figure.p99_ms:.3f} ms "
            f"(server {figure.server_median_ms:.3f} / {figure.server_p99_ms:.3f} ms)")
        yield figure


def first_cleanup(conn: psycopg.Connection) -> Figure:
    """The first run has a backlog: the fill keeps a token for every payment, as the guide's
    volumes do, so this run deletes the tokens of every payment expired over 30 days."""
    tokens_before = one(conn, Q["counts"])[1]
    start = time.perf_counter_ns()
    expired = one(conn, Q["cleanup"])[0]
    ms = (time.perf_counter_ns() - start) / 1e6
    deleted = tokens_before - one(conn, Q["counts"])[1]
    return Figure(f"cleanup_expired_x402_payments(), first run ({expired} payments expired, "
                  f"{deleted:,} tokens deleted)", 1, ms, ms, None, 1)


def worst_case(conn: psycopg.Connection, runs: int) -> list[Figure]:
    """Every payment made active inside a transaction that is rolled back afterwards, so the
    database is left as filled (--reuse measures the same data again)."""
    with conn.transaction(force_rollback=True):
        conn.execute(Q["activate_all"])
        conn.execute(Q["analyze_payments"])
        payers = sample(conn, "sample_payers", runs)
        cases = [
            Case("all payments active: view, all rows", Q["active_all"], 10, heavy=True),
            Case("all payments active: count + sum", Q["active_summary"], 10, heavy=True),
            Case("all payments active: WHERE from_address", Q["active_by_payer"], 10,
                 cycle(payers, "from_address")),
        ]
        figures = list(run_cases(conn, cases, runs))
    conn.execute(Q["vacuum_payments"])
    return figures


# --- the report ---------------------------------------------------------------------------------

def table(figures: list[Figure]) -> str:
    lines = ["| statement | runs | rows | median ms | p99 ms | server median ms | server p99 ms "
             "| guide's promise | |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for f in figures:
        promise = f"< {f.promise_ms:g} ms" if f.promise_ms is not None else "-"
        server = (f"{f.server_median_ms:.3f} | {f.server_p99_ms:.3f}"
                  if f.server_median_ms is not None and f.server_p99_ms is not None else "- | -")
        lines.append(f"| {f.label} | {f.runs} | {f.rows:,} | {f.median_ms:.3f} | "
                     f"{f.p99_ms:.3f} | {server} | {promise} | {f.verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per statement (heavy: 200)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep an already filled x402_bench instead of filling it again")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the guide's volumes (for a quick try; 1 = 30 days)")
    args = parser.parse_args(argv)

    url = bench_url(keep=args.reuse)
    if args.reuse and is_filled(url, args.scale):
        say(f"reusing the filled database {BENCH_DB}")
    else:
        if args.reuse:
            url = bench_url(keep=False)
        say(f"filling {BENCH_DB}")
        start = time.perf_counter()
        fill(url, args.scale)
        say(f"  fill took {time.perf_counter() - start:.0f} s")

    load_before = os.getloadavg()
    with psycopg.connect(url, autocommit=True) as conn:
        payments, tokens, usage, analytics, active, size = one(conn, Q["counts"])
        say(f"{payments:,} payments, {tokens:,} tokens, {usage:,} usage rows, "
            f"{analytics:,} analytics rows, {active:,} active payments, database {size}")
        version = one(conn, Q["server_version"])[0]
        say("measuring reads")
        figures = list(run_cases(conn, read_cases(conn, args.runs), args.runs))
        say("measuring writes")
        figures.append(first_cleanup(conn))
        figures.extend(run_cases(conn, write_cases(conn, args.runs), args.runs))
        say("measuring the worst case: every payment active")
        figures.extend(worst_case(conn, args.runs))

    load_after = os.getloadavg()
    say("")
    say(f"PostgreSQL {version}, {os.cpu_count()} cores, load average {load_before[0]:.1f} "
        f"before and {load_after[0]:.1f} after; times in ms per call: client-side wall time "
        f"(round trip and decoding included) and the server's EXPLAIN ANALYZE execution time")
    say(table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
