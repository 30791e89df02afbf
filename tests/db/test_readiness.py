"""/readyz is often open to a load balancer: when the database refuses, it says so without the
server's text (role and database names, hosts), which goes to the daemon's log only."""

from __future__ import annotations

import json

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from verifier.metrics import Metrics
from verifier.watcher_status import StatusBoard


async def test_readiness_never_echoes_the_database_error(database_url):
    secret_role = "role_named_s3cr3t_x402"
    bad = make_conninfo(**{**conninfo_to_dict(database_url), "user": secret_role})
    pool = AsyncConnectionPool(bad, min_size=0, max_size=1, open=False, timeout=2)
    await pool.open(wait=False)
    try:
        metrics = Metrics(chains={}, board=StatusBoard(), pool=pool)
        ready, detail = await metrics.readiness()
    finally:
        await pool.close()
    assert ready is False
    assert detail["database"].startswith("unreachable")
    assert secret_role not in json.dumps(detail)


async def test_readiness_says_ok_when_the_database_answers(database_url):
    async with AsyncConnectionPool(database_url, min_size=0, max_size=1, open=False) as pool:
        ready, detail = await Metrics(chains={}, board=StatusBoard(), pool=pool).readiness()
    assert ready is True and detail["database"] == "ok"
