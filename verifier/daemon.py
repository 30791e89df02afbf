"""The long-running daemon: watchers, claim workers, scheduled jobs, metrics and the systemd
watchdog, on one loop.

Stops cleanly on SIGTERM/SIGINT: loops finish the transaction in hand, locks are released and
the process exits 0 within 10 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from psycopg_pool import AsyncConnectionPool

from verifier import jobs, migrate, rules
from verifier.chains import open_adapter
from verifier.chains.base import ChainAdapter
from verifier.claims import ClaimProcessor, WorkerPool
from verifier.config import Config
from verifier.errors import DatabaseError, MigrationError, VerifierError
from verifier.metrics import Metrics, MetricsServer, serve
from verifier.store import Store, ledger
from verifier.systemd import Notifier, stall_limit, watcher_progress
from verifier.watcher import Watcher

log = structlog.get_logger("verifier.daemon")
STOP_GRACE = 8.0


def policy_of(config: Config) -> rules.Policy:
    return rules.Policy(
        price_per_request=config.price_per_request,
        min_payment=config.min_payment,
        claim_proof=config.claim_proof,
        claim_ttl=config.claim_ttl,
        not_found_grace=config.claim_not_found_grace,
    )


@dataclass
class Daemon:
    config: Config
    conninfo: str
    pool: AsyncConnectionPool | None = None
    adapters: dict[str, ChainAdapter] = field(default_factory=dict)
    watchers: list[Watcher] = field(default_factory=list)
    store: Store | None = None
    claims: ClaimProcessor | None = None
    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    metrics: Metrics | None = None
    metrics_server: MetricsServer | None = None
    metrics_refresh: float = 15.0  # seconds between the payments/claims-by-status queries

    async def start(self) -> None:
        """Opens the database and every chain, and checks them; raises when something is off."""
        cfg = self.config
        if cfg.claim_proof == "none":
            log.warning("claim_proof_disabled",
                        detail="X402_CLAIM_PROOF=none: whoever presents a tx hash first gets "
                               "its credit")
        self.pool = AsyncConnectionPool(
            # + 6: jobs (up to 4 connections at once), the metrics query and the /readyz ping.
            self.conninfo, min_size=1, max_size=cfg.workers + 2 * len(cfg.chains) + 4 + 6,
            kwargs={"autocommit": True}, open=False,
        )
        try:
            await self.pool.open(wait=True, timeout=30)
        except Exception as exc:
            raise DatabaseError(f"cannot connect to the database: {exc}") from exc
        await self._check_migrations()
        self.store = Store(self.pool, access_ttl=cfg.access_ttl)
        self.metrics = Metrics(cfg.chains)
        for name, chain_cfg in cfg.chains.items():
            adapter = await open_adapter(chain_cfg, self.metrics.rpc_observer(name))
            self.adapters[name] = adapter
            await adapter.startup_check()
            log.info("chain_ready", chain=name, endpoints=len(chain_cfg.rpc_urls))
        policy = policy_of(cfg)
        self.watchers = [
            Watcher(self.adapters[name], self.store, chain_cfg, policy,
                    lock_conninfo=self.conninfo, poll_interval=cfg.poll_interval)
            for name, chain_cfg in cfg.chains.items()
        ]
        self.claims = ClaimProcessor(self.store, self.adapters, policy,
                                     recheck=timedelta(seconds=max(cfg.poll_interval, 0.2)))
        for watcher in self.watchers:
            watcher.on_reorg = self.metrics.reorg
        self.metrics.attach(self.pool, self.watchers)
        if cfg.metrics_addr is not None:
            self.metrics_server = await serve(self.metrics, *cfg.metrics_addr)

    async def _check_migrations(self) -> None:
        """Refuses to run against a schema older (or other) than this version's migrations."""
        assert self.pool is not None
        applied = await ledger.applied_async(self.pool)
        try:
            todo = migrate.pending(migrate.discover(), applied)
        except MigrationError as exc:
            raise DatabaseError(str(exc)) from exc
        if todo:
            names = ", ".join(m.filename for m in todo)
            raise DatabaseError(f"the database is not migrated (pending: {names}); "
                                "run `x402-verifier migrate` first")

    async def run(self, stop: asyncio.Event) -> None:
        assert self.claims is not None, "start() first"
        workers = WorkerPool(self.claims, workers=self.config.workers, conninfo=self.conninfo,
                             poll_interval=max(self.config.poll_interval, 0.2))
        tasks = [asyncio.create_task(w.run(stop), name=f"watch-{w.chain}") for w in self.watchers]
        tasks.append(asyncio.create_task(workers.run(stop), name="claims"))
        tasks += self._operations(stop)
        log.info("daemon_running", chains=list(self.adapters), workers=self.config.workers)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # A task that ended before anyone asked the daemon to stop is a failure: exit non-zero
        # so that systemd's Restart=on-failure brings the daemon back.
        ended = [] if stop.is_set() else [t.get_name() for t in tasks if t.done()]
        stop.set()
        self.notifier.stopping()
        done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception():
                log.error("task_failed", task=task.get_name(), error=str(task.exception()))
        stopped.cancel()
        if ended:
            raise VerifierError(f"daemon task(s) {', '.join(ended)} ended unexpectedly")

    def _operations(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """Scheduled jobs, the metrics queries, and systemd's READY=1 then its watchdog."""
        cfg, metrics = self.config, self.metrics
        assert self.pool is not None and metrics is not None
        runner = jobs.Jobs(self.pool, backfill_hours=cfg.analytics_backfill_hours,
                           retention_days=cfg.usage_retention_days, on_run=metrics.job_finished)
        scheduler = jobs.JobScheduler(runner, jobs.triggers_of(cfg))
        limit = stall_limit(self.notifier, cfg.poll_interval)
        self.notifier.ready(f"running: {', '.join(self.adapters)}")
        return [
            asyncio.create_task(scheduler.run(stop), name="jobs"),
            asyncio.create_task(metrics.refresh_loop(stop, self.metrics_refresh), name="metrics"),
            asyncio.create_task(self.notifier.keepalive(
                stop, lambda: watcher_progress(self.watchers, time.monotonic(), limit)),
                name="watchdog"),
        ]

    async def close(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.close()
        for name, adapter in self.adapters.items():
            pool = getattr(getattr(adapter, "rpc", None), "pool", None)
            for endpoint in getattr(pool, "endpoints", ()):
                log.info("rpc_totals", chain=name, endpoint=endpoint.url, **endpoint.stats)
        for adapter in self.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()
        if self.pool is not None:
            await self.pool.close()
