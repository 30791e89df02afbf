"""DESIGN section 8: the database going away. The daemon keeps running, reconnects, and resumes
from the stored cursor: payments made while PostgreSQL was down are verified once it is back,
nothing is recorded twice, and claims are served again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.daemon import eventually, query, running_daemon
from tests.evm.chain import daemon_env, fresh_chain
from tests.reliability.support import claim_all, pay_many, payments
from verifier.devnet.postgres import RestartablePostgres


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    with RestartablePostgres() as server:
        yield server


async def test_the_daemon_survives_postgres_going_away_and_resumes(own_postgres):
    url = own_postgres.database()
    with fresh_chain() as chain:
        before = pay_many(chain, 6, seed="before-restart")
        chain.devnet.mine(3)
        async with running_daemon(daemon_env(chain.url), url) as daemon:
            await eventually(lambda: set(payments(url)) == {p.tx_hash for p in before})
            await asyncio.to_thread(own_postgres.stop)
            during = pay_many(chain, 6, seed="during-restart", first_amount=700_000)
            chain.devnet.mine(3)
            await asyncio.sleep(3)  # several polls and claim rounds against no database
            watch_tasks = [w for w in daemon.watchers]
            await asyncio.to_thread(own_postgres.start)
            after = pay_many(chain, 4, seed="after-restart", first_amount=900_000)
            chain.devnet.mine(3)
            everything = [*before, *during, *after]
            await eventually(lambda: payments(url) == {
                p.tx_hash: ("verified", p.amount) for p in everything}, within=60)
            claims = await claim_all(url, [*during, *after])
            assert all(w.status.active for w in watch_tasks)
        head = chain.devnet.head()
    assert {tx: r.status for tx, (r, _) in claims.items()} == {
        p.tx_hash: "issued" for p in [*during, *after]}
    assert query(url, "SELECT position FROM verifier.cursors WHERE chain = 'base'") == [(head,)]
