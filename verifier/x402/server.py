"""The facilitator's HTTP API on X402_FACILITATOR_ADDR: GET /supported, POST /verify,
POST /settle at the root, as the official SDK's HTTPFacilitatorClient calls them.

Every request carries ``Authorization: Bearer <token>`` (X402_FACILITATOR_TOKEN_FILE), else 401.
Answers are HTTP 200 JSON whatever the verdict (an invalid payment is ``isValid: false`` /
``success: false``): the SDK raises on any other status. An unexpected error still answers a
structured invalid result, never a 500.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from verifier.errors import ConfigError

from . import wire
from .facilitator import UNEXPECTED, UNEXPECTED_VERIFY, Facilitator

log = structlog.get_logger("verifier.x402")


@dataclass
class FacilitatorServer:
    runner: web.AppRunner

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.runner.addresses[0][:2]
        return str(host), int(port)

    async def close(self) -> None:
        await self.runner.cleanup()


def app(facilitator: Facilitator, token: str | None) -> web.Application:
    application = web.Application(client_max_size=wire.MAX_BODY,
                                  middlewares=[_bearer(token)])
    application.router.add_get("/supported", _supported(facilitator))
    application.router.add_post("/verify", _verify(facilitator))
    application.router.add_post("/settle", _settle(facilitator))
    return application


async def serve(facilitator: Facilitator, host: str, port: int,
                token: str | None) -> FacilitatorServer:
    runner = web.AppRunner(app(facilitator, token), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"X402_FACILITATOR_ADDR: cannot listen on {host}:{port}: "
                          f"{exc.strerror}") from exc
    server = FacilitatorServer(runner)
    bound_host, bound_port = server.address
    log.info("facilitator_listening", address=f"{bound_host}:{bound_port}",
             chains=list(facilitator.chains), auth=token is not None,
             settlers={n: c.settler.address for n, c in facilitator.chains.items()})
    return server


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer(token: str | None) -> Any:
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response({"error": "unauthorized"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


def _supported(facilitator: Facilitator) -> Handler:
    async def handle(_request: web.Request) -> web.Response:
        return _json(facilitator.supported())

    return handle


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return b"\x00too large"


def _verify(facilitator: Facilitator) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return _json(await facilitator.verify(body))
        except Exception:
            log.exception("x402_verify_crashed")
            return _json(wire.verify_answer(False, payer=None, reason=UNEXPECTED_VERIFY))

    return handle


def _settle(facilitator: Facilitator) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return _json(await facilitator.settle(body))
        except Exception:
            log.exception("x402_settle_crashed")
            return _json(wire.settle_answer(False, network="", reason=UNEXPECTED))

    return handle
