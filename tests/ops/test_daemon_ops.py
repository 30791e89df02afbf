"""The running daemon against a real anvil and PostgreSQL: /metrics, /healthz and /readyz over
HTTP with the right values, and systemd's notify protocol on a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.daemon import eventually, query
from tests.ops.harness import (
    PAYEE,
    base_url,
    daemon_env,
    datagram,
    get,
    notify_socket,
    running_daemon,
    samples,
    value,
)
from verifier.devnet.evm import EvmDevnet, local_devnet
from verifier.systemd import Notifier


@pytest.fixture
def devnet() -> Iterator[EvmDevnet]:
    with local_devnet("base") as d:
        yield d


def endpoint_label(devnet: EvmDevnet) -> str:
    return "0:" + devnet.url.removeprefix("http://").rstrip("/")


async def scrape(daemon) -> dict:
    status, text = await get(base_url(daemon) + "/metrics")
    assert status == 200
    return samples(text)


async def test_metrics_health_and_readiness_in_a_running_daemon(devnet, database_url):
    payer = devnet.accounts[1]
    devnet.mint(payer, 10_000_000)
    tx = devnet.transfer(payer, PAYEE, 1_500_000)
    async with running_daemon(daemon_env(devnet.url), database_url) as daemon:
        await eventually(lambda: query(database_url, "SELECT status FROM x402_payments "
                                                     "WHERE tx_hash = %(tx)s", {"tx": tx})
                         == [("verified",)])
        head = devnet.head()

        async def settled() -> dict | None:
            m = await scrape(daemon)
            done = (value(m, "x402_payments", chain="base", status="verified") == 1
                    and value(m, "x402_chain_scanned_block", chain="base") == head)
            return m if done else None

        m = await until(settled)
        assert value(m, "x402_chain_head_block", chain="base") == head
        assert value(m, "x402_chain_lag_blocks", chain="base") == 0
        assert 0 <= value(m, "x402_chain_lag_seconds", chain="base") < 10
        assert value(m, "x402_chain_max_lag_blocks", chain="base") == 50
        assert value(m, "x402_watcher_active", chain="base") == 1
        assert value(m, "x402_payments", chain="base", status="pending") == 0
        assert value(m, "x402_payments", chain="base", status="underpaid") == 0
        assert value(m, "x402_claims", chain="base", status="waiting") == 0
        assert value(m, "x402_database_up") == 1
        assert value(m, "x402_reorgs_total", chain="base") == 0
        # The RPC was observed per endpoint, labelled without the URL's path or query.
        label = endpoint_label(devnet)
        requests = {labels: v for (name, labels), v in m.items()
                    if name == "x402_rpc_requests_total"}
        assert requests and all(dict(k)["endpoint"] == label for k in requests)
        calls = {dict(k)["call"] for k in requests}
        assert any("eth_getLogs" in c for c in calls), calls  # the scans, whatever batched them
        assert value(m, "x402_rpc_request_duration_seconds_count", chain="base",
                     endpoint=label) == sum(requests.values())
        # The back-fill ran at start, once, and was counted and recorded.
        assert value(m, "x402_job_runs_total", job="analytics", status="ok") == 1
        assert value(m, "x402_job_duration_seconds_count", job="analytics") == 1
        [(ran_at,)] = query(database_url, "SELECT extract(epoch FROM finished_at)::float8 "
                                          "FROM verifier.job_runs")
        assert value(m, "x402_job_last_success_timestamp_seconds", job="analytics") == ran_at
        assert query(database_url, "SELECT detail->>'mode', (detail->>'hours')::int "
                                   "FROM verifier.job_runs") == [("backfill", 3)]
        assert query(database_url, "SELECT count(*) FROM x402_analytics") == [(9,)]

        assert await get(base_url(daemon) + "/healthz") == (200, "ok\n")
        status, body = await get(base_url(daemon) + "/readyz")
        ready = json.loads(body)
        assert status == 200, body
        assert ready["ready"] is True and ready["database"] == "ok"
        assert ready["chains"]["base"] | {"head": 0, "scanned": 0} == {
            "ok": True, "active": True, "head": 0, "scanned": 0, "lag_blocks": 0,
            "max_lag_blocks": 50}


async def until(probe, within: float = 30.0):  # type: ignore[no-untyped-def]
    """Awaits an async probe until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {within}s")
        await asyncio.sleep(0.1)


