#!/usr/bin/env python3
"""The request path against the physical limit, side by side, at several concurrencies.

Usage: .venv/bin/python scripts/bench_requests.py [--clients 1,8,32,64] [--seconds S] [--rounds R]

For each number of concurrent clients (one connection each, autocommit, one call per request):
  (a) floor     a bare INSERT INTO x402_usage ...; COMMIT per request: what this database does
  (b) distinct  verifier.consume_request, each client on its own token
  (c) one token verifier.consume_request, every client on the same token
Prints requests/s, p50/p99 latency (ms, client-side) and the ratios b/a and c/b against their
targets (b/a >= 0.7 at every concurrency, c/b >= 0.5 at 32 clients). After each run the tables
are checked: per payment, the requests allowed (answers), logged (x402_usage rows) and counted
(requests_used, after the cleanup job's merge) agree and never pass what was paid for. A last
run drains a hot token of 1,000 requests with every client and checks it stops at exactly 1,000.

Uses the database `x402_bench_requests` on the server of DATABASE_URL (dropped and created
again), or on the embedded PostgreSQL under var/ when DATABASE_URL is unset. Exit 1 on an
accounting error; a missed target is printed, not an error.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier import config, db, migrate
from verifier.sqlfiles import queries

BENCH_DB = "x402_bench_requests"
Q = queries("bench_requests.sql")
ADMIN = queries("admin.sql")
PLENTY = 10**12
DRAIN = 1_000


@dataclass(frozen=True)
class Run:
    mode: str
    clients: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    allowed: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def say(msg: str) -> None:
    print(msg, flush=True)


def bench_url() -> str:
    settings = config.load(os.environ, chains=False)
    base = db.resolve_url(settings.database_url, settings.embedded_dir)
    with psycopg.connect(base, autocommit=True) as admin:
        name = sql.Identifier(BENCH_DB)
        admin.execute(sql.SQL(ADMIN["drop_database"]).format(name=name))
        admin.execute(sql.SQL(ADMIN["create_database"]).format(name=name))
    return make_conninfo(base, dbname=BENCH_DB)


def token_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def make_payment(conn: psycopg.Connection, name: str, requests: int) -> tuple[int, str]:
    h = token_hash(name)
    pid = conn.execute(Q["make_payment"], {"name": name, "requests": requests,
                                           "token_hash": h}).fetchone()
    assert pid is not None
    return int(pid[0]), h


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def drive(url: str, mode: str, params: list[dict[str, Any]], seconds: float,
          until_refused: bool = False) -> Run:
    """One thread and connection per client, started together, for `seconds` (or, with
    until_refused, until every client has been refused once)."""
    clients = len(params)
    conns = [psycopg.connect(url, autocommit=True, prepare_threshold=0) for _ in range(clients)]
    query = Q["floor_insert"] if mode == "floor" else Q["consume"]
    ready = threading.Barrier(clients + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    allowed = [0] * clients
    errors: list[BaseException] = []

    def client(i: int) -> None:
        c, p, mine = conns[i], params[i], latencies[i]
        try:
            for _ in range(3):  # warm: plan cache, connection
                if mode == "floor":
                    c.execute(query, p)
            ready.wait(timeout=60)
            while not stop.is_set():
                t0 = time.perf_counter_ns()
                cur = c.execute(query, p)
                if mode != "floor":
                    row = cur.fetchone()
                    assert row is not None
                    if row[0]:
                        allowed[i] += 1
                    elif until_refused:
                        mine.append((time.perf_counter_ns() - t0) / 1e6)
                        return
                else:
                    allowed[i] += 1
                mine.append((time.perf_counter_ns() - t0) / 1e6)
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait(timeout=60)
    start = time.perf_counter()
    if until_refused:
        for t in threads:
            t.join(timeout=600)
    else:
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    flat = [x for xs in latencies for x in xs]
    return Run(mode, clients, len(flat), elapsed, statistics.median(flat), p99(flat),
               sum(allowed), flat)


def combine(runs: list[Run]) -> Run:
    flat = [x for r in runs for x in r.latencies]
    return Run(runs[0].mode, runs[0].clients, sum(r.requests for r in runs),
               sum(r.seconds for r in runs), statistics.median(flat), p99(flat),
               sum(r.allowed for r in runs), flat)


def check(conn: psycopg.Connection, ids: list[int], allowed: int, exact: int | None = None
          ) -> list[str]:
    """Per payment: logged == counted <= allocated; answers allowed == rows logged."""
    conn.execute(Q["merge"])
    rows = conn.execute(Q["accounting"], {"ids": ids}).fetchall()
    problems = []
    logged_total = 0
    for pid, allocated, used, logged in rows:
        logged_total += logged
        if not (logged == used <= allocated):
            problems.append(f"payment {pid}: allocated {allocated}, used {used}, "
                            f"logged {logged}")
        if exact is not None and used != exact:
            problems.append(f"payment {pid}: drained to {used}, not {exact}")
    if logged_total != allowed:
        problems.append(f"{allowed} requests allowed but {logged_total} logged")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--seconds", type=float, default=6.0, help="per mode and concurrency")
    ap.add_argument("--rounds", type=int, default=3, help="turns the three modes take")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.clients.split(",")]

    url = bench_url()
    migrate.run(url, say=lambda m: None)
    failures: list[str] = []
    table: list[tuple[int, Run, Run, Run]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for n in counts:
            conn.execute(Q["reset"])
            floor_pid, _ = make_payment(conn, f"floor-{n}", PLENTY)
            distinct = [make_payment(conn, f"distinct-{n}-{i}", PLENTY) for i in range(n)]
            hot_pid, hot = make_payment(conn, f"hot-{n}", PLENTY)
            conn.execute("VACUUM ANALYZE")
            # The modes take turns (--rounds short runs each) so that a shared machine's load
            # weighs on the three alike; the figures are over all rounds of a mode.
            runs: dict[str, list[Run]] = {"floor": [], "distinct": [], "one token": []}
            step = args.seconds / args.rounds
            for _ in range(args.rounds):
                runs["floor"].append(drive(url, "floor", [{"payment_id": floor_pid}] * n, step))
                runs["distinct"].append(drive(url, "distinct",
                                              [{"token_hash": h} for _, h in distinct], step))
                runs["one token"].append(drive(url, "one token", [{"token_hash": hot}] * n,
                                               step))
            a, b, c = (combine(runs[m]) for m in ("floor", "distinct", "one token"))
            for label, ids, run in (("distinct", [p for p, _ in distinct], b),
                                    ("one token", [hot_pid], c)):
                failures += [f"{n} clients, {label}: {p}" for p in check(conn, ids, run.allowed)]
            table.append((n, a, b, c))
            say(f"{n:>3} clients: floor {a.rate:,.0f}/s  distinct {b.rate:,.0f}/s  "
                f"one token {c.rate:,.0f}/s")
        n = max(counts)
        conn.execute(Q["reset"])
        pid, hot = make_payment(conn, "drain", DRAIN)
        d = drive(url, "drain", [{"token_hash": hot}] * n, 0, until_refused=True)
        failures += [f"drain: {p}" for p in check(conn, [pid], d.allowed, exact=DRAIN)]

    say("")
    say("| clients | (a) floor req/s | p50 / p99 ms | (b) distinct req/s | p50 / p99 ms | "
        "(c) one token req/s | p50 / p99 ms | b/a (>= 0.7) | c/b (>= 0.5 at 32) |")
    say("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, a, b, c in table:
        ba, cb = b.rate / a.rate, c.rate / b.rate
        ba_mark = "" if round(ba, 2) >= 0.7 else " MISS"
        cb_mark = "" if n != 32 or round(cb, 2) >= 0.5 else " MISS"
        say(f"| {n} | {a.rate:,.0f} | {a.p50_ms:.2f} / {a.p99_ms:.2f} | {b.rate:,.0f} | "
            f"{b.p50_ms:.2f} / {b.p99_ms:.2f} | {c.rate:,.0f} | {c.p50_ms:.2f} / {c.p99_ms:.2f} | "
            f"{ba:.2f}{ba_mark} | {cb:.2f}{cb_mark} |")
    say(f"\ndrain: {n} clients on one token of {DRAIN:,} requests: {d.allowed:,} allowed")
    if failures:
        say("ACCOUNTING ERRORS:\n  " + "\n  ".join(failures))
        return 1
    say("accounting: never more allowed than paid for; allowed = logged = counted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
