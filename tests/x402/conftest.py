"""The x402 flow with parts nobody here wrote: the official x402 Python client (httpx), the
official FastAPI middleware, and Circle's FiatTokenV2_2 on anvil; the facilitator is the daemon.

`paid_api` starts the daemon with X402_FACILITATOR_ADDR on this test's event loop, and a FastAPI
app protected by the official middleware (HTTPFacilitatorClient pointed at the daemon, bearer
token through auth_provider) under uvicorn in a thread of its own: the middleware's calls are
synchronous in places (get_supported), so it must not share the daemon's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from x402 import x402Client, x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.clients import x402HttpxClient
from x402.http.facilitator_client_base import AuthHeaders
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm.exact import register_exact_evm_client, register_exact_evm_server
from x402.mechanisms.evm.signers import EthAccountSigner

from tests.daemon import running_daemon
from tests.evm.conftest import anvil, devnet, evm_baseline  # noqa: F401  (fixtures)
from tests.x402.svm_env import svm_setup  # noqa: F401  (fixture: Solana x402)
from verifier.daemon import Daemon
from verifier.devnet.evm import EvmDevnet

PAYEE = "0x2222222222222222222222222222222222222222"
PRICE = "$0.01"
PRICE_UNITS = 10_000
ROUTE = "/v1/quote"


def facilitator_env(rpc_url: str, key_file: Path, token_file: Path | None,
                    **overrides: str) -> dict[str, str]:
    env = {
        "X402_CHAINS": "base",
        "X402_BASE_RPC_URLS": rpc_url,
        "X402_BASE_PAYMENT_ADDRESS": PAYEE,
        "X402_BASE_START_BLOCK": "0",
        "X402_BASE_CONFIRMATIONS": "1",
        "X402_POLL_INTERVAL": "0.1",
        "X402_METRICS_ADDR": "127.0.0.1:0",
        "X402_WORKERS": "1",
        "X402_CLEANUP_CRON": "0 0 1 1 *",
        "X402_ANALYTICS_CRON": "0 0 1 1 *",
        "X402_LOG_FORMAT": "console",
        "X402_PRICE_PER_REQUEST_USDC": "0.001",
        # Above the price: the watcher must judge these x402 "exact" payments by
        # X402_EXACT_MIN_PAYMENT_USDC (default the price), as the facilitator does.
        "X402_MIN_PAYMENT_USDC": "0.10",
        "X402_FACILITATOR_ADDR": "127.0.0.1:0",
        "X402_BASE_SETTLER_KEY_FILE": str(key_file),
        "X402_FACILITATOR_SETTLE_TIMEOUT": "10",
    }
    if token_file is not None:
        env["X402_FACILITATOR_TOKEN_FILE"] = str(token_file)
    env.update(overrides)
    return env


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path


class BearerAuth:
    """What FacilitatorConfig(auth_provider=...) takes: headers for each endpoint."""

    def __init__(self, token: str):
        self.token = token

    def get_auth_headers(self) -> AuthHeaders:
        header = {"Authorization": f"Bearer {self.token}"}
        return AuthHeaders(verify=header, settle=header, supported=header)


def api_app(facilitator_url: str, token: str | None) -> FastAPI:
    """A FastAPI app with one paid route, protected by the official middleware."""
    client = HTTPFacilitatorClient(FacilitatorConfig(
        url=facilitator_url, auth_provider=BearerAuth(token) if token else None))
    server = x402ResourceServer(client)
    register_exact_evm_server(server, "eip155:8453")
    routes: dict[str, Any] = {
        f"GET {ROUTE}": {"accepts": {"scheme": "exact", "payTo": PAYEE, "price": PRICE,
                                     "network": "eip155:8453"},
                         "description": "one paid quote"},
    }
    app = FastAPI()
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request, call_next):  # type: ignore[no-untyped-def]
        return await middleware(request, call_next)

    @app.get(ROUTE)
    async def quote() -> dict[str, Any]:
        return {"quote": 42}

    return app


class ApiThread:
    """uvicorn serving `api_app` on a thread and a loop of its own."""

    def __init__(self, facilitator_url: str, token: str | None):
        self.facilitator_url, self.token = facilitator_url, token
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            app = api_app(self.facilitator_url, self.token)
            self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                        log_level="warning", lifespan="off"))
            self.server.run()
        except BaseException as exc:  # reported to the test by `started`
            self.error = exc

    async def started(self, within: float = 20.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if self.server is not None and self.server.started:
                port = self.server.servers[0].sockets[0].getsockname()[1]
                return f"http://127.0.0.1:{port}"
            await asyncio.sleep(0.05)
        raise AssertionError("the API did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=10)


def payer_client(account: LocalAccount) -> x402HttpxClient:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(account))
    return x402HttpxClient(client, timeout=30)


def facilitator_url(daemon: Daemon) -> str:
    assert daemon.facilitator_server is not None
    host, port = daemon.facilitator_server.address
    return f"http://{host}:{port}"


@dataclass
class PaidApi:
    daemon: Daemon
    devnet: EvmDevnet
    url: str  # the API
    facilitator: str  # the daemon's facilitator
    token: str
    settler: LocalAccount
    payer: LocalAccount
    database_url: str
    env: dict[str, str]


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    return folder


@contextlib.asynccontextmanager
async def paid_api_running(devnet: EvmDevnet, database_url: str, secrets_dir: Path,  # noqa: F811
                           **overrides: str) -> AsyncIterator[PaidApi]:
    accounts = devnet.accounts
    settler, payer = accounts[9], accounts[1]
    token = secrets.token_urlsafe(24)
    key_file = write_secret(secrets_dir / "settler.key", settler.key.hex())
    token_file = write_secret(secrets_dir / "facilitator.token", token)
    devnet.mint(payer.address, 10_000_000)
    env = facilitator_env(devnet.url, key_file, token_file, **overrides)
    async with running_daemon(env, database_url, metrics_refresh=0.2) as daemon:
        api = ApiThread(facilitator_url(daemon), token)
        try:
            url = await api.started()
            yield PaidApi(daemon, devnet, url, facilitator_url(daemon), token, settler, payer,
                          database_url, env)
        finally:
            await asyncio.to_thread(api.stop)


@pytest.fixture
async def paid_api(devnet: EvmDevnet, database_url: str,  # noqa: F811
                   secrets_dir: Path) -> AsyncIterator[PaidApi]:
    async with paid_api_running(devnet, database_url, secrets_dir) as api:
        yield api
