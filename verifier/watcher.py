"""One watcher per chain: scan, judge, record, settle pending payments, check for reorgs.

Only the instance holding the chain's advisory lock scans; the others stand by and take over
when it goes away. The cursor moves in the same transaction as the payments it found, so a crash
at any instant neither loses nor repeats a payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from verifier import rules
from verifier.chains.base import ChainAdapter
from verifier.config import ChainConfig
from verifier.errors import DatabaseError, RpcError
from verifier.models import ChainView, Cursor
from verifier.store import WATCHER_LOCK, ChainLock, Store

log = structlog.get_logger("verifier.watcher")


class Watcher:
    def __init__(
        self,
        adapter: ChainAdapter,
        store: Store,
        cfg: ChainConfig,
        policy: rules.Policy,
        *,
        lock_conninfo: str,
        poll_interval: float,
        on_progress: Callable[[str, ChainView, int], None] | None = None,
    ):
        self.adapter = adapter
        self.store = store
        self.cfg = cfg
        self.chain = cfg.name
        self.policy = policy
        self.poll_interval = poll_interval
        self.lock = ChainLock(lock_conninfo, WATCHER_LOCK[cfg.name])
        self.on_progress = on_progress
        self.active = False
        self.last_progress = time.monotonic()
        self.view: ChainView | None = None
        self.position: int | None = None
        # For metrics and health: how far the chain is known scanned, and since when level with
        # the head (a finished scan covered everything up to the head it saw).
        self.scanned: int | None = None
        self.caught_up_at: float | None = None
        self.on_reorg: Callable[[str, int], None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not await self._hold_lock():
                    await _sleep(stop, self.poll_interval)
                    continue
                more = await self._guarded_step()
                if not more:
                    await _sleep(stop, self.poll_interval)
        finally:
            self.active = False
            await self.lock.release()

    async def _hold_lock(self) -> bool:
        try:
            if self.active and await self.lock.still_held():
                return True
            self.active = await self.lock.try_acquire()
        except DatabaseError as exc:
            self.active = False
            log.warning("watcher_lock_failed", chain=self.chain, error=str(exc))
            return False
        if self.active:
            self.last_progress = time.monotonic()  # the watchdog's clock starts at take-over
            log.info("watcher_active", chain=self.chain)
        return self.active

    async def _guarded_step(self) -> bool:
        try:
            return await self.step()
        except (RpcError, DatabaseError) as exc:
            log.warning("watcher_step_failed", chain=self.chain, error=str(exc),
                        kind=exc.__class__.__name__)
            return False
        except Exception:
            # An answer no adapter check foresaw (a KeyError deep in a garbled reply) must not
            # end the watcher, and with it the daemon: log it whole, poll again. The cursor has
            # not moved, so nothing is skipped.
            log.exception("watcher_step_crashed", chain=self.chain)
            return False

    async def step(self) -> bool:
        """One poll: returns True when more is waiting to be scanned right away."""
        view = await self.adapter.view()
        self.view = view
        await self.check_reorgs(view)
        cursors = await self.store.cursors(self.chain)
        if not cursors:
            cursors = await self.adapter.initial_cursors(self.cfg.start_block, view)
            await self.store.record_scan(self.chain, [], cursors, [])
            log.info("cursor_started", chain=self.chain, position=cursors[0].position)
        result = await self.adapter.scan(cursors, view)
        found = [(p, rules.judge(p, view, self.policy)) for p in result.payments]
        await self.store.record_scan(self.chain, found, result.cursors, result.blocks)
        if found:
            log.info("payments_found", chain=self.chain, count=len(found),
                     first_block=found[0][0].block_number, last_block=found[-1][0].block_number)
        for payment, verdict in found:
            log.debug("payment_seen", chain=self.chain, tx_hash=payment.tx_hash,
                      block=payment.block_number, amount=payment.amount, status=verdict.status)
        await self.settle_pending(view)
        self.position = min((c.position for c in result.cursors), default=None)
        self.last_progress = time.monotonic()
        self.scanned = view.head if result.done else self.position
        if result.done:
            self.caught_up_at = self.last_progress
        if self.on_progress:
            self.on_progress(self.chain, view, self.position if self.position is not None else -1)
        return not result.done

    async def settle_pending(self, view: ChainView) -> None:
        settled = []
        for row in await self.store.pending(self.chain):
            verdict = rules.judge(row.payment, view, self.policy)
            settled.append((row.id, verdict))
            if verdict.status != "pending":
                log.info("payment_settled", chain=self.chain, tx_hash=row.payment.tx_hash,
                         status=verdict.status, confirmations=verdict.confirmations)
        await self.store.settle(settled)

    async def check_reorgs(self, view: ChainView) -> None:
        since = max(0, view.head - max(self.cfg.reorg_window, self.cfg.confirmations + 1))
        # Blocks above the head the node reports are left for later: a lagging node says
        # nothing about them.
        stored = [(n, h) for n, h in await self.store.recent_blocks(self.chain, since)
                  if n <= view.head]
        if not stored:
            return
        current = await self.adapter.block_hashes([n for n, _ in stored])
        if not current:
            return
        gone = [(n, h) for n, h in stored if current.get(n) != h]
        if not gone:
            await self.store.forget_blocks_below(self.chain, since - 4 * self.cfg.reorg_window)
            return
        first_bad = gone[0][0]
        good = [n for n, h in stored if n < first_bad and current.get(n) == h]
        last_good = good[-1] if good else max(-1, since - 1)
        # Blocks of payments looked up for claims may lie ahead of the cursor: never move it on.
        scanned = await self.store.cursors(self.chain)
        if scanned and scanned[0].position < last_good:
            last_good = scanned[0].position
        cursor = Cursor(self.chain, "", last_good, current.get(last_good))
        reorged = await self.store.rewind(self.chain, gone, cursor)
        log.warning("reorg_detected", chain=self.chain, fork_after=last_good,
                    blocks_gone=len(gone), payments_reorged=len(reorged),
                    tx_hashes=[tx for _, tx, _ in reorged][:20])
        if self.on_reorg:
            self.on_reorg(self.chain, len(gone))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
