"""A client nobody here wrote pays on Solana: @x402/fetch with @x402/svm (npm 2.27.0, run with
node) pays an API protected by the official x402 FastAPI middleware, whose facilitator is the
daemon, on the LiteSVM node (real SPL Token and ATA programs).

The middleware is the official one; its SVM scheme-server part is ours (`LocalSvmServer`, ten
lines): the SDK's own ExactSvmScheme server lives in x402.mechanisms.svm, which refuses to import
without the [svm] extra (solana<0.41). It does what the SDK's does with no RPC URL: the price
as the route gives it, and `extra.feePayer` from the facilitator's /supported kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from fastapi import FastAPI
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import payment_middleware
from x402.schemas import AssetAmount, PaymentRequirements, SupportedKind

from tests.daemon import query, running_daemon
from tests.x402.conftest import ApiThread, BearerAuth, facilitator_url
from tests.x402.svm_env import PRICE_UNITS, TOKEN, SvmSetup
from verifier.devnet.solana_tokens import USDC_MINT
from verifier.x402 import svm

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".tools" / "node_modules"
SCRIPT = Path(__file__).parent / "node" / "svm_pay.cjs"
# @x402/svm's client knows only the mainnet, devnet and testnet ids, and its spend controls pay
# only each network's default USDC: mainnet's id and mint, served by the LiteSVM node.
NETWORK = svm.MAINNET
ROUTE = "/v1/quote"


class LocalSvmServer:
    scheme = "exact"
    default_asset_transfer_method = "default"
    payment_flows: ClassVar[dict[str, Any]] = {"default": {"supported": ("authorization", "upfront"),
                                 "default": "authorization"}}

    def parse_price(self, price: Any, network: Any) -> AssetAmount:
        if isinstance(price, AssetAmount):
            return price
        return AssetAmount(amount=price["amount"], asset=price["asset"], extra={})

    def enhance_payment_requirements(self, requirements: PaymentRequirements,
                                     supported_kind: SupportedKind,
                                     extensions: list[str]) -> PaymentRequirements:
        requirements.extra = {**(requirements.extra or {}),
                              "feePayer": (supported_kind.extra or {})["feePayer"]}
        return requirements


def svm_api(facilitator: str, pay_to: str, amount: int) -> FastAPI:
    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(
        url=facilitator, auth_provider=BearerAuth(TOKEN))))
    server.register(NETWORK, LocalSvmServer())
    routes: dict[str, Any] = {f"GET {ROUTE}": {
        "accepts": {"scheme": "exact", "payTo": pay_to, "network": NETWORK,
                    "price": {"amount": str(amount), "asset": str(USDC_MINT)}},
        "description": "one paid quote"}}
    app = FastAPI()
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request, call_next):  # type: ignore[no-untyped-def]
        return await middleware(request, call_next)

    @app.get(ROUTE)
    async def quote() -> dict[str, Any]:
        return {"quote": 42}

    return app


class SvmApiThread(ApiThread):
    def __init__(self, facilitator: str, pay_to: str, amount: int = PRICE_UNITS):
        super().__init__(facilitator, TOKEN)
        self.pay_to, self.amount = pay_to, amount

    def _run(self) -> None:
        try:
            app = svm_api(self.facilitator_url, self.pay_to, self.amount)
            self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                        log_level="warning", lifespan="off"))
            self.server.run()
        except BaseException as exc:
            self.error = exc


async def npm_pay(url: str, s: SvmSetup, **extra: Any) -> dict[str, Any]:
    node = shutil.which("node")
    assert node and (NODE_MODULES / "@x402" / "svm").is_dir(), "make tools installs @x402/svm"
    args = json.dumps({"url": url + ROUTE, "secretKey": list(bytes(s.payer)),
                       "rpcUrl": s.node.url, "network": NETWORK, **extra})
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    lines = out.decode().strip().splitlines()
    assert lines, err.decode()[-2000:]
    return json.loads(lines[-1])


@pytest.fixture
def env(svm_setup: SvmSetup) -> dict[str, str]:
    return svm_setup.env(X402_SOLANA_NETWORK=NETWORK)


async def test_npm_client_pays_through_the_official_middleware(
        svm_setup: SvmSetup, env: dict[str, str], database_url: str) -> None:
    s = svm_setup
    async with running_daemon(env, database_url) as daemon:
        api = SvmApiThread(facilitator_url(daemon), str(s.payee.pubkey()))
        try:
            url = await api.started()
            paid = await npm_pay(url, s)
        finally:
            await asyncio.to_thread(api.stop)
    assert paid.get("status") == 200, paid
    assert paid["body"] == {"quote": 42}
    receipt = paid["paymentResponse"]
    assert receipt["success"] is True and receipt["network"] == NETWORK
    sig = receipt["transaction"]
    assert receipt["payer"] == str(s.payer.pubkey())
    landed = s.node.landed(sig)
    assert landed.err is None and s.usdc(s.payee) == PRICE_UNITS
    assert s.node.sent == {sig: 1}
    # The client's layout: limit, price, TransferChecked, its nonce memo; fee payer ours.
    keys = [str(k) for k in landed.tx.message.account_keys]
    assert keys[0] == str(s.fee_payer.pubkey())
    programs = [keys[ix.program_id_index] for ix in landed.tx.message.instructions]
    assert programs == [svm.COMPUTE_BUDGET_PROGRAM, svm.COMPUTE_BUDGET_PROGRAM,
                        svm.TOKEN_PROGRAM, svm.MEMO_PROGRAM]
    assert query(database_url, "SELECT tx_hash, status, requests_used FROM x402_payments"
                 ) == [(sig, "verified", 1)]
    assert query(database_url, "SELECT endpoint FROM x402_usage") == [(ROUTE,)]


async def test_npm_payment_replayed_eight_times_at_once_settles_once(
        svm_setup: SvmSetup, env: dict[str, str], database_url: str) -> None:
    """The npm client's one PAYMENT-SIGNATURE sent 8 times at once through the official
    middleware: one 200 with the settlement, every other answer a 402; one transaction."""
    s = svm_setup
    async with running_daemon(env, database_url) as daemon:
        api = SvmApiThread(facilitator_url(daemon), str(s.payee.pubkey()))
        try:
            url = await api.started()
            replayed = await npm_pay(url, s, repeat=8)
        finally:
            await asyncio.to_thread(api.stop)
    assert replayed.get("firstStatus") == 402, replayed
    statuses = sorted(a["status"] for a in replayed["answers"])
    assert statuses == [200] + [402] * 7, replayed
    (paid,) = [a for a in replayed["answers"] if a["status"] == 200]
    sig = paid["paymentResponse"]["transaction"]
    assert s.node.sent == {sig: 1} and s.usdc(s.payee) == PRICE_UNITS
    assert query(database_url, "SELECT count(*) FROM x402_payments") == [(1,)]
    assert query(database_url, "SELECT count(*) FROM x402_usage") == [(1,)]
