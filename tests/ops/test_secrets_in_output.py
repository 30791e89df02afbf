"""No RPC credential in anything the verifier writes: RPC URLs carrying user:password@, an API
key in the path (/v2/<key>) and in the query (?apikey=), one endpoint dead, one failing now and
then, one sound (anvil behind a proxy that takes any path). The daemon runs (start, retriable
errors, failover, a payment recorded, stop with its RPC totals), then `doctor` and `status`;
everything each of them wrote, stdout and stderr, is searched for the secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.ops.harness import PAYEE, daemon_env
from verifier.devnet.evm import EvmDevnet, local_devnet
from verifier.devnet.faults import Fault, FaultProxy

REPO = Path(__file__).resolve().parents[2]


def keyed(url: str, tag: str) -> tuple[str, list[str]]:
    """``url`` with a user, a password, a path key and a query key; and those secrets."""
    user, password = f"user-{tag}-ZX81", f"Pw-{tag}-5ecr3t!"
    path_key, query_key = f"PATHKEY{tag}0123456789abcdef", f"QUERYKEY{tag}9876543210"
    host = url.removeprefix("http://")
    return (f"http://{user}:{password.replace('!', '%21')}@{host}/v2/{path_key}"
            f"?apikey={query_key}&network=base"), [user, password, path_key, query_key]


@pytest.fixture
def endpoints() -> Iterator[tuple[EvmDevnet, list[str], list[str], FaultProxy]]:
    with local_devnet("base") as devnet, FaultProxy(devnet.url) as good, \
            FaultProxy(devnet.url, seed=3, rate=0.3,
                       faults=(Fault.HTTP_503, Fault.RESET, Fault.MALFORMED)) as flaky:
        dead, dead_secrets = keyed("http://127.0.0.1:9", "DEAD")
        shaky, shaky_secrets = keyed(flaky.url, "FLAKY")
        sound, sound_secrets = keyed(good.url, "GOOD")
        yield devnet, [dead, shaky, sound], dead_secrets + shaky_secrets + sound_secrets, flaky


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_no_rpc_credential_in_daemon_logs_doctor_or_status(endpoints, database_url, tmp_path):
    devnet, urls, secrets, flaky = endpoints
    base = {k: v for k, v in os.environ.items() if not k.startswith(("X402_", "DATABASE_URL"))}
    env = {**base, **daemon_env(",".join(urls), X402_LOG_FORMAT="json",
                                X402_BASE_RPC_TIMEOUT="2"),
           "DATABASE_URL": database_url}
    payer = devnet.accounts[1]
    devnet.mint(payer, 5_000_000)
    tx = devnet.transfer(payer, PAYEE, 1_000_000)
    devnet.mine(3)

    log_file = tmp_path / "daemon.log"
    with log_file.open("wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "verifier", "run"], env=env, cwd=REPO,
                                  stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 90
        while not _recorded(database_url, tx):
            assert daemon.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        while flaky.injected.total() < 3 and time.monotonic() < deadline:
            devnet.mine(1)  # more polls, more faults from the flaky endpoint
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    logs = log_file.read_text()

    doctor = run("doctor", env=env)
    status = run("status", env=env)
    status_json = run("status", "--json", env=env)
    outputs = {"daemon": logs, "doctor": doctor.stdout + doctor.stderr,
               "status": status.stdout + status.stderr,
               "status --json": status_json.stdout + status_json.stderr}

    # The paths that used to carry the URL did run, and name endpoints by rank and origin.
    for event in ("chain_ready", "rpc_unreachable_at_start", "rpc_retriable_error",
                  "rpc_totals", "daemon_running"):
        assert f'"event": "{event}"' in logs, event
    assert '"endpoint": "#1 http://127.0.0.1:9"' in logs
    assert f'"endpoint": "#2 {flaky.url}"' in logs
    assert doctor.returncode == 1  # the dead endpoint fails its check
    assert "#1 http://127.0.0.1:9: " in doctor.stdout
    assert status.returncode == 0 and status_json.returncode == 0, outputs
    for where, text in outputs.items():
        for secret in secrets:
            for form in (secret, secret.replace("!", "%21")):
                assert form not in text, f"{where} shows {form!r}:\n{text[-3000:]}"


def _recorded(url: str, tx: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM x402_payments WHERE tx_hash = %(tx)s",
                            {"tx": tx}).fetchone() is not None
