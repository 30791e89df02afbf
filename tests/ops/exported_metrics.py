"""The metric names the daemon exports, read from a scrape of verifier.metrics' registry with
every family filled (a watcher at work, database figures, an RPC call, a job run): what the alert
rules and the Grafana dashboard may name."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from verifier import config
from verifier.jobs import JOBS, JobRun
from verifier.metrics import Metrics
from verifier.models import ChainView
from verifier.rpc.failover import Endpoint
from verifier.watcher_status import StatusBoard, WatcherStatus

ENV = {
    "X402_CHAINS": "base,ethereum",
    "X402_BASE_RPC_URLS": "http://a:8545",
    "X402_BASE_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
    "X402_ETHEREUM_RPC_URLS": "http://c:8545",
    "X402_ETHEREUM_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
}

# Not the daemon's: the blackbox exporter's probe of /readyz (README, "Metrics and alerts").
PROBE_METRICS = frozenset({"probe_success"})


def exported_names() -> set[str]:
    board = StatusBoard([
        WatcherStatus("base", last_progress=1.0, active=True, view=ChainView(head=120, final=118),
                      position=110, scanned=110, caught_up_at=1.0),
        WatcherStatus("ethereum", last_progress=0.0, watched=True, watched_at=1.0),
    ])
    metrics = Metrics(config.load(ENV).chains, board)
    metrics.database_up = True
    metrics.last_ok = {job: datetime.now(UTC).timestamp() for job in JOBS}
    metrics.counts = {"payments_by_status": {("base", "verified"): 1},
                      "claims_by_status": {("base", "waiting"): 1},
                      "quarantined_by_reason": {("solana", "unreadable"): 1}}
    endpoint = Endpoint("http://a:8545", 0, asyncio.Semaphore(1))
    observe = metrics.rpc_observer("base")
    observe(endpoint, "eth_blockNumber", 0.01, None)
    observe(endpoint, "eth_getLogs", 0.02, TimeoutError())
    metrics.job_finished(JobRun("cleanup", "ok", {}, 0.5))
    text = generate_latest(metrics.registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


# A PromQL identifier not followed by '(' (a function) nor inside a label matcher or a string.
_NAME = re.compile(r"(?<![\w\"'{=~.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                       "and", "or", "unless", "offset", "inf", "nan",
                       # aggregation operators, which may come before their grouping
                       "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                       "count_values", "bottomk", "topk", "quantile"})


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, strings, ranges, durations,
    grouping lists, functions and Grafana variables left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1",
                  expr)  # grouping labels
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables ($__rate_interval...)
    return {n for n in _NAME.findall(expr) if n not in _KEYWORDS
            and not re.fullmatch(r"\d.*", n)}
