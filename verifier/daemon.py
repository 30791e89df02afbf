"""The long-running daemon: watchers, claim workers, scheduled jobs, metrics and the systemd
watchdog, on one loop.

Stops cleanly on SIGTERM/SIGINT: loops finish the transaction in hand, locks are released and
the process exits 0 within 10 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import structlog
from psycopg_pool import AsyncConnectionPool

from verifier import jobs, migrate
from verifier.chains import open_adapter
from verifier.chains.base import ChainAdapter
from verifier.claims import ClaimProcessor, Lookups, WorkerPool
from verifier.config import ChainConfig, Config
from verifier.errors import DatabaseError, MigrationError, VerifierError
from verifier.metrics import Metrics, MetricsServer, serve
from verifier.store import Store, ledger
from verifier.systemd import Notifier, stall_limit, watcher_progress
from verifier.watcher import Watcher
from verifier.watcher_status import StatusBoard
from verifier.x402 import build as x402_build
from verifier.x402.facilitator import Facilitator
from verifier.x402.server import FacilitatorServer
from verifier.x402.server import serve as x402_serve

log = structlog.get_logger("verifier.daemon")
STOP_GRACE = 8.0


@dataclass
class Daemon:
    """Everything the daemon runs, opened and checked: made by `Daemon.open`, which also
    closes it."""

    config: Config
    conninfo: str
    notifier: Notifier
    pool: AsyncConnectionPool
    store: Store
    metrics: Metrics
    board: StatusBoard
    adapters: dict[str, ChainAdapter]
    watchers: list[Watcher]
    claims: ClaimProcessor
    metrics_server: MetricsServer | None  # None: X402_METRICS_ADDR=off
    metrics_refresh: float = 15.0  # seconds between the payments/claims-by-status queries
    facilitator: Facilitator | None = None  # None: X402_FACILITATOR_ADDR=off
    facilitator_server: FacilitatorServer | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: Config, conninfo: str, notifier: Notifier | None = None, *,
                   metrics_refresh: float = 15.0) -> AsyncIterator[Daemon]:
        """Opens the database and every chain, and checks them (raises when something is off);
        on leaving, closes what was opened, newest first."""
        if config.policy.claim_proof == "none":
            log.warning("claim_proof_disabled",
                        detail="X402_CLAIM_PROOF=none: whoever presents a tx hash first gets "
                               "its credit")
        async with contextlib.AsyncExitStack() as opened:
            pool = await opened.enter_async_context(_database(config, conninfo))
            await _check_migrations(pool)
            store = Store(pool, access_ttl=config.access_ttl)
            board = StatusBoard()
            metrics = Metrics(config.chains, board, pool=pool)
            adapters = {name: await _chain(opened, chain_cfg, metrics)
                        for name, chain_cfg in config.chains.items()}
            policy = config.policy
            watchers = [Watcher(adapters[name], store, chain_cfg, policy, board=board,
                                lease_conninfo=conninfo, poll_interval=config.poll_interval)
                        for name, chain_cfg in config.chains.items()]
            claims = ClaimProcessor(store, adapters, policy,
                                    recheck=timedelta(seconds=max(config.poll_interval, 0.2)),
                                    lookups=Lookups(max(1, config.workers // 2),
                                                    config.claim_lookups_per_second))
            server = None
            if config.metrics_addr is not None:
                server = await serve(metrics, *config.metrics_addr)
                opened.push_async_callback(server.close)
            x402, x402_server = None, None
            if config.facilitator_addr is not None:
                token = (x402_build.read_token(config.facilitator_token_file)
                         if config.facilitator_token_file else None)
                x402 = x402_build.facilitator(config, adapters, pool)
                metrics.watch_facilitator(x402)
                x402_server = await x402_serve(x402, *config.facilitator_addr, token)
                opened.push_async_callback(x402_server.close)
            yield cls(config, conninfo, notifier or Notifier(None), pool, store, metrics, board,
                      adapters, watchers, claims, server, metrics_refresh, x402, x402_server)

    async def run(self, stop: asyncio.Event) -> None:
        workers = WorkerPool(self.claims, workers=self.config.workers, conninfo=self.conninfo,
                             poll_interval=max(self.config.poll_interval, 0.2))
        tasks = [asyncio.create_task(w.run(stop), name=f"watch-{w.chain}") for w in self.watchers]
        tasks.append(asyncio.create_task(workers.run(stop), name="claims"))
        tasks += self._operations(stop)
        if self.facilitator is not None:
            tasks.append(asyncio.create_task(self.facilitator.track(stop), name="x402-settle"))
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
        runner = jobs.Jobs(self.pool, backfill_hours=cfg.analytics_backfill_hours,
                           retention_days=cfg.usage_retention_days,
                           claim_retention_days=cfg.claim_retention_days,
                           on_run=metrics.job_finished)
        scheduler = jobs.JobScheduler(runner, jobs.triggers_of(cfg))
        limit = stall_limit(self.notifier, cfg.poll_interval)
        self.notifier.ready(f"running: {', '.join(self.adapters)}")
        return [
            asyncio.create_task(scheduler.run(stop), name="jobs"),
            asyncio.create_task(metrics.refresh_loop(stop, self.metrics_refresh), name="metrics"),
            asyncio.create_task(self.notifier.keepalive(
                stop, lambda: watcher_progress(self.board.current(), time.monotonic(), limit)),
                name="watchdog"),
        ]


@contextlib.asynccontextmanager
async def _database(config: Config, conninfo: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(
        # + 6: jobs (up to 4 connections at once), the metrics query and the /readyz ping;
        # + 8: the facilitator's settlements.
        conninfo, min_size=1, max_size=config.workers + 2 * len(config.chains) + 4 + 6
        + (8 if config.facilitator_addr else 0),
        kwargs={"autocommit": True}, open=False,
    )
    try:
        await pool.open(wait=True, timeout=30)
    except Exception as exc:
        await pool.close()
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    try:
        yield pool
    finally:
        await pool.close()


async def _chain(opened: contextlib.AsyncExitStack, cfg: ChainConfig,
                 metrics: Metrics) -> ChainAdapter:
    """One chain's adapter, checked; closed (after logging its RPC totals) with the daemon."""
    adapter = await open_adapter(cfg, metrics.rpc_observer(cfg.name))
    opened.push_async_callback(_close_chain, cfg.name, adapter)
    await adapter.startup_check()
    log.info("chain_ready", chain=cfg.name, endpoints=len(cfg.rpc_urls))
    return adapter


async def _close_chain(name: str, adapter: ChainAdapter) -> None:
    for endpoint, stats in adapter.rpc_stats():  # named '#1 https://host', never the URL
        log.info("rpc_totals", chain=name, endpoint=endpoint, **stats)
    with contextlib.suppress(Exception):
        await adapter.close()


async def _check_migrations(pool: AsyncConnectionPool) -> None:
    """Refuses to run against a schema older (or other) than this version's migrations."""
    applied = await ledger.applied_async(pool)
    try:
        todo = migrate.pending(migrate.discover(), applied)
    except MigrationError as exc:
        raise DatabaseError(str(exc)) from exc
    if todo:
        names = ", ".join(m.filename for m in todo)
        raise DatabaseError(f"the database is not migrated (pending: {names}); "
                            "run `x402-verifier migrate` first")
