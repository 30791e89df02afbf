"""Shared pieces of the daemon tests on anvil: a fresh chain per test and the daemon's env."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from verifier.devnet.evm import OTHER as OTHER  # re-exported for the tests
from verifier.devnet.evm import PAYEE, EvmDevnet, local_devnet


@dataclass
class Chain:
    devnet: EvmDevnet
    lookalike: str

    @property
    def url(self) -> str:
        return self.devnet.url


@contextmanager
def fresh_chain(chain: str = "base") -> Iterator[Chain]:
    """A new anvil for one test: reorgs and kills need a chain of their own."""
    with local_devnet(chain) as devnet:
        assert devnet.lookalike is not None
        yield Chain(devnet, devnet.lookalike)


def daemon_env(url: str, **overrides: str) -> dict[str, str]:
    env = {
        "X402_CHAINS": "base",
        "X402_BASE_RPC_URLS": url,
        "X402_BASE_PAYMENT_ADDRESS": PAYEE,
        "X402_BASE_START_BLOCK": "0",
        "X402_BASE_CONFIRMATIONS": "3",
        "X402_POLL_INTERVAL": "0.1",
        "X402_METRICS_ADDR": "off",
        "X402_WORKERS": "2",
        "X402_CLAIM_NOT_FOUND_GRACE_SECONDS": "0",
        "X402_LOG_FORMAT": "console",
    }
    env.update(overrides)
    return env


def closed_port_url() -> str:
    """An http URL on which nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
