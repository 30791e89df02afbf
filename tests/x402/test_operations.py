"""What the operator sees of the facilitator: doctor, /metrics, /readyz; the key never."""

from __future__ import annotations

import asyncio

import httpx

from tests.ops.harness import base_url, samples, value
from tests.x402 import payloads
from tests.x402.conftest import PaidApi, paid_api_running
from tests.x402.test_refusals import post
from verifier import doctor


async def test_doctor_shows_the_settler_address_balance_and_nonces_never_the_key(
        paid_api: PaidApi):
    assert (await post(paid_api, "/settle", await payloads.body(paid_api.payer))
            ).json()["success"]
    env = {**paid_api.env, "DATABASE_URL": paid_api.database_url}
    checks = await asyncio.to_thread(lambda: list(doctor.diagnose(env)))
    settler = next(c for c in checks if c.name == "settler base")
    assert settler.ok, settler
    assert paid_api.settler.address.lower() in settler.detail
    assert "ETH" in settler.detail and "in the ledger" in settler.detail
    key = paid_api.settler.key.hex().removeprefix("0x")
    assert all(key not in c.detail for c in checks)


async def test_metrics_count_settlements_and_show_the_balance(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    for _ in range(2):
        await post(paid_api, "/settle", body)
    await paid_api.daemon.metrics.refresh()
    async with httpx.AsyncClient() as client:
        text = (await client.get(base_url(paid_api.daemon) + "/metrics")).text
        ready = await client.get(base_url(paid_api.daemon) + "/readyz")
    found = samples(text)
    assert value(found, "x402_settlements_total", outcome="success") == 1
    assert value(found, "x402_settlements_total", outcome="duplicate") == 1
    assert (value(found, "x402_settler_balance_wei", chain="base",
                  address=paid_api.settler.address.lower()) or 0) > 0
    assert paid_api.settler.key.hex().removeprefix("0x") not in text
    assert ready.status_code == 200 and ready.json()["settlers"]["base"]["ok"] is True


async def test_readyz_fails_below_the_minimum_balance(devnet, database_url, secrets_dir):
    async with paid_api_running(devnet, database_url, secrets_dir,
                                X402_BASE_SETTLER_MIN_BALANCE_ETH="1000000000") as api, \
            httpx.AsyncClient() as client:
        ready = await client.get(base_url(api.daemon) + "/readyz")
    assert ready.status_code == 503
    assert ready.json()["settlers"]["base"]["ok"] is False