async def test_readyz_fails_while_a_watcher_lags_beyond_its_limit(devnet, database_url):
    devnet.mine(1_500)  # one block per scan step: seconds of catching up (anvil mines more slowly)
    env = daemon_env(devnet.url, X402_BASE_MAX_LAG_BLOCKS="5", X402_BASE_MAX_LOG_RANGE="1")
    async with running_daemon(env, database_url) as daemon:
        async def lagging() -> dict | None:
            status, body = await get(base_url(daemon) + "/readyz")
            detail = json.loads(body)
            base = detail["chains"]["base"]
            return detail if status == 503 and base.get("lag_blocks") is not None else None

        detail = await until(lagging)
        base = detail["chains"]["base"]
        assert detail["ready"] is False and detail["database"] == "ok"
        assert base["ok"] is False and base["max_lag_blocks"] == 5 and base["lag_blocks"] > 5
        m = await scrape(daemon)
        assert value(m, "x402_chain_lag_blocks", chain="base") > 5
        assert value(m, "x402_chain_head_block", chain="base") == devnet.head()
        assert await get(base_url(daemon) + "/healthz") == (200, "ok\n")


async def test_readyz_follows_the_database(devnet, database_url, pg_admin_url):
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    async with running_daemon(daemon_env(devnet.url), database_url) as daemon:
        async def status() -> int:
            return (await get(base_url(daemon) + "/readyz"))[0]

        await until(lambda: _is(status, 200))
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            try:
                admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)))
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %(db)s", {"db": name})
                _, body = await until(lambda: _is_full(daemon, 503))
                detail = json.loads(body)
                assert detail["ready"] is False and detail["database"] != "ok"
                assert await get(base_url(daemon) + "/healthz") == (200, "ok\n")
                m = await until(lambda: _metric_is(daemon, "x402_database_up", 0))
                assert value(m, "x402_database_up") == 0
            finally:
                admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)))
        await until(lambda: _is(status, 200), within=60)


async def _is(probe, expected):  # type: ignore[no-untyped-def]
    return await probe() == expected


async def _is_full(daemon, expected: int):  # type: ignore[no-untyped-def]
    status, body = await get(base_url(daemon) + "/readyz")
    return (status, body) if status == expected else None


async def _metric_is(daemon, name: str, expected: float):  # type: ignore[no-untyped-def]
    m = await scrape(daemon)
    return m if value(m, name) == expected else None


# -- systemd notify --------------------------------------------------------------------------------


async def test_notify_ready_then_watchdog_and_no_watchdog_once_the_watcher_stalls(
        devnet, database_url):
    sock, path = notify_socket()
    with sock:
        notifier = Notifier(path, watchdog_usec=400_000)  # WATCHDOG=1 every 0.2 s
        async with running_daemon(daemon_env(devnet.url), database_url, notifier=notifier):
            first = await datagram(sock)
            assert first.splitlines()[0] == "READY=1"  # nothing was sent before READY=1
            message = await datagram(sock)
            while not ("WATCHDOG=1" in message and "STATUS=base at " in message):
                message = await datagram(sock)  # first "base standby", until it has the lock

            assert devnet.node is not None
            devnet.node.stop()  # the watcher can make no progress any more
            message = await datagram(sock)
            while "STATUS=stalled" not in message:
                message = await datagram(sock)
            assert "WATCHDOG=1" not in message and "base no progress" in message
            for _ in range(5):  # the watchdog stays unfed while nothing progresses
                assert "WATCHDOG=1" not in await datagram(sock)
        rest = []
        while not rest or "STOPPING=1" not in rest[-1]:
            rest.append(await datagram(sock))
        assert "WATCHDOG=1" not in "".join(rest)


def test_the_run_command_notifies_systemd_and_stops_on_sigterm(devnet, database_url):
    sock, path = notify_socket()
    sock.setblocking(True)
    sock.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    env.update(daemon_env(devnet.url), DATABASE_URL=database_url, NOTIFY_SOCKET=path,
               WATCHDOG_USEC="400000", X402_LOG_FORMAT="json")
    with sock, subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env,
                                stderr=subprocess.PIPE, text=True) as proc:
        try:
            messages = [sock.recv(65536).decode()]
            assert messages[0].startswith("READY=1\nSTATUS=running: base")
            while "WATCHDOG=1" not in messages[-1]:
                messages.append(sock.recv(65536).decode())
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in messages[-1]:
                messages.append(sock.recv(65536).decode())
            assert proc.wait(timeout=15) == 0
        finally:
            proc.kill()


def test_no_ready_when_a_start_up_check_fails(devnet, database_url):
    sock, path = notify_socket()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    env.update(daemon_env(devnet.url, X402_BASE_CHAIN_ID="1"), DATABASE_URL=database_url,
               NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    with sock:
        done = subprocess.run([sys.executable, "-m", "verifier", "run"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "is on chain id 8453, expected 1" in done.stderr
        with pytest.raises(BlockingIOError):
            sock.recv(65536)  # not one datagram: READY=1 never went out
