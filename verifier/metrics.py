"""Prometheus metrics and health checks, served by the daemon on X402_METRICS_ADDR.

  /metrics  Prometheus text format, from a registry of our own
  /healthz  200 while the process and its event loop answer
  /readyz   200 when the database answers, every configured chain is watched (by this instance
            or, as its lease shows, another) and every active watcher is within its chain's
            X402_<CHAIN>_MAX_LAG_BLOCKS of the head; 503 otherwise, with the reasons as JSON

Chain figures are read, when scraped, from the status each watcher last published. Payments and
claims by status come from a database query the daemon repeats every few seconds, so a scrape
never waits on the database and still answers when it is down (x402_database_up 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from psycopg_pool import AsyncConnectionPool

from verifier import vocab
from verifier.config import ChainConfig
from verifier.errors import ConfigError, DatabaseError
from verifier.jobs import JOBS, JobRun
from verifier.rpc.failover import Endpoint, Observer
from verifier.store import reports
from verifier.watcher_status import StatusBoard, WatcherStatus

log = structlog.get_logger("verifier.metrics")

PAYMENT_STATUSES = vocab.PAYMENT_STATUSES
CLAIM_STATUSES = vocab.CLAIM_STATUSES
QUARANTINE_REASONS = vocab.QUARANTINE_REASONS
JOB_STATUSES = ("ok", "skipped", "failed")
PING_TIMEOUT = 3.0
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


def endpoint_label(endpoint: Endpoint) -> str:
    """'rank:host[:port]': RPC URLs often carry an API key in their path or query, which must
    not end up in a metrics label (verifier.redact.label)."""
    return endpoint.label


@dataclass
class Metrics:
    """The daemon's registry, the hooks that feed it, and the health checks."""

    chains: Mapping[str, ChainConfig]
    board: StatusBoard  # what the watchers last published
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    pool: AsyncConnectionPool | None = None
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    last_ok: dict[str, float] = field(default_factory=dict)
    database_up: bool | None = None
    facilitator: Any = None  # verifier.x402.facilitator.Facilitator, when serving
    settler_balances: dict[str, int | None] = field(default_factory=dict)
    fee_payer_lamports: int | None = None

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        self.rpc_requests = Counter("x402_rpc_requests", "RPC requests sent (a batch counts once)",
                                    ["chain", "endpoint", "call"], registry=r)
        self.rpc_errors = Counter("x402_rpc_errors", "RPC requests that failed, by error class",
                                  ["chain", "endpoint", "call", "kind"], registry=r)
        self.rpc_seconds = Histogram("x402_rpc_request_duration_seconds", "RPC request latency",
                                     ["chain", "endpoint"], buckets=RPC_BUCKETS, registry=r)
        self.job_runs = Counter("x402_job_runs", "Scheduled job runs by result",
                                ["job", "status"], registry=r)
        self.job_seconds = Histogram("x402_job_duration_seconds", "Duration of job runs that ran",
                                     ["job"], buckets=JOB_BUCKETS, registry=r)
        for job in JOBS:
            for status in JOB_STATUSES:
                self.job_runs.labels(job, status)
        r.register(_StateCollector(self))

    # -- hooks ----------------------------------------------------------------------------------

    def rpc_observer(self, chain: str) -> Observer:
        def observe(endpoint: Endpoint, call: str, seconds: float,
                    error: BaseException | None) -> None:
            label = endpoint_label(endpoint)
            self.rpc_requests.labels(chain, label, call).inc()
            self.rpc_seconds.labels(chain, label).observe(seconds)
            if error is not None:
                self.rpc_errors.labels(chain, label, call, error.__class__.__name__).inc()

        return observe

    def job_finished(self, run: JobRun) -> None:
        self.job_runs.labels(run.job, run.status).inc()
        if run.status != "skipped":
            self.job_seconds.labels(run.job).observe(run.seconds)

    def watch_facilitator(self, facilitator: Any) -> None:
        self.facilitator = facilitator

    async def refresh_settlers(self) -> None:
        if self.facilitator is None:
            return
        for name, chain in self.facilitator.chains.items():
            self.settler_balances[name] = await chain.settler.balance()
        svm = getattr(self.facilitator, "svm", None)
        if svm is not None:  # Solana's fee payer, in lamports
            self.fee_payer_lamports = await svm.settler.balance()

    # -- database figures -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Payments and claims by chain and status, and when each job last succeeded on any
        instance; database_up says whether it worked."""
        assert self.pool is not None
        try:
            found = await reports.counts(self.pool, PING_TIMEOUT)
        except DatabaseError as exc:
            if self.database_up is not False:
                log.warning("metrics_refresh_failed", error=str(exc))
            self.database_up = False
            return
        self.last_ok = {job: at.timestamp() for job, at in found.last_ok.items()}
        self.counts = {"payments_by_status": found.payments, "claims_by_status": found.claims,
                       "quarantined_by_reason": found.quarantined}
        self.database_up = True
        await self.refresh_settlers()

    async def refresh_loop(self, stop: asyncio.Event, every: float) -> None:
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    # -- health ---------------------------------------------------------------------------------

    async def database_reachable(self) -> tuple[bool, str]:
        if self.pool is None:
            return False, "not connected"
        try:
            await reports.ping(self.pool, PING_TIMEOUT)
        except TimeoutError:
            return False, "unreachable (no answer in time)"
        except DatabaseError as exc:
            # /readyz is often open to a load balancer: the server's text (user names, hosts,
            # database names) goes to the log only.
            log.warning("readiness_database_error", error=str(exc).strip())
            return False, "unreachable (see the daemon's log)"
        return True, "ok"

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        db_ok, db_detail = await self.database_reachable()
        chains = {w.chain: self._chain_readiness(w) for w in self.board.current()}
        ready = db_ok and all(c["ok"] for c in chains.values())
        detail: dict[str, Any] = {"ready": ready, "database": db_detail, "chains": chains}
        if self.facilitator is not None:
            await self.refresh_settlers()
            settlers = {}
            for name, chain in self.facilitator.chains.items():
                balance = self.settler_balances.get(name)
                minimum = self.chains[name].settler_min_balance_wei
                settlers[name] = {"ok": balance is not None and balance >= minimum,
                                  "address": chain.settler.address, "balance_wei": balance,
                                  "min_balance_wei": minimum}
            ready = ready and all(s["ok"] for s in settlers.values())
            detail.update(ready=ready, settlers=settlers)
        return ready, detail

    def _chain_readiness(self, w: WatcherStatus) -> dict[str, Any]:
        if not w.active:
            # A standby proves nothing itself: ready only while another instance's lease is live.
            return {"ok": w.watched, "active": False, "watched": w.watched}
        lag, limit = w.lag_blocks, self.chains[w.chain].max_lag_blocks
        if w.wrong_chain is not None:
            # No RPC endpoint serves the configured chain (a chain switch): not ready.
            return {"ok": False, "active": True, "wrong_chain": w.wrong_chain}
        return {
            "ok": lag is not None and lag <= limit,
            "active": True,
            "head": w.view.head if w.view else None,
            "scanned": w.scanned,
            "lag_blocks": lag,
            "max_lag_blocks": limit,
        }


class _StateCollector:
    """Chain figures from the statuses the watchers last published, and the last database
    figures, at scrape time."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # unknown until collected: nothing for the registry to check up front

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        chain = ["chain"]
        head = GaugeMetricFamily("x402_chain_head_block", "Chain head seen by the watcher",
                                 labels=chain)
        final = GaugeMetricFamily("x402_chain_final_block", "Highest block/slot counted final",
                                  labels=chain)
        scanned = GaugeMetricFamily("x402_chain_scanned_block",
                                    "Highest block/slot the watcher has scanned", labels=chain)
        lag = GaugeMetricFamily("x402_chain_lag_blocks", "Head minus scanned block", labels=chain)
        lag_s = GaugeMetricFamily(
            "x402_chain_lag_seconds",
            "Seconds since the watcher last had scanned up to the head it saw", labels=chain)
        limit = GaugeMetricFamily("x402_chain_max_lag_blocks",
                                  "Lag above which /readyz fails", labels=chain)
        active = GaugeMetricFamily("x402_watcher_active",
                                   "1 when this instance holds the chain's watcher lock",
                                   labels=chain)
        stale = GaugeMetricFamily("x402_watcher_last_progress_seconds",
                                  "Seconds since the watcher last completed a scan step",
                                  labels=chain)
        statuses = self.m.board.current()
        for w in statuses:
            active.add_metric([w.chain], 1 if w.active else 0)
            limit.add_metric([w.chain], self.m.chains[w.chain].max_lag_blocks)
            if not w.active:
                continue
            stale.add_metric([w.chain], now - w.last_progress)
            if w.view is not None:
                head.add_metric([w.chain], w.view.head)
                final.add_metric([w.chain], w.view.final)
            if w.scanned is not None:
                scanned.add_metric([w.chain], w.scanned)
            if (blocks := w.lag_blocks) is not None:
                lag.add_metric([w.chain], blocks)
            lag_s.add_metric([w.chain], now - (w.caught_up_at or self.m.started))
        yield from (head, final, scanned, lag, lag_s, limit, active, stale)
        yield from _reorgs(statuses)
        yield from self._database()
        yield from self._facilitator()

    def _facilitator(self) -> Iterator[Metric]:
        f = self.m.facilitator
        if f is None:
            return
        outcomes = CounterMetricFamily("x402_settlements", "/settle answers by outcome",
                                       labels=["outcome"])
        for outcome, count in sorted(f.outcomes.items()):
            outcomes.add_metric([outcome], count)
        yield outcomes
        balance = GaugeMetricFamily("x402_settler_balance_wei",
                                    "Native balance of the settler key", labels=["chain", "address"])
        for name, chain in f.chains.items():
            value = self.m.settler_balances.get(name)
            if value is not None:
                balance.add_metric([name, chain.settler.address], value)
        yield balance
        svm = getattr(f, "svm", None)
        if svm is not None and self.m.fee_payer_lamports is not None:
            lamports = GaugeMetricFamily("x402_fee_payer_balance_lamports",
                                         "SOL balance of the Solana x402 fee payer",
                                         labels=["address"])
            lamports.add_metric([svm.settler.address], self.m.fee_payer_lamports)
            yield lamports

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("x402_database_up",
                               "1 when the last metrics query reached the database")
        up.add_metric([], 1 if self.m.database_up else 0)
        yield up
        last_ok = GaugeMetricFamily("x402_job_last_success_timestamp_seconds",
                                    "Unix time a job last succeeded, on any instance",
                                    labels=["job"])
        for job, at in sorted(self.m.last_ok.items()):
            last_ok.add_metric([job], at)
        yield last_ok
        if not self.m.counts:
            return
        for name, title, statuses in (
            ("payments_by_status", "x402_payments", PAYMENT_STATUSES),
            ("claims_by_status", "x402_claims", CLAIM_STATUSES),
        ):
            family = GaugeMetricFamily(title, f"Rows of {title.removeprefix('x402_')} by status",
                                       labels=["chain", "status"])
            counts = self.m.counts.get(name, {})
            keys = {(c, s) for c in self.m.chains for s in statuses} | set(counts)
            for key in sorted(keys):
                family.add_metric(list(key), counts.get(key, 0))
            yield family
        held = GaugeMetricFamily(
            "x402_quarantined_transactions",
            "Solana transactions put aside unread (verifier.solana_quarantine), by reason",
            labels=["chain", "reason"])
        counts = self.m.counts.get("quarantined_by_reason", {})
        solana = [name for name, cfg in self.m.chains.items() if cfg.kind == "solana"]
        keys = {(c, r) for c in solana for r in QUARANTINE_REASONS} | set(counts)
        for key in sorted(keys):
            held.add_metric(list(key), counts.get(key, 0))
        yield held


