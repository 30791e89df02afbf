"""The watcher's reads and writes (sql/watch.sql), and the claim session it opens.

Every write that belongs together is one transaction: found payments with the cursor that found
them, a reorg's payment updates with the cursor rewind, a token with the claim it closes.
psycopg errors are wrapped into DatabaseError (store/errors.py), so callers see one type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from verifier.models import Cursor, Observed, Quarantined, Verdict
from verifier.money import base_units_to_usdc
from verifier.money import usdc_decimal_to_base_units as units_of
from verifier.sqlfiles import queries
from verifier.store.claims import ClaimSession, PaymentRow
from verifier.store.errors import describe, wrapped

Row = TypeVar("Row")
# What one bad row can raise (a CHECK, NOT NULL, a number out of range); anything else (the
# connection lost, a deadlock) fails the whole write as before.
ROW_ERRORS = (psycopg.errors.IntegrityError, psycopg.errors.DataError)


@dataclass(frozen=True)
class PendingPayment:
    id: int
    payment: Observed


@dataclass(frozen=True)
class SetAside:
    """A row the database refused; the rest of its write went through without it."""

    payment: str  # its tx hash (a found payment) or "payment id N" (a pending one settled)
    reason: str


class Store:
    def __init__(self, pool: AsyncConnectionPool, *, access_ttl: timedelta):
        self.pool = pool
        self.access_ttl = access_ttl
        self.q = queries("watch.sql")

    # -- watcher ----------------------------------------------------------------------------

    async def cursors(self, chain: str) -> list[Cursor]:
        async with wrapped("read cursors"), self.pool.connection() as conn:
            rows = await (await conn.execute(self.q["cursors"], {"chain": chain})).fetchall()
        return [Cursor(*row) for row in rows]

    async def record_scan(
        self,
        chain: str,
        found: Sequence[tuple[Observed, Verdict]],
        cursors: Sequence[Cursor],
        blocks: Sequence[tuple[int, str]],
        *,
        quarantine: Sequence[Quarantined] = (),
        released: Sequence[str] = (),
    ) -> list[SetAside]:
        """Payments, the blocks they were seen in, the transactions put aside or read again,
        and the cursor: all or nothing, except that a payment row the database refuses is set
        aside (returned) rather than block the scan for good."""
        async with wrapped("record scan"), self.pool.connection() as conn, conn.transaction():
            if quarantine:
                await conn.execute(self.q["quarantine"], {
                    "chain": chain,
                    "account": [q.account for q in quarantine],
                    "signature": [q.signature for q in quarantine],
                    "slot": [q.slot for q in quarantine],
                    "reason": [q.reason for q in quarantine],
                    "code": [q.code for q in quarantine],
                    "attempts": [q.attempts for q in quarantine],
                })
            if released:
                await conn.execute(self.q["release_quarantined"],
                                   {"chain": chain, "signatures": list(released)})
            set_aside = await _each_or_all(
                conn, self.q["upsert_payments"], found,
                lambda rows: self._payment_params(chain, rows), lambda row: row[0].tx_hash)
            if found:
                await self._remember_exact(conn, chain, found)
                await conn.execute(self.q["wake_claims"], {
                    "chain": chain, "tx_hash": [p.tx_hash for p, _ in found]})
            if blocks:
                await conn.execute(self.q["remember_blocks"], {
                    "chain": chain,
                    "numbers": [n for n, _ in blocks],
                    "hashes": [h for _, h in blocks],
                })
            for cursor in cursors:
                await conn.execute(self.q["save_cursor"], {
                    "chain": cursor.chain, "account": cursor.account,
                    "position": cursor.position, "marker": cursor.marker,
                })
        return set_aside

    async def _write_payments(self, conn: AsyncConnection, chain: str,
                              found: Sequence[tuple[Observed, Verdict]]) -> None:
        """The payments' rows, and which of them are x402 "exact" payments (in the caller's
        transaction)."""
        await conn.execute(self.q["upsert_payments"], self._payment_params(chain, found))
        await self._remember_exact(conn, chain, found)

    async def _remember_exact(self, conn: AsyncConnection, chain: str,
                              found: Sequence[tuple[Observed, Verdict]]) -> None:
        exact = [p.tx_hash for p, _ in found if p.exact]
        if exact:
            await conn.execute(self.q["remember_exact"], {"chain": chain, "tx_hash": exact})

    def _payment_params(self, chain: str, found: Sequence[tuple[Observed, Verdict]]) -> dict:
        return {
            "chain": chain,
            "ttl": self.access_ttl,
            "tx_hash": [p.tx_hash for p, _ in found],
            "amount": [base_units_to_usdc(p.amount) for p, _ in found],
            "from_address": [p.from_address for p, _ in found],
            "to_address": [p.to_address for p, _ in found],
            "block_number": [p.block_number for p, _ in found],
            "block_hash": [p.block_hash for p, _ in found],
            "confirmations": [min(v.confirmations, 2**31 - 1) for _, v in found],
            "status": [v.status for _, v in found],
            "requests": [v.requests_allocated for _, v in found],
        }

    async def quarantine_due(self, chain: str, limit: int = 100) -> list[Quarantined]:
        """Quarantined transactions whose next retry has come, the longest waiting first."""
        async with wrapped("read quarantine"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["quarantine_due"], {"chain": chain, "limit": limit})
            rows = await cur.fetchall()
        return [Quarantined(*row) for row in rows]

    async def pending(self, chain: str) -> list[PendingPayment]:
        async with wrapped("read pending payments"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["pending_payments"], {"chain": chain})
            rows = await cur.fetchall()
        return [
            PendingPayment(pid, Observed(chain, tx, block, bhash, sender, payee, units_of(amount),
                                         exact=exact))
            for pid, tx, block, bhash, sender, payee, amount, exact in rows
        ]

    async def settle(self, settled: Sequence[tuple[int, Verdict]]) -> list[SetAside]:
        """New verdicts for pending payments; a row the database refuses is set aside (its
        payment id as tx_hash) and the others are settled."""
        if not settled:
            return []

        def params(rows: Sequence[tuple[int, Verdict]]) -> dict[str, Any]:
            return {
                "ttl": self.access_ttl,
                "id": [pid for pid, _ in rows],
                "status": [v.status for _, v in rows],
                "confirmations": [min(v.confirmations, 2**31 - 1) for _, v in rows],
                "requests": [v.requests_allocated for _, v in rows],
            }

        async with wrapped("settle pending payments"), self.pool.connection() as conn, \
                conn.transaction():
            return await _each_or_all(conn, self.q["settle_pending"], settled, params,
                                      lambda row: f"payment id {row[0]}")

    async def recent_blocks(self, chain: str, since: int) -> list[tuple[int, str]]:
        async with wrapped("read recent blocks"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["recent_blocks"], {"chain": chain, "since": since})
            return [(n, h) for n, h in await cur.fetchall()]

    async def forget_blocks_below(self, chain: str, below: int) -> None:
        async with wrapped("prune blocks"), self.pool.connection() as conn:
            await conn.execute(self.q["forget_blocks_below"], {"chain": chain, "below": below})

    async def rewind(
        self, chain: str, gone: Sequence[tuple[int, str]], cursor: Cursor
    ) -> list[tuple[int, str, str]]:
        """After a reorg: payments in vanished blocks become reorged and lose their tokens; the
        cursor goes back to the last block still on the chain. Returns (id, tx_hash, status)."""
        async with wrapped("rewind after reorg"), self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self.q["mark_reorged"], {
                "chain": chain,
                "numbers": [n for n, _ in gone],
                "hashes": [h for _, h in gone],
            })
            reorged = [(pid, tx, status) for pid, tx, status in await cur.fetchall()]
            if reorged:
                await conn.execute(self.q["revoke_tokens"],
                                   {"payment_ids": [pid for pid, _, _ in reorged]})
            await conn.execute(self.q["forget_blocks_above"],
                               {"chain": chain, "above": cursor.position})
            await conn.execute(self.q["save_cursor"], {
                "chain": chain, "account": cursor.account,
                "position": cursor.position, "marker": cursor.marker,
            })
        return reorged

    # -- claims -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def claim_session(self) -> AsyncIterator[ClaimSession]:
        """A connection in one transaction for taking and deciding claims."""
        async with wrapped("claims"), self.pool.connection() as conn, conn.transaction():
            yield ClaimSession(conn, queries("claims.sql"))

    async def payment(self, chain: str, tx_hash: str) -> PaymentRow | None:
        async with wrapped("read payment"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["payment_by_tx"], {"chain": chain, "tx_hash": tx_hash})
            row = await cur.fetchone()
        if row is None:
            return None
        pid, status, sender, _payee, amount, _block, _bhash, _expires, claimed, lapsed = row
        return PaymentRow(pid, status, sender, units_of(amount), claimed, bool(lapsed))

    async def record_lookup(self, payment: Observed, verdict: Verdict) -> None:
        """A payment found on demand for a claim, written like the watcher writes it."""
        async with wrapped("record looked-up payment"), self.pool.connection() as conn, \
                conn.transaction():
            await self._write_payments(conn, payment.chain, [(payment, verdict)])
            if payment.block_hash:
                await conn.execute(self.q["remember_blocks"], {
                    "chain": payment.chain,
                    "numbers": [payment.block_number],
                    "hashes": [payment.block_hash],
                })


async def _each_or_all(conn: psycopg.AsyncConnection, sql: str, rows: Sequence[Row],
                       params: Callable[[Sequence[Row]], dict[str, Any]],
                       name: Callable[[Row], str]) -> list[SetAside]:
    """``sql`` for all ``rows`` in one statement; when the database refuses it for a row's
    sake, once more row by row, each in its own savepoint, setting aside those it refuses.
    The fast path costs one savepoint; the slow one only runs after a failure."""
    if not rows:
        return []
    try:
        async with conn.transaction():
            await conn.execute(sql, params(rows))
        return []
    except ROW_ERRORS:
        pass
    set_aside = []
    for row in rows:
        try:
            async with conn.transaction():
                await conn.execute(sql, params([row]))
        except ROW_ERRORS as exc:
            set_aside.append(SetAside(name(row), describe("refused", exc)))
    return set_aside
