"""Scheduled maintenance: cleanup, hourly analytics (with back-fill) and usage retention.

Every run locks its job's row of verifier.leases (verifier.store.locks) in a transaction of its
own, so one instance of a multi-daemon deployment runs a job at a time; the others log the run as
skipped. A scheduled run also belongs to a fire time (its slot): a slot another instance already
ran is skipped too, so N daemons on one schedule run each job once per slot. Every run, skipped
or not, is logged with its duration and recorded in verifier.job_runs.

The jobs:
  cleanup    cleanup_expired_x402_payments(); job_runs older than 30 days are pruned; decided
             claims (issued, rejected, expired, revoked) older than X402_CLAIM_RETENTION_DAYS
             are deleted, except one whose token still exists.
  analytics  update_x402_analytics() for the previous UTC hour and for every hour of the last
             X402_ANALYTICS_BACKFILL_HOURS that x402_analytics lacks a row of (any chain);
             at daemon start, only the missing hours (the back-fill); with --hour, that hour.
  retention  x402_usage rows older than X402_USAGE_RETENTION_DAYS move to
             verifier.x402_usage_archive, RETENTION_BATCH rows per short transaction.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from psycopg_pool import AsyncConnectionPool

from verifier.config import Config
from verifier.errors import DatabaseError, VerifierError
from verifier.store import jobs as sql
from verifier.store.locks import JOB_LEASES

log = structlog.get_logger("verifier.jobs")

JOBS = tuple(JOB_LEASES)
MISFIRE_GRACE = 300  # seconds a run may start late (a busy loop, a suspended host) and still run
RETENTION_BATCH = 10_000
JOB_RUNS_KEPT = timedelta(days=30)
STOP_WAIT = 5.0  # seconds a running job gets to finish when the daemon stops

Status = Literal["ok", "skipped", "failed"]
Body = Callable[[psycopg.AsyncConnection], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class JobRun:
    job: str
    status: Status
    detail: dict[str, Any]
    seconds: float
    slot: datetime | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


def hour_of(at: datetime) -> datetime:
    """The UTC hour an instant falls in (a naive datetime is taken as UTC)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Jobs:
    """Runs one job once, under its lock. I/O through the pool; the clock is passed in."""

    pool: AsyncConnectionPool
    backfill_hours: int
    retention_days: int
    claim_retention_days: int = 30
    batch_size: int = RETENTION_BATCH
    clock: Callable[[], datetime] = utc_now
    instance: str = field(default_factory=default_instance)
    on_run: Callable[[JobRun], None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, job: str, *, slot: datetime | None = None, hour: datetime | None = None,
                  backfill_only: bool = False) -> JobRun:
        """One run of ``job``; never raises for a database failure (the run is 'failed')."""
        if job not in JOB_LEASES:
            raise ValueError(f"unknown job {job!r} (one of {', '.join(JOBS)})")
        body = self._body(job, hour=hour, backfill_only=backfill_only)
        started, t0 = self.clock(), time.monotonic()
        try:
            status, detail = await self._locked(job, slot, body, started, t0)
        except DatabaseError as exc:
            status, detail = "failed", {"error": _describe(exc)}
        result = JobRun(job, status, detail, time.monotonic() - t0, slot)
        self._report(result)
        return result

    def _body(self, job: str, *, hour: datetime | None, backfill_only: bool) -> Body:
        if job == "cleanup":
            return self._cleanup
        if job == "retention":
            return self._retention

        async def analytics(conn: psycopg.AsyncConnection) -> dict[str, Any]:
            return await self._analytics(conn, hour=hour, backfill_only=backfill_only)

        return analytics

    async def _locked(self, job: str, slot: datetime | None, body: Body, started: datetime,
                      t0: float) -> tuple[Status, dict[str, Any]]:
        status: Status
        async with sql.run_transaction(self.pool, job) as conn:
            if not await sql.try_lock(conn, job):
                status, detail = "skipped", {"reason": "running_elsewhere"}
            elif slot is not None and await sql.slot_done(conn, job, slot):
                status, detail = "skipped", {"reason": "already_ran"}
            else:
                status, detail = await self._guarded(conn, body)
            await sql.record_run(
                conn, job=job, slot=slot, status=status, detail=detail,
                instance=self.instance, started_at=started,
                finished_at=started + timedelta(seconds=time.monotonic() - t0))
        return status, detail

    async def _guarded(self, conn: psycopg.AsyncConnection, body: Body
                       ) -> tuple[Status, dict[str, Any]]:
        """The job's work in a savepoint: a failure is rolled back and recorded, not raised."""
        try:
            async with sql.savepoint(conn):
                return "ok", await body(conn)
        except VerifierError as exc:
            return "failed", {"error": _describe(exc)}
        except Exception as exc:
            log.exception("job_bug")  # a bug must not stop the schedule: logged whole, recorded
            return "failed", {"error": _describe(exc)}

    # -- the jobs -------------------------------------------------------------------------------

    async def _cleanup(self, conn: psycopg.AsyncConnection) -> dict[str, Any]:
        expired, pruned = await sql.cleanup(conn, self.clock() - JOB_RUNS_KEPT)
        claims = await sql.prune_claims(
            conn, self.clock() - timedelta(days=self.claim_retention_days))
        return {"expired": expired, "job_runs_pruned": pruned, "claims_pruned": claims}

    async def missing_hours(self, conn: psycopg.AsyncConnection) -> list[datetime]:
        return await sql.missing_analytics_hours(conn, self.clock(), self.backfill_hours)

    async def _analytics(self, conn: psycopg.AsyncConnection, *, hour: datetime | None,
                         backfill_only: bool) -> dict[str, Any]:
        if hour is not None:
            mode, hours = "hour", [hour_of(hour)]
        else:
            missing = await self.missing_hours(conn)
            mode = "backfill" if backfill_only else "scheduled"
            extra = [] if backfill_only else [hour_of(self.clock()) - timedelta(hours=1)]
            hours = sorted(set(missing) | set(extra))
        for h in hours:
            await sql.update_analytics(conn, h)
        return {"mode": mode, "hours": len(hours),
                "first": hours[0].isoformat() if hours else None,
                "last": hours[-1].isoformat() if hours else None}

    async def _retention(self, _lock_conn: psycopg.AsyncConnection) -> dict[str, Any]:
        """Batches on pool connections, each its own short transaction; the lock stays on the
        job's connection, which holds no row or table lock meanwhile."""
        before = self.clock() - timedelta(days=self.retention_days)
        moved = batches = 0
        while not self.stopping.is_set():
            n = await sql.archive_usage_batch(self.pool, before, self.batch_size)
            if not n:
                break
            moved, batches = moved + n, batches + 1
            if n < self.batch_size:
                break
        return {"moved": moved, "batches": batches, "before": before.isoformat(),
                "interrupted": self.stopping.is_set()}

    def _report(self, run: JobRun) -> None:
        fields = {"job": run.job, "status": run.status, "seconds": round(run.seconds, 3),
                  "slot": run.slot.isoformat() if run.slot else None, **run.detail}
        if run.status == "failed":
            log.error("job_run", **fields)
        else:
            log.info("job_run", **fields)
        if self.on_run is not None:
            self.on_run(run)


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}".strip()


