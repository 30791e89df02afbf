"""What a chain watcher publishes after each step, for metrics, /readyz and the watchdog.

A watcher never shares its working attributes: it replaces one frozen `WatcherStatus` on a
`StatusBoard` the daemon hands it, and readers take the latest value whole, so a reader never
sees half a step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from verifier.models import ChainView


@dataclass(frozen=True)
class WatcherStatus:
    chain: str
    last_progress: float  # time.monotonic() of the last completed step (or of the take-over)
    active: bool = False  # this instance holds the chain's lease
    watched: bool = False  # at the last look, this or another instance held a live lease
    watched_at: float | None = None  # time.monotonic() of the last look that found one
    view: ChainView | None = None  # the chain as last seen
    position: int | None = None  # the lowest cursor after the last step
    scanned: int | None = None  # how far the chain is known scanned (block or slot)
    caught_up_at: float | None = None  # time.monotonic() when a scan last reached the head
    reorgs: int = 0  # reorgs this watcher met since the daemon started
    reorged_blocks: int = 0  # blocks those reorgs replaced
    set_aside: int = 0  # payment rows the database refused (logged), the rest recorded
    wrong_chain: str | None = None  # why the last step found no endpoint on the right chain

    @property
    def lag_blocks(self) -> int | None:
        if self.view is None or self.scanned is None:
            return None
        return max(0, self.view.head - self.scanned)


class StatusBoard:
    """The latest status of every chain's watcher: written by the watchers, read by the rest."""

    def __init__(self, statuses: Iterable[WatcherStatus] = ()):
        self._latest = {s.chain: s for s in statuses}

    def publish(self, status: WatcherStatus) -> None:
        self._latest[status.chain] = status

    def current(self) -> list[WatcherStatus]:
        return list(self._latest.values())
