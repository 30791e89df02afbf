"""Scheduled jobs against a real PostgreSQL: run once, on schedule, never twice at once across
instances; the analytics back-fill fills exactly the missing hours; retention moves old usage
rows in short batches and the views stay right."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from apscheduler.triggers.cron import CronTrigger

from tests.daemon import eventually
from tests.db import data
from tests.ops.harness import admin_query, job_runner
from verifier import config, jobs

HOUR = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)  # the fixed "now" hour of the back-fill tests
NOW = HOUR + timedelta(minutes=34, seconds=56)


def runs(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT job, slot, status, detail, instance FROM verifier.job_runs "
                        "ORDER BY id").fetchall()


def expired_payment(conn: psycopg.Connection) -> int:
    return data.payment(conn, status="verified", verified_at=data.now() - timedelta(hours=2),
                        expires_at=data.now() - timedelta(minutes=1))


def status_of(conn: psycopg.Connection, payment_id: int) -> str:
    return data.scalar(conn, "SELECT status FROM x402_payments WHERE id = %(id)s", {"id": payment_id})


# -- run once --------------------------------------------------------------------------------------


async def test_cleanup_runs_once_and_is_recorded(conn, database_url):
    pid = expired_payment(conn)
    async with job_runner(database_url, instance="a") as runner:
        first = await runner.run("cleanup")
        again = await runner.run("cleanup")
    assert (first.status, first.detail["expired"]) == ("ok", 1)
    assert (again.status, again.detail["expired"]) == ("ok", 0)
    assert status_of(conn, pid) == "expired"
    assert [(job, slot, status, detail["expired"], inst) for job, slot, status, detail, inst
            in runs(conn)] == [("cleanup", None, "ok", 1, "a"), ("cleanup", None, "ok", 0, "a")]


async def test_cleanup_deletes_decided_claims_older_than_the_retention(conn, database_url):
    def claim(status: str, age_days: float, token: str | None = None) -> str:
        token_hash = data.token_hash(token or f"claim-{status}-{age_days}")
        conn.execute(
            "INSERT INTO verifier.claims (chain, tx_hash, token_hash, status, decided_at) "
            "VALUES ('base', %(tx)s, %(h)s, %(s)s, "
            "        CASE WHEN %(s)s <> 'waiting' THEN now() - %(age)s * interval '1 day' END)",
            {"tx": "0x" + token_hash, "h": token_hash, "s": status, "age": age_days})
        return token_hash

    old = {claim(s, 31) for s in ("issued", "rejected", "expired", "revoked")}
    kept = {claim("rejected", 29), claim("waiting", 0)}
    live = data.token(conn, data.payment(conn), name="long-lived")  # its claim stays
    kept.add(claim("issued", 31, token="long-lived"))
    assert live in kept
    async with job_runner(database_url, instance="a", claim_retention_days=30) as runner:
        run = await runner.run("cleanup")
    assert (run.status, run.detail["claims_pruned"]) == ("ok", len(old))
    left = {h for (h,) in conn.execute("SELECT token_hash FROM verifier.claims").fetchall()}
    assert left == kept


async def test_a_failing_job_is_recorded_as_failed_and_not_raised(conn, database_url):
    conn.execute("ALTER FUNCTION cleanup_expired_x402_payments() RENAME TO gone_for_the_test")
    async with job_runner(database_url, instance="a") as runner:
        run = await runner.run("cleanup")
    assert run.status == "failed" and "cleanup_expired_x402_payments" in run.detail["error"]
    [(job, _, status, detail, _)] = runs(conn)
    assert (job, status) == ("cleanup", "failed")
    assert "does not exist" in detail["error"]


async def test_a_run_while_another_instance_runs_the_job_is_skipped(conn, database_url):
    pid = expired_payment(conn)
    with psycopg.connect(database_url) as blocker:
        # Holding the payment's row lock makes instance a's cleanup wait inside its run.
        blocker.execute("SELECT 1 FROM x402_payments WHERE id = %(id)s FOR UPDATE", {"id": pid})
        async with job_runner(database_url, instance="a") as a, \
                job_runner(database_url, instance="b") as b:
            first = asyncio.create_task(a.run("cleanup"))
            await eventually(lambda: admin_query(  # a's run holds its lease row, waiting
                database_url, "SELECT 1 FROM pg_stat_activity WHERE datname = "
                              "current_database() AND wait_event_type = 'Lock'"))
            second = await b.run("cleanup")
            assert second.status == "skipped" and second.detail == {"reason": "running_elsewhere"}
            assert not first.done()
            blocker.commit()
            done = await asyncio.wait_for(first, timeout=30)
    assert (done.status, done.detail["expired"]) == ("ok", 1)
    assert sorted((status, inst) for _, _, status, _, inst in runs(conn)) == [
        ("ok", "a"), ("skipped", "b")]


async def test_a_fire_time_another_instance_already_ran_is_skipped(conn, database_url):
    slot = datetime(2025, 6, 10, 11, 0, tzinfo=UTC)
    async with job_runner(database_url, instance="a") as a, \
            job_runner(database_url, instance="b") as b:
        first = await a.run("cleanup", slot=slot)
        late = await b.run("cleanup", slot=slot)  # b's clock was slow: a is long done
        later = await b.run("cleanup", slot=slot + timedelta(hours=1))
    assert first.status == "ok"
    assert (late.status, late.detail) == ("skipped", {"reason": "already_ran"})
    assert later.status == "ok"
    assert [(s, st, i) for _, s, st, _, i in runs(conn)] == [
        (slot, "ok", "a"), (slot, "skipped", "b"), (slot + timedelta(hours=1), "ok", "b")]


def jobs_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    env.update(DATABASE_URL=database_url, X402_LOG_FORMAT="json")
    return subprocess.run([sys.executable, "-m", "verifier", "jobs", "run", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_jobs_run_cli_runs_once_under_the_same_lock(conn, database_url):
    pid = expired_payment(conn)
    daemon = psycopg.connect(database_url)  # as if a daemon ran cleanup: its row is locked
    daemon.execute("SELECT 1 FROM verifier.leases WHERE name = 'job:cleanup' FOR UPDATE")
    held = jobs_cli(database_url, "cleanup")
    assert held.returncode == 0, held.stderr
    assert json.loads(held.stdout) | {"seconds": 0} == {
        "job": "cleanup", "status": "skipped", "reason": "running_elsewhere", "seconds": 0}
    assert status_of(conn, pid) == "verified"
    daemon.rollback()
    daemon.close()

    done = jobs_cli(database_url, "cleanup")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["expired"] == 1
    assert status_of(conn, pid) == "expired"
    assert '"event": "job_run"' in done.stderr  # logged, with its duration
    assert [(status, slot) for _, slot, status, _, _ in runs(conn)] == [
        ("skipped", None), ("ok", None)]

    hour = jobs_cli(database_url, "analytics", "--hour", "2025-06-10T10:30")
    assert hour.returncode == 0, hour.stderr
    out = json.loads(hour.stdout)
    assert (out["mode"], out["hours"], out["first"]) == ("hour", 1, "2025-06-10T10:00:00+00:00")
    assert data.scalar(conn, "SELECT count(*) FROM x402_analytics WHERE hour_bucket = "
                             "'2025-06-10T10:00Z'") == 3

    wrong = jobs_cli(database_url, "cleanup", "--hour", "2025-06-10T10:30")
    assert wrong.returncode == 2 and "--hour" in wrong.stderr


# -- on schedule -------------------------------------------------------------------------------------


def test_default_schedule_fires_cleanup_at_minute_0_and_analytics_at_minute_5():
    cfg = config.load({"X402_BASE_RPC_URLS": "http://127.0.0.1:1",
                       "X402_BASE_PAYMENT_ADDRESS": "0x" + "22" * 20})
    triggers = jobs.triggers_of(cfg)
    at = datetime(2025, 6, 10, 10, 30, tzinfo=UTC)
    fire = {name: t.get_next_fire_time(None, at) for name, t in triggers.items()}
    assert fire == {"cleanup": datetime(2025, 6, 10, 11, 0, tzinfo=UTC),
                    "analytics": datetime(2025, 6, 10, 11, 5, tzinfo=UTC),
                    "retention": datetime(2025, 6, 10, 11, 0, tzinfo=UTC)}


def test_a_schedule_set_to_off_is_left_to_the_timers():
    cfg = config.load({"X402_BASE_RPC_URLS": "http://127.0.0.1:1",
                       "X402_BASE_PAYMENT_ADDRESS": "0x" + "22" * 20,
                       "X402_CLEANUP_CRON": "off", "X402_ANALYTICS_CRON": "*/10 * * * *"})
    assert set(jobs.triggers_of(cfg)) == {"analytics"}
    with pytest.raises(config.ConfigError, match=r"X402_ANALYTICS_CRON: '61 .*' is not a valid"):
        config.load({"X402_BASE_RPC_URLS": "http://127.0.0.1:1",
                     "X402_BASE_PAYMENT_ADDRESS": "0x" + "22" * 20,
                     "X402_ANALYTICS_CRON": "61 * * * *"})


def test_a_run_belongs_to_the_latest_fire_time_within_the_grace():
    hourly = jobs.cron("0 * * * *")
    at = datetime(2025, 6, 10, 11, 0, tzinfo=UTC)
    assert jobs.last_fire_time(hourly, at + timedelta(seconds=0.3), 300) == at
    assert jobs.last_fire_time(hourly, at + timedelta(seconds=299), 300) == at
    assert jobs.last_fire_time(hourly, at + timedelta(seconds=301), 300) is None
    assert jobs.last_fire_time(hourly, at - timedelta(seconds=1), 300) is None


async def test_two_schedulers_on_one_database_run_each_fire_time_once(conn, database_url):
    every_second = CronTrigger(second="*", timezone=UTC)
    stop = asyncio.Event()
    async with job_runner(database_url, instance="a") as a, \
            job_runner(database_url, instance="b") as b:
        tasks = [asyncio.create_task(jobs.JobScheduler(r, {"cleanup": every_second},
                                                       backfill=False).run(stop)) for r in (a, b)]

        def slots_seen_by_both() -> int:
            return data.scalar(conn, "SELECT count(*) FROM (SELECT slot FROM verifier.job_runs "
                                     "GROUP BY slot HAVING count(DISTINCT instance) = 2) s")

        try:
            await eventually(lambda: slots_seen_by_both() >= 3, within=30)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    rows = conn.execute("SELECT slot, status, instance, started_at FROM verifier.job_runs "
                        "WHERE job = 'cleanup' ORDER BY id").fetchall()
    by_slot: dict[datetime, list[tuple[str, str]]] = {}
    for slot, status, instance, started_at in rows:
        assert slot is not None and slot.microsecond == 0 and started_at >= slot
        by_slot.setdefault(slot, []).append((status, instance))
    assert len(by_slot) >= 3
    for slot, outcomes in by_slot.items():
        assert [s for s, _ in outcomes].count("ok") == 1, (slot, outcomes)
        assert len(outcomes) == len({i for _, i in outcomes}), (slot, outcomes)  # once each
    skipped = conn.execute("SELECT DISTINCT detail->>'reason' FROM verifier.job_runs "
                           "WHERE status = 'skipped'").fetchall()
    assert skipped and {r for (r,) in skipped} <= {"already_ran", "running_elsewhere"}


# -- analytics back-fill -----------------------------------------------------------------------------


def analytics_rows(conn: psycopg.Connection) -> dict[tuple[datetime, str], tuple]:
    rows = conn.execute("SELECT hour_bucket, chain, total_payments, updated_at "
                        "FROM x402_analytics").fetchall()
    return {(h, c): (n, u) for h, c, n, u in rows}


MARK = """
INSERT INTO x402_analytics (hour_bucket, chain, total_payments, updated_at)
VALUES (%(hour)s, %(chain)s, 999, '2000-01-01T00:00Z')
"""


async def test_backfill_fills_exactly_the_missing_hours(conn, database_url):
    window = [HOUR - timedelta(hours=h) for h in range(1, 25)]  # 24 whole hours before NOW
    complete = {HOUR - timedelta(hours=3), HOUR - timedelta(hours=10)}
    partial = HOUR - timedelta(hours=5)
    for hour in complete:
        for chain in ("base", "ethereum", "solana"):
            conn.execute(MARK, {"hour": hour, "chain": chain})
    conn.execute(MARK, {"hour": partial, "chain": "base"})
    # A payment verified in a missing hour: a filled row is computed, not a row of zeros; one in
    # a complete hour would change that hour if it were recomputed.
    data.payment(conn, verified_at=HOUR - timedelta(hours=7, minutes=-20), amount_units=2_500_000)
    data.payment(conn, verified_at=HOUR - timedelta(hours=3, minutes=-20))
    before = analytics_rows(conn)

    async with job_runner(database_url, instance="a", clock=lambda: NOW,
                          backfill_hours=24) as runner:
        run = await runner.run("analytics", backfill_only=True)

    expected_missing = sorted(set(window) - complete)  # the partial hour counts as missing
    assert run.status == "ok"
    assert run.detail == {"mode": "backfill", "hours": len(expected_missing),
                          "first": expected_missing[0].isoformat(),
                          "last": expected_missing[-1].isoformat()}
    after = analytics_rows(conn)
    assert {h for h, _ in after} == set(window)  # nothing outside the window, not the current hour
    assert len(after) == 3 * len(window)
    for hour in complete:
        for chain in ("base", "ethereum", "solana"):
            assert after[(hour, chain)] == before[(hour, chain)]  # untouched: 999, old updated_at
    assert after[(partial, "base")][0] == 0  # the partial hour was recomputed whole
    assert after[(HOUR - timedelta(hours=7), "base")][0] == 1
    assert data.scalar(conn, "SELECT total_amount_usdc FROM x402_analytics WHERE chain = 'base' "
                             "AND hour_bucket = %(h)s", {"h": HOUR - timedelta(hours=7)}
                       ) == Decimal("2.5")

    async with job_runner(database_url, instance="a", clock=lambda: NOW,
                          backfill_hours=24) as runner:
        again = await runner.run("analytics", backfill_only=True)
        assert again.detail["hours"] == 0  # nothing left to fill
        assert analytics_rows(conn) == after
        scheduled = await runner.run("analytics")
        one = await runner.run("analytics", hour=HOUR - timedelta(hours=3, minutes=-59))
    assert scheduled.detail == {"mode": "scheduled", "hours": 1,
                                "first": (HOUR - timedelta(hours=1)).isoformat(),
                                "last": (HOUR - timedelta(hours=1)).isoformat()}
    assert one.detail["first"] == (HOUR - timedelta(hours=3)).isoformat()
    assert analytics_rows(conn)[(HOUR - timedelta(hours=3), "base")][0] == 1  # --hour recomputes


async def test_no_backfill_when_the_window_is_zero_hours(conn, database_url):
    async with job_runner(database_url, instance="a", clock=lambda: NOW,
                          backfill_hours=0) as runner:
        run = await runner.run("analytics", backfill_only=True)
    assert run.detail["hours"] == 0
    assert analytics_rows(conn) == {}


# -- usage retention ---------------------------------------------------------------------------------

USAGE_COLUMNS = ("id, payment_id, endpoint, method, status_code, response_time_ms, ip_address, "
                 "user_agent, created_at")


async def test_retention_moves_old_usage_in_batches_and_the_views_stay_right(conn, database_url):
    pid = data.payment(conn, requests_allocated=1000)
    now = data.now()
    for i in range(7):
        data.usage(conn, pid, endpoint=f"/old/{i % 2}", created_at=now - timedelta(days=100 + i))
    data.usage(conn, pid, endpoint="/edge", created_at=now - timedelta(days=89, hours=23))
    for i in range(5):
        data.usage(conn, pid, endpoint=f"/api/{i % 2}", status_code=200 + 300 * (i % 2),
                   response_time_ms=10 * i, created_at=now - timedelta(minutes=10 + i))
    old = conn.execute(f"SELECT {USAGE_COLUMNS} FROM x402_usage WHERE created_at < "
                       "%(cut)s ORDER BY id", {"cut": now - timedelta(days=90)}).fetchall()
    stats = conn.execute("SELECT * FROM v_x402_endpoint_stats ORDER BY endpoint").fetchall()
    recent_hour = now - timedelta(minutes=12)
    conn.execute("SELECT update_x402_analytics(%(h)s)", {"h": recent_hour})
    analytics = conn.execute("SELECT chain, total_requests FROM x402_analytics ORDER BY chain"
                             ).fetchall()

    async with job_runner(database_url, instance="a", retention_days=90,
                          batch_size=3) as runner:
        run = await runner.run("retention")

    assert len(old) == 7
    assert (run.status, run.detail["moved"], run.detail["batches"]) == ("ok", 7, 3)
    archived = conn.execute(f"SELECT {USAGE_COLUMNS} FROM verifier.x402_usage_archive "
                            "ORDER BY id").fetchall()
    assert archived == old  # every column as it was
    # One transaction per batch: 3 + 3 + 1 rows written by 3 different transactions.
    assert data.scalar(conn, "SELECT count(DISTINCT xmin::text) FROM verifier.x402_usage_archive"
                       ) == 3
    left = conn.execute("SELECT endpoint FROM x402_usage ORDER BY id").fetchall()
    assert [e for (e,) in left] == ["/edge", "/api/0", "/api/1", "/api/0", "/api/1", "/api/0"]
    assert conn.execute("SELECT * FROM v_x402_endpoint_stats ORDER BY endpoint").fetchall() == stats
    conn.execute("SELECT update_x402_analytics(%(h)s)", {"h": recent_hour})
    assert conn.execute("SELECT chain, total_requests FROM x402_analytics ORDER BY chain"
                        ).fetchall() == analytics

    async with job_runner(database_url, instance="a") as runner:
        again = await runner.run("retention")
    assert (again.detail["moved"], again.detail["batches"]) == (0, 0)


@pytest.mark.parametrize("job", jobs.JOBS)
async def test_every_job_records_its_run(conn, database_url, job):
    async with job_runner(database_url, instance="x") as runner:
        run = await runner.run(job)
    assert run.status == "ok"
    assert [(j, s) for j, _, s, _, _ in runs(conn)] == [(job, "ok")]


async def test_cleanup_gives_a_hot_tokens_slots_back_before_expiring(conn, database_url):
    """Migration 014: the requests a hot token moved into slots come back to the payment, and a
    payment that read 'used' with requests in slots is then expired like any verified one."""
    pid = data.payment(conn, requests_allocated=10, requests_used=10, status="used",
                       expires_at=data.now() - timedelta(minutes=1))
    conn.execute("INSERT INTO verifier.request_slots VALUES (%s, 1, 4)", (pid,))
    async with job_runner(database_url, instance="a") as runner:
        run = await runner.run("cleanup")
    assert (run.status, run.detail["expired"]) == ("ok", 1)
    assert conn.execute("SELECT status, requests_used FROM x402_payments WHERE id = %s",
                        (pid,)).fetchone() == ("expired", 6)
    assert data.scalar(conn, "SELECT count(*) FROM verifier.request_slots") == 0
