"""The watcher's reads and writes (sql/watch.sql), and the claim session it opens.

Every write that belongs together is one transaction: found payments with the cursor that found
them, a reorg's payment updates with the cursor rewind, a token with the claim it closes.
psycopg errors are wrapped into DatabaseError (store/errors.py), so callers see one type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from verifier.config import base_units_to_usdc
from verifier.config import usdc_decimal_to_base_units as units_of
from verifier.models import Cursor, Observed, Verdict
from verifier.sqlfiles import queries
from verifier.store.claims import ClaimSession, PaymentRow
from verifier.store.errors import wrapped


@dataclass(frozen=True)
class PendingPayment:
    id: int
    payment: Observed


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
    ) -> None:
        """Payments, the blocks they were seen in, and the cursor: all or nothing."""
        async with wrapped("record scan"), self.pool.connection() as conn, conn.transaction():
            if found:
                await self._write_payments(conn, chain, found)
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

    async def _write_payments(self, conn: AsyncConnection, chain: str,
                              found: Sequence[tuple[Observed, Verdict]]) -> None:
        """The payments' rows, and which of them are x402 "exact" payments (in the caller's
        transaction)."""
        await conn.execute(self.q["upsert_payments"], self._payment_params(chain, found))
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

    async def pending(self, chain: str) -> list[PendingPayment]:
        async with wrapped("read pending payments"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["pending_payments"], {"chain": chain})
            rows = await cur.fetchall()
        return [
            PendingPayment(pid, Observed(chain, tx, block, bhash, sender, payee, units_of(amount),
                                         exact=exact))
            for pid, tx, block, bhash, sender, payee, amount, exact in rows
        ]

    async def settle(self, settled: Sequence[tuple[int, Verdict]]) -> None:
        if not settled:
            return
        async with wrapped("settle pending payments"), self.pool.connection() as conn:
            await conn.execute(self.q["settle_pending"], {
                "ttl": self.access_ttl,
                "id": [pid for pid, _ in settled],
                "status": [v.status for _, v in settled],
                "confirmations": [min(v.confirmations, 2**31 - 1) for _, v in settled],
                "requests": [v.requests_allocated for _, v in settled],
            })

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
        pid, status, sender, _payee, amount, _block, _bhash, _expires, claimed = row
        return PaymentRow(pid, status, sender, units_of(amount), claimed)

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
