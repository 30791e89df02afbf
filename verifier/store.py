"""The daemon's reads and writes, each a named query from sql/queries.sql.

Every write that belongs together is one transaction: found payments with the cursor that found
them, a reorg's payment updates with the cursor rewind, a token with the claim it closes.
psycopg errors are wrapped once here into DatabaseError (chained), so callers see one type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import psycopg
from psycopg_pool import AsyncConnectionPool

from verifier.config import base_units_to_usdc, usdc_decimal_to_base_units
from verifier.errors import DatabaseError
from verifier.models import Cursor, Observed, Verdict
from verifier.sqlfiles import queries

WATCHER_LOCK = {"base": 10, "ethereum": 11, "solana": 12}


@dataclass(frozen=True)
class PendingPayment:
    id: int
    payment: Observed


@dataclass(frozen=True)
class PaymentRow:
    id: int
    status: str
    from_address: str
    amount: int
    claimed: bool


@dataclass(frozen=True)
class Claim:
    id: int
    chain: str
    tx_hash: str
    token_hash: str
    proof: str | None
    attempts: int
    age: timedelta
    payment: PaymentRow | None = None  # as recorded when the claim was taken


@contextlib.asynccontextmanager
async def _db(what: str) -> AsyncIterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(f"{what}: {exc.__class__.__name__}: {exc}".strip()) from exc


class Store:
    def __init__(self, pool: AsyncConnectionPool, *, access_ttl: timedelta):
        self.pool = pool
        self.access_ttl = access_ttl
        self.q = queries()

    # -- watcher ----------------------------------------------------------------------------

    async def cursors(self, chain: str) -> list[Cursor]:
        async with _db("read cursors"), self.pool.connection() as conn:
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
        async with _db("record scan"), self.pool.connection() as conn, conn.transaction():
            if found:
                await conn.execute(self.q["upsert_payments"], self._payment_params(chain, found))
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
        async with _db("read pending payments"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["pending_payments"], {"chain": chain})
            rows = await cur.fetchall()
        return [
            PendingPayment(pid, Observed(chain, tx, block, bhash, sender, payee, _units(amount)))
            for pid, tx, block, bhash, sender, payee, amount in rows
        ]

    async def settle(self, settled: Sequence[tuple[int, Verdict]]) -> None:
        if not settled:
            return
        async with _db("settle pending payments"), self.pool.connection() as conn:
            await conn.execute(self.q["settle_pending"], {
                "ttl": self.access_ttl,
                "id": [pid for pid, _ in settled],
                "status": [v.status for _, v in settled],
                "confirmations": [min(v.confirmations, 2**31 - 1) for _, v in settled],
                "requests": [v.requests_allocated for _, v in settled],
            })

    async def recent_blocks(self, chain: str, since: int) -> list[tuple[int, str]]:
        async with _db("read recent blocks"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["recent_blocks"], {"chain": chain, "since": since})
            return [(n, h) for n, h in await cur.fetchall()]

    async def forget_blocks_below(self, chain: str, below: int) -> None:
        async with _db("prune blocks"), self.pool.connection() as conn:
            await conn.execute(self.q["forget_blocks_below"], {"chain": chain, "below": below})

    async def rewind(
        self, chain: str, gone: Sequence[tuple[int, str]], cursor: Cursor
    ) -> list[tuple[int, str, str]]:
        """After a reorg: payments in vanished blocks become reorged and lose their tokens; the
        cursor goes back to the last block still on the chain. Returns (id, tx_hash, status)."""
        async with _db("rewind after reorg"), self.pool.connection() as conn, conn.transaction():
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
        async with _db("claims"), self.pool.connection() as conn, conn.transaction():
            yield ClaimSession(conn, self.q)

    async def payment(self, chain: str, tx_hash: str) -> PaymentRow | None:
        async with _db("read payment"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["payment_by_tx"], {"chain": chain, "tx_hash": tx_hash})
            row = await cur.fetchone()
        if row is None:
            return None
        pid, status, sender, _payee, amount, _block, _bhash, _expires, claimed = row
        return PaymentRow(pid, status, sender, _units(amount), claimed)

    async def record_lookup(self, payment: Observed, verdict: Verdict) -> None:
        """A payment found on demand for a claim, written like the watcher writes it."""
        async with _db("record looked-up payment"), self.pool.connection() as conn, \
                conn.transaction():
            await conn.execute(self.q["upsert_payments"],
                               self._payment_params(payment.chain, [(payment, verdict)]))
            if payment.block_hash:
                await conn.execute(self.q["remember_blocks"], {
                    "chain": payment.chain,
                    "numbers": [payment.block_number],
                    "hashes": [payment.block_hash],
                })


class ClaimSession:
    """Claim statements on one connection inside one transaction (see Store.claim_session)."""

    def __init__(self, conn: psycopg.AsyncConnection, q: dict[str, str]):
        self.conn = conn
        self.q = q

    async def lock_next(self) -> Claim | None:
        row = await (await self.conn.execute(self.q["lock_claim"])).fetchone()
        if row is None:
            return None
        cid, chain, tx_hash, token_hash, proof, attempts, age = row[:7]
        pid, status, sender, amount, claimed = row[7:]
        payment = PaymentRow(pid, status, sender, _units(amount), claimed) if pid else None
        return Claim(cid, chain, tx_hash, token_hash, proof, attempts, age, payment)

    async def lease(self, claim: Claim, lease: timedelta) -> None:
        await self.conn.execute(self.q["lease_claim"], {"claim_id": claim.id, "lease": lease})

    async def issue_token(self, claim: Claim, payment_id: int) -> tuple[str, str | None]:
        """Token row, closed claim and its notification in one statement."""
        cur = await self.conn.execute(self.q["issue_token"], {
            "claim_id": claim.id, "payment_id": payment_id, "token_hash": claim.token_hash,
        })
        row = await cur.fetchone()
        return (row[0], row[1]) if row else ("gone", None)

    async def close(self, claim: Claim, status: str, reason: str | None,
                    payment_id: int | None) -> None:
        await self.conn.execute(self.q["close_claim"], {
            "claim_id": claim.id, "status": status, "reason": reason, "payment_id": payment_id,
        })

    async def defer(self, claim: Claim, delay: timedelta, reason: str | None,
                    payment_id: int | None) -> None:
        await self.conn.execute(self.q["defer_claim"], {
            "claim_id": claim.id, "delay": delay, "reason": reason, "payment_id": payment_id,
        })


def _units(amount: Decimal) -> int:
    return usdc_decimal_to_base_units(amount)


class ChainLock:
    """A session advisory lock held on its own connection: one active watcher per chain.

    If the connection dies the lock is released by PostgreSQL and a standby takes over."""

    def __init__(self, conninfo: str, key: int):
        self.conninfo = conninfo
        self.key = key
        self.conn: psycopg.AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            cur = await self.conn.execute(queries()["try_lock"], {"key": self.key})
            row = await cur.fetchone()
            return bool(row and row[0])
        except psycopg.Error as exc:
            await self.release()
            raise DatabaseError(f"advisory lock: {exc}") from exc

    async def still_held(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            await self.conn.execute(queries()["ping"])
            return True
        except psycopg.Error:
            await self.release()
            return False

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(queries()["unlock"], {"key": self.key})
            await conn.close()
