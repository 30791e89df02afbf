"""The claim workers' statements (sql/claims.sql): one session per decision, and LISTEN.

A session is one connection inside one transaction (Store.claim_session opens it), so a claim
is taken, decided and closed together; psycopg errors surface as DatabaseError there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql

from verifier.money import usdc_decimal_to_base_units as units_of
from verifier.sqlfiles import queries
from verifier.store.errors import wrapped


@dataclass(frozen=True)
class PaymentRow:
    id: int
    status: str
    from_address: str
    amount: int
    claimed: bool
    lapsed: bool = False  # past its expires_at (whatever its status says yet)


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


class ClaimSession:
    """Claim statements on one connection inside one transaction (see Store.claim_session)."""

    def __init__(self, conn: psycopg.AsyncConnection, q: dict[str, str]):
        self.conn = conn
        self.q = q

    async def lock_next(self, *, recorded_only: bool = False) -> Claim | None:
        """The next due claim, those whose payment is recorded first; with ``recorded_only``,
        only those."""
        row = await (await self.conn.execute(self.q["lock_claim"],
                                             {"recorded_only": recorded_only})).fetchone()
        if row is None:
            return None
        cid, chain, tx_hash, token_hash, proof, attempts, age = row[:7]
        pid, status, sender, amount, claimed, lapsed = row[7:]
        payment = (PaymentRow(pid, status, sender, units_of(amount), claimed, bool(lapsed))
                   if pid else None)
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


async def listen(conninfo: str) -> AsyncIterator[None]:
    """Yields once on connecting (to catch up on what came meanwhile), then once per
    notification of a new claim on the channel only the daemon can name (migration 008); ends
    with DatabaseError when the connection is lost."""
    async with wrapped("listen for claims"), \
            await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        q = queries("claims.sql")
        row = await (await conn.execute(q["claim_channel"])).fetchone()
        assert row is not None  # migration 008 writes it
        await conn.execute(sql.SQL(q["listen_claims"]).format(channel=sql.Identifier(row[0])))
        yield
        async for _ in conn.notifies():
            yield
