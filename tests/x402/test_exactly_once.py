"""Exactly once: concurrent identical /settle calls send one transaction; a daemon killed
between broadcast and receipt finds its stored transaction after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.daemon import eventually, query
from tests.x402 import payloads
from tests.x402.conftest import PaidApi, facilitator_env, write_secret
from tests.x402.test_refusals import post, settler_nonce
from verifier.devnet.evm import EvmDevnet


async def test_eight_concurrent_identical_settles_send_one_transaction(paid_api: PaidApi):
    body = await payloads.body(paid_api.payer)
    sent = settler_nonce(paid_api)
    answers = [r.json() for r in await asyncio.gather(
        *(post(paid_api, "/settle", body) for _ in range(8)))]
    assert settler_nonce(paid_api) == sent + 1
    successes = [a for a in answers if a["success"]]
    assert len(successes) == 1, answers
    tx = successes[0]["transaction"]
    repeats = [a for a in answers if not a["success"]]
    assert all(a["errorReason"] == "duplicate_settlement" and a["transaction"] == tx
               for a in repeats), repeats
    assert query(paid_api.database_url, "SELECT count(*), min(tx_hash) FROM x402_payments"
                 ) == [(1, tx.lower())]
    assert query(paid_api.database_url, "SELECT count(*) FROM x402_usage") == [(1,)]


async def test_settlements_are_pipelined_with_database_nonces(paid_api: PaidApi):
    """Distinct authorizations at once: one transaction each, consecutive nonces, no gap."""
    payers = paid_api.devnet.accounts[1:6]
    for payer in payers[1:]:
        paid_api.devnet.mint(payer.address, 1_000_000)
    first = settler_nonce(paid_api)
    bodies = [await payloads.body(p) for p in payers for _ in range(2)]
    answers = [r.json() for r in await asyncio.gather(
        *(post(paid_api, "/settle", b) for b in bodies))]
    assert all(a["success"] for a in answers), answers
    nonces = sorted(int(paid_api.devnet.transaction(a["transaction"])["nonce"], 16)
                    for a in answers)
    assert nonces == list(range(first, first + len(bodies)))
    assert query(paid_api.database_url, "SELECT next_nonce FROM verifier.settler_nonces"
                 ) == [(first + len(bodies),)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(env: dict[str, str]) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_listening(url: str, token: str) -> None:
    async def probe() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(url + "/supported",
                                     headers={"Authorization": f"Bearer {token}"})
                return r.status_code == 200
        except httpx.HTTPError:
            return False

    for _ in range(300):
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the facilitator did not come up")


async def settle(url: str, token: str, body: dict) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(url + "/settle", json=body,
                              headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_sigkill_between_broadcast_and_receipt_then_restart(
        devnet: EvmDevnet, database_url: str, secrets_dir: Path):
    settler, payer = devnet.accounts[9], devnet.accounts[1]
    devnet.mint(payer.address, 1_000_000)
    token = "t" * 32
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = facilitator_env(devnet.url, write_secret(secrets_dir / "k", settler.key.hex()),
                          write_secret(secrets_dir / "t", token),
                          X402_FACILITATOR_ADDR=f"127.0.0.1:{port}",
                          X402_FACILITATOR_SETTLE_TIMEOUT="1", DATABASE_URL=database_url)
    body = await payloads.body(payer)
    devnet.set_automine(False)  # broadcast, but no receipt
    proc = start_daemon(env)
    try:
        await wait_listening(url, token)
        first = await settle(url, token, body)
        assert first["success"] is False and first["errorReason"] == "settlement_pending"
        tx = first["transaction"]
        assert devnet.transaction(tx) is not None  # in the node's pool
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    # The crash also lost the transaction from the node (a restarted node, a dropped one): only
    # the ledger still has its signed bytes.
    devnet.rpc("anvil_dropTransaction", tx)
    assert devnet.transaction(tx) is None
    assert query(database_url, "SELECT state, tx_hash FROM verifier.settlements"
                 ) == [("sent", tx.lower())]
    devnet.set_automine(True)
    nonce_before = int(devnet.rpc("eth_getTransactionCount", settler.address, "latest"), 16)
    proc = start_daemon(env)
    try:
        await wait_listening(url, token)
        await eventually(lambda: devnet.receipt(tx), within=30)
        again = await settle(url, token, body)
        assert again["success"] is True and again["transaction"] == tx, again
        third = await settle(url, token, body)
        assert third["errorReason"] == "duplicate_settlement" and third["transaction"] == tx
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            proc.kill()
    assert int(devnet.rpc("eth_getTransactionCount", settler.address, "latest"), 16) \
        == nonce_before + 1
    assert query(database_url, "SELECT count(*), min(tx_hash) FROM x402_payments"
                 ) == [(1, tx.lower())]
    assert query(database_url, "SELECT count(*) FROM x402_usage") == [(1,)]


async def test_two_daemons_settle_with_one_key_without_nonce_conflict(
        devnet: EvmDevnet, database_url: str, secrets_dir: Path):
    from tests.daemon import running_daemon
    from tests.x402.conftest import facilitator_url

    settler = devnet.accounts[9]
    payers = devnet.accounts[1:9]
    for payer in payers:
        devnet.mint(payer.address, 1_000_000)
    token = "s" * 32
    env = facilitator_env(devnet.url, write_secret(secrets_dir / "k", settler.key.hex()),
                          write_secret(secrets_dir / "t", token))
    first = int(devnet.rpc("eth_getTransactionCount", settler.address, "pending"), 16)
    bodies = [await payloads.body(p) for p in payers for _ in range(5)]  # 40 payments
    async with running_daemon(env, database_url) as one, running_daemon(env, database_url) as two:
        urls = [facilitator_url(one), facilitator_url(two)]
        answers = await asyncio.gather(*(settle(urls[i % 2], token, b)
                                         for i, b in enumerate(bodies)))
        # Each authorization once more, on the other daemon: nothing new is sent.
        repeats = await asyncio.gather(*(settle(urls[(i + 1) % 2], token, b)
                                         for i, b in enumerate(bodies)))
    assert all(a["success"] for a in answers), [a for a in answers if not a["success"]]
    assert all(r["errorReason"] == "duplicate_settlement" for r in repeats)
    assert [r["transaction"] for r in repeats] == [a["transaction"] for a in answers]
    nonces = sorted(int(devnet.transaction(a["transaction"])["nonce"], 16) for a in answers)
    assert nonces == list(range(first, first + len(bodies)))  # no conflict, no gap
    assert int(devnet.rpc("eth_getTransactionCount", settler.address, "latest"), 16) \
        == first + len(bodies)
    assert query(database_url, "SELECT count(*) FROM x402_payments") == [(len(bodies),)]


async def test_a_settlement_whose_nonce_another_transaction_took_fails(
        devnet: EvmDevnet, database_url: str, secrets_dir: Path):
    """The key used elsewhere took the settlement's nonce: the settlement will never be mined;
    the tracker says so instead of waiting for ever, and a repeat answers transaction_failed."""
    from tests.x402.conftest import paid_api_running

    async with paid_api_running(devnet, database_url, secrets_dir,
                                X402_FACILITATOR_SETTLE_TIMEOUT="0.5") as api:
        body = await payloads.body(api.payer)
        devnet.set_automine(False)
        first = (await post(api, "/settle", body)).json()
        assert first["errorReason"] == "settlement_pending"
        tx = first["transaction"]
        nonce = int(devnet.transaction(tx)["nonce"], 16)
        devnet.rpc("anvil_dropTransaction", tx)
        devnet.send({"from": api.settler.address, "to": api.settler.address, "value": "0x0",
                     "nonce": hex(nonce)}, wait=False)
        devnet.rpc("evm_mine")
        devnet.set_automine(True)
        await eventually(lambda: query(database_url, "SELECT state FROM verifier.settlements"
                                       " WHERE state = 'failed'"), within=20)
        again = (await post(api, "/settle", body)).json()
    assert again["success"] is False and again["errorReason"] == "transaction_failed"
    assert again["transaction"] == tx
    assert devnet.receipt(tx) is None
    assert query(database_url, "SELECT count(*) FROM x402_payments") == [(0,)]


async def test_an_entry_taken_and_never_signed_is_released(paid_api: PaidApi):
    """A daemon that died between taking the entry and signing left no transaction: the entry
    is released, and the authorization is settled on a retry."""
    body = await payloads.body(paid_api.payer)
    auth = body["paymentPayload"]["payload"]["authorization"]
    query(paid_api.database_url,
          "INSERT INTO verifier.settlements (chain, payer, nonce, pay_to, asset, amount,"
          " valid_before, network, updated_at) VALUES ('base', %(payer)s, %(nonce)s, %(to)s,"
          " 'x', 10000, 0, 'eip155:8453', now() - interval '2 minutes') RETURNING id",
          {"payer": auth["from"].lower(), "nonce": auth["nonce"].lower(), "to": auth["to"].lower()})
    await eventually(lambda: query(paid_api.database_url,
                                   "SELECT count(*) = 0 FROM verifier.settlements")[0][0])
    answer = (await post(paid_api, "/settle", body)).json()
    assert answer["success"] is True, answer
    assert query(paid_api.database_url, "SELECT state FROM verifier.settlements") == [("mined",)]
