"""A daemon task that ends on its own makes `run` fail (exit 1), so systemd restarts it."""

import asyncio

import pytest

from verifier.daemon import Daemon
from verifier.errors import VerifierError


class _EndsAtOnce:
    chain = "base"

    async def run(self, stop: asyncio.Event) -> None:
        return None


class _Quiet:
    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


async def test_a_task_ending_on_its_own_is_a_failure(monkeypatch):
    daemon = Daemon.__new__(Daemon)
    daemon.config = type("C", (), {"workers": 1, "poll_interval": 0.1})()  # type: ignore[assignment]
    daemon.conninfo = ""
    daemon.watchers = [_EndsAtOnce()]  # type: ignore[list-item]
    daemon.adapters = {}
    daemon.claims = object()  # type: ignore[assignment]
    daemon.notifier = type("N", (), {"stopping": lambda self: None})()  # type: ignore[assignment]
    monkeypatch.setattr("verifier.daemon.WorkerPool", lambda *a, **k: _Quiet())
    monkeypatch.setattr(Daemon, "_operations", lambda self, stop: [])
    with pytest.raises(VerifierError, match="watch-base"):
        await daemon.run(asyncio.Event())


async def test_a_requested_stop_is_not_a_failure(monkeypatch):
    daemon = Daemon.__new__(Daemon)
    daemon.config = type("C", (), {"workers": 1, "poll_interval": 0.1})()  # type: ignore[assignment]
    daemon.conninfo = ""
    daemon.watchers = []
    daemon.adapters = {}
    daemon.claims = object()  # type: ignore[assignment]
    daemon.notifier = type("N", (), {"stopping": lambda self: None})()  # type: ignore[assignment]
    monkeypatch.setattr("verifier.daemon.WorkerPool", lambda *a, **k: _Quiet())
    monkeypatch.setattr(Daemon, "_operations", lambda self, stop: [])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await daemon.run(stop)