def _reorgs(statuses: Sequence[WatcherStatus]) -> Iterator[Metric]:
    """Counted by each watcher in its status, active or not: a reorg met before this instance
    went standby still counts."""
    reorgs = CounterMetricFamily("x402_reorgs", "Reorgs detected by the watcher",
                                 labels=["chain"])
    blocks = CounterMetricFamily("x402_reorged_blocks", "Blocks found replaced by reorgs",
                                 labels=["chain"])
    set_aside = CounterMetricFamily("x402_payments_set_aside",
                                    "Payment rows the database refused, set aside (logged)",
                                    labels=["chain"])
    wrong = GaugeMetricFamily("x402_chain_wrong_chain",
                              "1 while no RPC endpoint serves the configured chain",
                              labels=["chain"])
    for w in statuses:
        reorgs.add_metric([w.chain], w.reorgs)
        blocks.add_metric([w.chain], w.reorged_blocks)
        set_aside.add_metric([w.chain], w.set_aside)
        wrong.add_metric([w.chain], 1 if w.wrong_chain is not None else 0)
    yield from (reorgs, blocks, set_aside, wrong)


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class MetricsServer:
    runner: web.AppRunner

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.runner.addresses[0][:2]
        return str(host), int(port)

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(metrics: Metrics, host: str, port: int) -> MetricsServer:
    app = web.Application()
    app.router.add_get("/metrics", _handler_metrics(metrics))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _handler_readyz(metrics))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"X402_METRICS_ADDR: cannot listen on {host}:{port}: {exc.strerror}"
                          ) from exc
    server = MetricsServer(runner)
    host, port = server.address
    log.info("metrics_listening", address=f"{host}:{port}")
    return server


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _handler_metrics(metrics: Metrics) -> Handler:
    async def handle(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def _handler_readyz(metrics: Metrics) -> Handler:
    async def handle(_request: web.Request) -> web.Response:
        ready, detail = await metrics.readiness()
        return web.Response(text=json.dumps(detail, indent=2) + "\n",
                            content_type="application/json", status=200 if ready else 503)

    return handle
