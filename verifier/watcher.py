"""One watcher per chain: scan, judge, record, settle pending payments, check for reorgs.

Only the instance holding the chain's lease (verifier.store.locks) scans, renewing it after every
step; the others stand by and take over when it goes away or stops renewing. The cursor moves
in the same transaction as the payments it found, so a crash at any instant neither loses nor
repeats a payment. After each step the watcher publishes a
frozen WatcherStatus (verifier.watcher_status) for metrics, /readyz and the watchdog; the
rewind after a reorg is planned by verifier.reorg.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog

from verifier import reorg, rules
from verifier.chains.base import ChainAdapter, Quarantining, ScanResult
from verifier.config import ChainConfig
from verifier.errors import DatabaseError, RpcError, WrongChainError
from verifier.models import ChainView, Cursor
from verifier.store import ChainLease, SetAside, Store
from verifier.store.locks import LEASE_SECONDS
from verifier.watcher_status import StatusBoard, WatcherStatus

log = structlog.get_logger("verifier.watcher")


class Watcher:
    def __init__(
        self,
        adapter: ChainAdapter,
        store: Store,
        cfg: ChainConfig,
        policy: rules.Policy,
        *,
        board: StatusBoard,
        lease_conninfo: str,
        poll_interval: float,
    ):
        self.adapter = adapter
        self.store = store
        self.cfg = cfg
        self.chain = cfg.name
        self.policy = policy
        self.poll_interval = poll_interval
        # A step renews the lease when it ends: the lease outlasts the slowest step expected.
        self.lease = ChainLease(lease_conninfo, cfg.name,
                                seconds=max(LEASE_SECONDS, 10 * poll_interval))
        self.board = board
        now = time.monotonic()
        self.status = WatcherStatus(cfg.name, last_progress=now, watched_at=now)
        board.publish(self.status)

    def _publish(self, **changes: Any) -> None:
        """A new status, published whole: readers never see half a step."""
        self.status = replace(self.status, **changes)
        self.board.publish(self.status)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not await self._hold_lease():
                    await _sleep(stop, self.poll_interval)
                    continue
                more = await self._guarded_step()
                if not more:
                    await _sleep(stop, self.poll_interval)
        finally:
            self._publish(active=False, watched=False)
            await self.lease.release()

    async def _hold_lease(self) -> bool:
        """Takes or renews the lease. Either way some daemon watches the chain, unless the
        lease could not be asked for: then nobody is known to (`watched` False)."""
        try:
            active = await self.lease.take()
        except DatabaseError as exc:
            self._publish(active=False, watched=False)
            log.warning("watcher_lease_failed", chain=self.chain, error=str(exc))
            return False
        now = time.monotonic()
        if active and not self.status.active:
            # The watchdog's clock starts at take-over.
            self._publish(active=True, watched=True, watched_at=now, last_progress=now)
            log.info("watcher_active", chain=self.chain)
        else:
            if self.status.active and not active:
                log.warning("watcher_lease_lost", chain=self.chain)
            self._publish(active=active, watched=True, watched_at=now)
        return active

    async def _guarded_step(self) -> bool:
        try:
            return await self.step()
        except WrongChainError as exc:
            # No endpoint serves the configured chain: nothing is scanned, nothing rewound,
            # and /readyz fails until one does again.
            if self.status.wrong_chain is None:
                log.error("watcher_no_endpoint_on_chain", chain=self.chain, error=str(exc))
            self._publish(wrong_chain=str(exc))
            return False
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
        self._publish(view=view)
        cursors = await self.store.cursors(self.chain)
        if await self.check_reorgs(view, cursors):
            cursors = await self.store.cursors(self.chain)
        if not cursors:
            cursors = await self.adapter.initial_cursors(self.cfg.start_block, view)
            await self.store.record_scan(self.chain, [], cursors, [])
            log.info("cursor_started", chain=self.chain, position=cursors[0].position)
        result = await self.adapter.scan(cursors, view)
        retried = await self._retry_quarantined()
        payments = sorted([*result.payments, *retried.payments], key=lambda p: p.block_number)
        found = [(p, rules.judge(p, view, self.policy)) for p in payments]
        self._set_aside(await self.store.record_scan(
            self.chain, found, result.cursors, result.blocks,
            quarantine=[*result.quarantine, *retried.quarantine], released=retried.released))
        if found:
            log.info("payments_found", chain=self.chain, count=len(found),
                     first_block=found[0][0].block_number, last_block=found[-1][0].block_number)
        for payment, verdict in found:
            log.debug("payment_seen", chain=self.chain, tx_hash=payment.tx_hash,
                      block=payment.block_number, amount=payment.amount, status=verdict.status)
        await self.settle_pending(view)
        self._stepped(view, result.cursors, result.done)
        return not result.done

    async def _retry_quarantined(self) -> ScanResult:
        """Transactions put aside earlier whose retry is due, read again (Solana)."""
        if not isinstance(self.adapter, Quarantining):
            return ScanResult(payments=[], cursors=[])
        due = await self.store.quarantine_due(self.chain)
        if not due:
            return ScanResult(payments=[], cursors=[])
        return await self.adapter.retry_quarantined(due)

    def _stepped(self, view: ChainView, cursors: Sequence[Cursor], done: bool) -> None:
        """A finished scan covered everything up to the head it saw: the chain is scanned to
        the head and level with it since now."""
        now = time.monotonic()
        position = min((c.position for c in cursors), default=None)
        self._publish(last_progress=now, position=position,
                      scanned=view.head if done else position,
                      caught_up_at=now if done else self.status.caught_up_at, wrong_chain=None)

    async def settle_pending(self, view: ChainView) -> None:
        settled = []
        for row in await self.store.pending(self.chain):
            verdict = rules.judge(row.payment, view, self.policy)
            settled.append((row.id, verdict))
            if verdict.status != "pending":
                log.info("payment_settled", chain=self.chain, tx_hash=row.payment.tx_hash,
                         status=verdict.status, confirmations=verdict.confirmations)
        self._set_aside(await self.store.settle(settled))

    def _set_aside(self, rows: Sequence[SetAside]) -> None:
        """Rows the database refused: logged one by one and counted; the rest went through."""
        for row in rows:
            log.error("payment_set_aside", chain=self.chain, payment=row.payment,
                      reason=row.reason)
        if rows:
            self._publish(set_aside=self.status.set_aside + len(rows))

    async def check_reorgs(self, view: ChainView, cursors: Sequence[Cursor]) -> bool:
        """Rewinds after a reorg (see verifier.reorg); True when the cursor moved back."""
        since = reorg.window_start(view.head, self.cfg.reorg_window, self.cfg.confirmations)
        stored = reorg.checkable(await self.store.recent_blocks(self.chain, since), view.head)
        current = await self.adapter.block_hashes([n for n, _ in stored]) if stored else {}
        if not current:
            return False
        rewind = reorg.plan(self.chain, stored, current, head=view.head, since=since,
                            scanned=cursors)
        if rewind is None:
            await self.store.forget_blocks_below(self.chain, since - 4 * self.cfg.reorg_window)
            return False
        reorged = await self.store.rewind(self.chain, list(rewind.gone), rewind.cursor)
        log.warning("reorg_detected", chain=self.chain, fork_after=rewind.fork_after,
                    blocks_gone=len(rewind.gone), payments_reorged=len(reorged),
                    tx_hashes=[tx for _, tx, _ in reorged][:20])
        self._publish(reorgs=self.status.reorgs + 1,
                      reorged_blocks=self.status.reorged_blocks + len(rewind.gone))
        return True


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
