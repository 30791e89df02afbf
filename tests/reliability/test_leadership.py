"""Leadership cannot be taken by a login that is not the daemon (migration 008's leases), and a
chain nobody watches is reported, never green. Real PostgreSQL, real logins, real anvil."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest

from tests.daemon import eventually, query
from tests.ops.harness import PAYEE, base_url, daemon_env, get, running_daemon
from tests.reliability.test_roles import login_as  # noqa: F401  (a fixture)
from verifier.devnet.evm import local_devnet
from verifier.store.locks import ChainLease

REPO = Path(__file__).resolve().parents[2]
OLD_KEYS = (10, 11, 12, 20, 21, 22)  # the advisory keys watchers and jobs used before 008


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


async def until_ready(daemon, status: int = 200, within: float = 20.0,  # type: ignore[no-untyped-def]
                      base: dict | None = None) -> dict:
    """/readyz once it answers ``status`` (and, if given, says ``base`` of the chain)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got, body = await get(base_url(daemon) + "/readyz")
        if got == status and (base is None or json.loads(body)["chains"]["base"] == base):
            return json.loads(body)
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


def verified(url: str, tx: str) -> bool:
    return query(url, "SELECT status FROM x402_payments WHERE tx_hash = %(tx)s",
                 {"tx": tx}) == [("verified",)]


async def test_an_analyst_holding_the_old_lock_keys_no_longer_stops_the_daemon(
        database_url, login_as):  # noqa: F811
    analyst, daemon_url = login_as("x402_readonly"), login_as("x402_daemon")
    with local_devnet("base") as devnet, psycopg.connect(analyst, autocommit=True) as squatter:
        for key in OLD_KEYS:
            assert squatter.execute("SELECT pg_try_advisory_lock(402, %(k)s)",
                                    {"k": key}).fetchone() == (True,)
        payer = devnet.accounts[1]
        devnet.mint(payer, 10_000_000)
        tx = devnet.transfer(payer, PAYEE, 1_500_000)
        async with running_daemon(daemon_env(devnet.url), daemon_url) as daemon:
            await eventually(lambda: verified(database_url, tx))
            status, body = await get(base_url(daemon) + "/readyz")
            assert status == 200 and json.loads(body)["chains"]["base"]["active"] is True
            await eventually(lambda: query(database_url, "SELECT status FROM verifier.job_runs "
                                                         "WHERE job = 'analytics'"))
    # The start-up back-fill ran, not "skipped: running_elsewhere".
    assert query(database_url, "SELECT status FROM verifier.job_runs") == [("ok",)]


async def test_a_chain_whose_lease_cannot_be_taken_is_not_ready(database_url, login_as):  # noqa: F811
    """A daemon that cannot ask for its lease (here its role lost UPDATE on the table) watches
    nothing, and knows nobody else does: /readyz says so instead of "standby, fine"."""
    daemon_url = login_as("x402_daemon")
    with local_devnet("base") as devnet:
        async with running_daemon(daemon_env(devnet.url), daemon_url) as daemon:
            await eventually(lambda: daemon.watchers[0].status.active)
            execute(database_url, "REVOKE UPDATE ON verifier.leases FROM x402_daemon")

            unwatched = {"ok": False, "active": False, "watched": False}
            detail = await until_ready(daemon, 503, base=unwatched)
            assert detail["ready"] is False and detail["database"] == "ok"
            execute(database_url, "GRANT UPDATE ON verifier.leases TO x402_daemon")
            await eventually(lambda: daemon.watchers[0].status.active, within=30)


async def test_leadership_moves_on_when_the_leader_dies(database_url, login_as):  # noqa: F811
    daemon_url = login_as("x402_daemon")
    with local_devnet("base") as devnet:
        env = {**os.environ, **daemon_env(devnet.url, X402_METRICS_ADDR="off"),
               "DATABASE_URL": daemon_url}
        leader = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "verifier", "run", env=env, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await eventually(lambda: query(
                database_url, "SELECT 1 FROM verifier.leases WHERE name = 'watch:base' "
                              "AND holder LIKE %(pid)s AND expires_at > now()",
                {"pid": f"%:{leader.pid}:%"}), within=60)
            async with running_daemon(daemon_env(devnet.url), daemon_url) as standby:
                detail = await until_ready(standby)  # once it has looked at the lease
                assert detail["chains"]["base"] == {"ok": True, "active": False, "watched": True}
                leader.send_signal(signal.SIGKILL)  # no release: its session just ends
                await asyncio.wait_for(leader.wait(), 10)
                payer = devnet.accounts[2]
                devnet.mint(payer, 10_000_000)
                tx = devnet.transfer(payer, PAYEE, 1_500_000)
                # Well before the lease's 60 s: the holder's session is gone.
                await eventually(lambda: standby.watchers[0].status.active, within=15)
                await eventually(lambda: verified(database_url, tx))
        finally:
            if leader.returncode is None:
                leader.kill()
                await asyncio.wait_for(leader.wait(), 10)


async def test_a_lease_goes_to_another_daemon_once_its_holder_stops_renewing(database_url):
    """A leader whose session lives on but which no longer renews (a stuck step) loses the
    lease when it expires; a clean stop gives it up at once."""
    one, two = ChainLease(database_url, "base", 1.0), ChainLease(database_url, "base", 1.0)
    try:
        assert await one.take() and not await two.take()
        assert await one.take()  # renewed by its holder
        await asyncio.sleep(1.2)
        assert await two.take() and not await one.take()
        await two.release()
        assert await one.take()
    finally:
        await one.release()
        await two.release()


@pytest.mark.parametrize("group", ["x402_readonly", "x402_api"])
async def test_no_other_login_can_take_a_lease(database_url, login_as, group):  # noqa: F811
    from verifier.errors import DatabaseError

    lease = ChainLease(login_as(group), "base")
    with pytest.raises(DatabaseError, match="InsufficientPrivilege"):
        await lease.take()
    await lease.release()
