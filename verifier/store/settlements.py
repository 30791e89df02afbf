"""The facilitator's settlement ledger and settler nonces (sql/settlements.sql).

Taking an entry, allocating a nonce with the signed transaction that uses it, and recording a
mined settlement with its payment and usage rows are each one database transaction, so a crash
at any instant leaves either nothing or a complete step that recovery picks up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from verifier.config import base_units_to_usdc
from verifier.errors import DatabaseError
from verifier.models import Observed, Verdict
from verifier.sqlfiles import queries
from verifier.store.errors import wrapped


@dataclass(frozen=True)
class Settlement:
    id: int
    chain: str
    payer: str
    nonce: str
    pay_to: str
    asset: str
    amount: int
    network: str
    resource: str | None
    settler: str | None
    tx_nonce: int | None
    signed_tx: str | None
    tx_hash: str | None
    state: str  # taken, signed, sent, mined, failed
    block_number: int | None
    block_hash: str | None
    error_reason: str | None
    answer: dict[str, Any] | None
    success_answered: bool
    broadcasts: int


@dataclass(frozen=True)
class Entry:
    """What the facilitator takes the ledger entry for."""

    chain: str
    payer: str
    nonce: str
    pay_to: str
    asset: str
    amount: int
    valid_before: int
    network: str
    resource: str | None
    settler: str


def _row(row: tuple[Any, ...] | None) -> Settlement | None:
    if row is None:
        return None
    values = list(row)
    values[6] = int(values[6])  # amount: NUMERIC(78,0) -> int
    if isinstance(values[17], str):
        values[17] = json.loads(values[17])
    return Settlement(*values)


class SettlementStore:
    def __init__(self, pool: AsyncConnectionPool, *, access_ttl: timedelta):
        self.pool = pool
        self.access_ttl = access_ttl
        self.q = queries("settlements.sql")
        self.watch = queries("watch.sql")

    async def find(self, chain: str, payer: str, nonce: str) -> Settlement | None:
        async with wrapped("read settlement"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["find"], {"chain": chain, "payer": payer,
                                                      "nonce": nonce})
            return _row(await cur.fetchone())

    async def get(self, settlement_id: int) -> Settlement | None:
        async with wrapped("read settlement"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["by_id"], {"id": settlement_id})
            return _row(await cur.fetchone())

    async def take(self, entry: Entry) -> int | None:
        """The entry's id when this call took it; None when it was already there."""
        async with wrapped("take settlement"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["take"], {
                "chain": entry.chain, "payer": entry.payer, "nonce": entry.nonce,
                "pay_to": entry.pay_to, "asset": entry.asset, "amount": Decimal(entry.amount),
                "valid_before": Decimal(entry.valid_before), "network": entry.network,
                "resource": entry.resource, "settler": entry.settler,
            })
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def sign_with_nonce(
        self, settlement_id: int, chain: str, settler: str, chain_next: int,
        sign: Callable[[int], tuple[str, str]],
    ) -> tuple[int, str, str]:
        """Allocates the settler's next nonce, signs with it (``sign(nonce)`` returns
        (raw_tx, tx_hash)) and stores the signed transaction, in one database transaction: a
        nonce is never handed out without the transaction that uses it."""
        async with wrapped("allocate settler nonce"), self.pool.connection() as conn, \
                conn.transaction():
            cur = await conn.execute(self.q["allocate_nonce"], {
                "chain": chain, "settler": settler, "chain_next": chain_next})
            row = await cur.fetchone()
            assert row is not None
            nonce = int(row[0])
            raw, tx_hash = sign(nonce)
            await conn.execute(self.q["mark_signed"], {
                "id": settlement_id, "settler": settler, "tx_nonce": nonce,
                "signed_tx": raw, "tx_hash": tx_hash})
        return nonce, raw, tx_hash

    async def next_nonce(self, chain: str, settler: str) -> int | None:
        async with wrapped("read settler nonce"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["next_nonce"], {"chain": chain, "settler": settler})
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def sent(self, settlement_id: int) -> None:
        async with wrapped("mark settlement sent"), self.pool.connection() as conn:
            await conn.execute(self.q["mark_sent"], {"id": settlement_id})

    async def failed(self, settlement_id: int, reason: str) -> None:
        async with wrapped("mark settlement failed"), self.pool.connection() as conn:
            await conn.execute(self.q["mark_failed"], {"id": settlement_id, "reason": reason})

    async def release(self, settlement_id: int) -> None:
        """Drops an entry that was taken and never signed (nothing was sent)."""
        async with wrapped("release settlement"), self.pool.connection() as conn:
            await conn.execute(self.q["release"], {"id": settlement_id})

    async def mined(self, s: Settlement, block_number: int, block_hash: str,
                    verdict: Verdict) -> bool:
        """The settlement is on chain: mark it, and (once only, same transaction) write its
        x402_payments row through the watcher's upsert and count the paid request as used."""
        assert s.tx_hash is not None
        payment = Observed(s.chain, s.tx_hash, block_number, block_hash, s.payer, s.pay_to,
                           s.amount, exact=True)
        async with wrapped("record settlement"), self.pool.connection() as conn, \
                conn.transaction():
            cur = await conn.execute(self.q["mark_mined"], {
                "id": s.id, "block_number": block_number, "block_hash": block_hash})
            if await cur.fetchone() is None:
                return False
            await conn.execute(self.watch["upsert_payments"], {
                "chain": s.chain, "ttl": self.access_ttl,
                "tx_hash": [payment.tx_hash], "amount": [base_units_to_usdc(payment.amount)],
                "from_address": [payment.from_address], "to_address": [payment.to_address],
                "block_number": [block_number], "block_hash": [block_hash],
                "confirmations": [min(verdict.confirmations, 2**31 - 1)],
                "status": [verdict.status], "requests": [verdict.requests_allocated],
            })
            # An x402 "exact" payment (migration 013): the watcher judges it by that minimum.
            await conn.execute(self.watch["remember_exact"], {"chain": s.chain,
                                                              "tx_hash": [payment.tx_hash]})
            await conn.execute(self.watch["remember_blocks"], {
                "chain": s.chain, "numbers": [block_number], "hashes": [block_hash]})
            if s.resource is not None:
                await conn.execute(self.q["use_paid_request"], {
                    "chain": s.chain, "tx_hash": s.tx_hash, "endpoint": s.resource})
        return True

    async def claim_success(self, settlement_id: int) -> bool:
        async with wrapped("answer settlement"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["claim_success"], {"id": settlement_id})
            return await cur.fetchone() is not None

    async def store_answer(self, settlement_id: int, answer: dict[str, Any]) -> None:
        async with wrapped("store settlement answer"), self.pool.connection() as conn:
            await conn.execute(self.q["store_answer"], {"id": settlement_id,
                                                        "answer": Jsonb(answer)})

    async def unfinished(self, chain: str, settler: str, older_than: timedelta) -> list[int]:
        async with wrapped("read unfinished settlements"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["unfinished"], {
                "chain": chain, "settler": settler, "older_than": older_than})
            return [int(r[0]) for r in await cur.fetchall()]

    async def abandoned(self, chain: str, older_than: timedelta) -> list[int]:
        async with wrapped("read abandoned settlements"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["abandoned"], {"chain": chain,
                                                           "older_than": older_than})
            return [int(r[0]) for r in await cur.fetchall()]

    async def counts(self) -> dict[tuple[str, str], int]:
        async with wrapped("count settlements"), self.pool.connection() as conn:
            cur = await conn.execute(self.q["counts"])
            return {(c, s): int(n) for c, s, n in await cur.fetchall()}


def settler_next_nonce(conninfo: str, chain: str, settler: str) -> int | None:
    """For doctor: the nonce the ledger would hand out next (None: none handed out yet, or
    the database cannot be read)."""
    try:
        with wrapped("read settler nonce"), \
                psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(queries("settlements.sql")["next_nonce"],
                               {"chain": chain, "settler": settler}).fetchone()
    except DatabaseError:
        return None
    return int(row[0]) if row else None
