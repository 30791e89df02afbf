"""systemd's notify protocol (sd_notify), spoken directly: one datagram per message to the
AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@' is the abstract namespace).

READY=1 goes out once the daemon has passed its start-up checks; WATCHDOG=1 every half of
$WATCHDOG_USEC, but only while every active watcher keeps making progress and every standby
sees another instance's live lease, so a daemon whose watchers are stuck, or whose chain nobody
watches, is restarted by systemd; STOPPING=1 on shutdown; STATUS= lines for
`systemctl status`. Without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from verifier.watcher_status import WatcherStatus

log = structlog.get_logger("verifier.systemd")

STATUS_EVERY = 30.0  # seconds between STATUS= updates when there is no watchdog


@dataclass(frozen=True)
class Progress:
    ok: bool
    text: str


def watcher_progress(watchers: Sequence[WatcherStatus], now: float, stall_after: float
                     ) -> Progress:
    """ok while every active watcher completed a step within ``stall_after`` seconds, and
    every standby saw another instance's live lease within that time."""
    parts: list[str] = []
    stalled: list[str] = []
    for w in watchers:
        if not w.active:
            unwatched = now - (w.watched_at if w.watched_at is not None else w.last_progress)
            if not w.watched and unwatched > stall_after:
                stalled.append(f"{w.chain} watched by nobody for {unwatched:.0f}s")
            else:
                parts.append(f"{w.chain} standby")
            continue
        age = now - w.last_progress
        if age > stall_after:
            stalled.append(f"{w.chain} no progress for {age:.0f}s")
        else:
            head = w.view.head if w.view is not None else "?"
            parts.append(f"{w.chain} at {w.position} of {head}")
    if stalled:
        return Progress(False, "stalled: " + "; ".join(stalled))
    return Progress(True, "; ".join(parts) or "no chains")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        """systemd's variables (not configuration: the service manager sets them)."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        return self.watchdog_usec / 1e6 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Sends one message; never blocks and never raises (a lost datagram is logged)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.setblocking(False)
                s.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify_failed", socket=self.address, error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    async def keepalive(self, stop: asyncio.Event, progress: Callable[[], Progress]) -> None:
        """Until ``stop``: WATCHDOG=1 (with a STATUS) every half watchdog period while progress
        is ok; a STATUS saying what is stalled, and no WATCHDOG=1, while it is not."""
        if not self.enabled:
            await stop.wait()
            return
        every = self.watchdog_seconds / 2 if self.watchdog_seconds else STATUS_EVERY
        was_ok = True
        while not stop.is_set():
            p = progress()
            if p.ok and self.watchdog_usec:
                self.notify("WATCHDOG=1", f"STATUS={p.text}")
            else:
                self.notify(f"STATUS={p.text}")
            if p.ok != was_ok:
                log.log(logging.INFO if p.ok else logging.ERROR, "watchdog_progress", ok=p.ok,
                        status=p.text)
                was_ok = p.ok
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


def stall_limit(notifier: Notifier, poll_interval: float) -> float:
    """How long an active watcher may go without a completed step before the watchdog stops
    being fed: the watchdog period, but never less than three polls."""
    return max(notifier.watchdog_seconds or 60.0, 3 * poll_interval)