# -- the schedule ---------------------------------------------------------------------------------


def cron(expression: str) -> CronTrigger:
    """A 5-field crontab expression, in UTC."""
    return CronTrigger.from_crontab(expression, timezone=UTC)


def triggers_of(cfg: Config) -> dict[str, BaseTrigger]:
    """Retention runs on the cleanup schedule: hourly runs keep each run small. A schedule set
    to 'off' is left to `x402-verifier jobs run` (systemd timers, cron)."""
    schedule = {"cleanup": cfg.cleanup_cron, "analytics": cfg.analytics_cron,
                "retention": cfg.cleanup_cron}
    return {job: cron(expr) for job, expr in schedule.items() if expr != "off"}


def last_fire_time(trigger: BaseTrigger, now: datetime, grace: float) -> datetime | None:
    """The latest time ``trigger`` fired at or before ``now``, looking back ``grace`` seconds:
    the slot a run started by the scheduler belongs to, the same on every instance."""
    fire = trigger.get_next_fire_time(None, now - timedelta(seconds=grace))
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return last


class JobScheduler:
    """APScheduler's asyncio scheduler inside the daemon: coalesced runs, a misfire grace time,
    one run of a job at a time per instance (and, by the lock, across instances)."""

    def __init__(self, jobs: Jobs, triggers: Mapping[str, BaseTrigger], *,
                 misfire_grace: int = MISFIRE_GRACE, backfill: bool = True):
        self.jobs = jobs
        self.triggers = dict(triggers)
        self.misfire_grace = misfire_grace
        self.backfill = backfill
        self._running: set[asyncio.Task[Any]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        for name, trigger in self.triggers.items():
            scheduler.add_job(self._fire, trigger, args=[name], id=name, name=f"x402-{name}",
                              coalesce=True, misfire_grace_time=self.misfire_grace,
                              max_instances=1, replace_existing=True)
        scheduler.start()
        log.info("scheduler_started",
                 next_runs={j.id: j.next_run_time.isoformat() for j in scheduler.get_jobs()})
        try:
            if self.backfill and self.jobs.backfill_hours > 0:
                await self._tracked(self.jobs.run("analytics", backfill_only=True))
            await stop.wait()
        finally:
            self.jobs.stopping.set()
            scheduler.pause()
            if self._running:
                await asyncio.wait(set(self._running), timeout=STOP_WAIT)
            scheduler.shutdown(wait=False)

    async def _fire(self, name: str) -> None:
        slot = last_fire_time(self.triggers[name], self.jobs.clock(), self.misfire_grace)
        await self._tracked(self.jobs.run(name, slot=slot))

    async def _tracked(self, run: Awaitable[JobRun]) -> JobRun:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            return await run
        finally:
            self._running.discard(task)


# -- `x402-verifier jobs run` ---------------------------------------------------------------------


async def run_once(url: str, job: str, *, backfill_hours: int, retention_days: int,
                   hour: datetime | None = None, claim_retention_days: int = 30) -> JobRun:
    """One run for cron or a systemd timer, under the same lock as the daemon's runs."""
    pool = AsyncConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True},
                               open=False)
    try:
        await pool.open(wait=True, timeout=30)
    except Exception as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    try:
        jobs = Jobs(pool, backfill_hours=backfill_hours, retention_days=retention_days,
                    claim_retention_days=claim_retention_days)
        return await jobs.run(job, hour=hour)
    finally:
        await pool.close()
