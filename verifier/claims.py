"""Claim workers: turn a claim (chain, tx hash, token hash, proof) into a token, or a reason.

Claims are taken with FOR UPDATE SKIP LOCKED (and a lease while the chain is asked), so any
number of workers in any number of daemons share them, and a crashed worker's claim is taken
again when its transaction or lease ends.
Workers wake on a NOTIFY of a new claim (on a channel only the daemon can name, so no other
login can wake them) and also poll, so a lost notification only costs a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog

from verifier import rules
from verifier.addresses import canonical_tx_id
from verifier.chains.base import ChainAdapter
from verifier.errors import DatabaseError, RpcError
from verifier.store import Claim, ClaimSession, PaymentRow, Store
from verifier.store import claims as store_claims
from verifier.vocab import Reason

log = structlog.get_logger("verifier.claims")

LEASE = timedelta(seconds=60)
RETRY_AFTER_RPC_ERROR = timedelta(seconds=2)


@dataclass(frozen=True)
class Outcome:
    decision: rules.ClaimDecision
    payment_id: int | None = None


class ClaimProcessor:
    """Decides one claim at a time; I/O through the store and the chain adapters.

    A claim whose facts are all in the database (its payment recorded, a proof checkable
    offline) is locked, decided and closed in one transaction: one commit. One that needs the
    chain (an on-demand lookup, an EIP-1271 call) is leased, decided outside any transaction,
    then closed; the lease lets another worker take it over if this one dies meanwhile.
    """

    def __init__(self, store: Store, adapters: Mapping[str, ChainAdapter], policy: rules.Policy,
                 *, recheck: timedelta):
        self.store = store
        self.adapters = adapters
        self.policy = policy
        self.recheck = recheck

    async def process_one(self) -> bool:
        """Takes and handles one claim; False when none was waiting."""
        async with self.store.claim_session() as session:
            claim = await session.lock_next()
            if claim is None:
                return False
            outcome = self._offline(claim)
            if outcome is not None:
                await self._apply(session, claim, outcome)
                return True
            await session.lease(claim, LEASE)
        try:
            outcome = await self._online(claim)
        except RpcError as exc:
            # "The RPC failed" is never "not paid": the claim waits and is tried again.
            log.warning("claim_rpc_failed", claim_id=claim.id, chain=claim.chain,
                        tx_hash=claim.tx_hash, error=str(exc))
            async with self.store.claim_session() as session:
                await session.defer(claim, RETRY_AFTER_RPC_ERROR, "rpc_unavailable", None)
            return True
        async with self.store.claim_session() as session:
            await self._apply(session, claim, outcome)
        return True

    def _offline(self, claim: Claim) -> Outcome | None:
        """The decision when the database and local cryptography suffice, else None."""
        adapter = self.adapters.get(claim.chain)
        if adapter is None:
            return Outcome(rules.ClaimDecision("reject", "unsupported_chain"))
        if not _well_formed(claim):
            return Outcome(rules.ClaimDecision("reject", "malformed_tx_hash"))
        payment = claim.payment
        if payment is None:
            return None
        proof_valid = None
        if self._needs_proof(payment):
            message = rules.claim_message(claim.chain, claim.tx_hash, claim.token_hash)
            proof_valid = adapter.proof_offline(payment.from_address, message, claim.proof)
            if proof_valid is None:
                return None
        return self._judge(claim, payment, None, proof_valid)

    async def _online(self, claim: Claim) -> Outcome:
        adapter = self.adapters[claim.chain]
        payment, lookup_reason = await self._payment(claim, adapter)
        proof_valid = None
        if payment is not None and self._needs_proof(payment):
            message = rules.claim_message(claim.chain, claim.tx_hash, claim.token_hash)
            proof_valid = await adapter.verify_proof(payment.from_address, message, claim.proof)
        return self._judge(claim, payment, lookup_reason, proof_valid)

    def _needs_proof(self, payment: PaymentRow) -> bool:
        return (payment.status == "verified" and not payment.claimed
                and self.policy.claim_proof == "signature")

    def _judge(self, claim: Claim, payment: PaymentRow | None, lookup_reason: Reason | None,
               proof_valid: bool | None) -> Outcome:
        facts = rules.ClaimFacts(
            age=claim.age,
            payment_status=payment.status if payment else None,
            lookup_reason=lookup_reason,
            already_claimed=bool(payment and payment.claimed),
            proof_valid=proof_valid,
        )
        return Outcome(rules.judge_claim(facts, self.policy), payment.id if payment else None)

    async def _payment(self, claim: Claim,
                       adapter: ChainAdapter) -> tuple[PaymentRow | None, Reason | None]:
        if claim.payment is not None:
            return claim.payment, None
        lookup = await adapter.lookup(claim.tx_hash)
        if lookup.payment is None or lookup.view is None:
            return None, lookup.reason
        verdict = rules.judge(lookup.payment, lookup.view, self.policy)
        await self.store.record_lookup(lookup.payment, verdict)
        log.info("payment_looked_up", chain=claim.chain, tx_hash=claim.tx_hash,
                 status=verdict.status, amount=lookup.payment.amount)
        return await self.store.payment(claim.chain, claim.tx_hash), None

    async def _apply(self, session: ClaimSession, claim: Claim, outcome: Outcome) -> None:
        decision, payment_id = outcome.decision, outcome.payment_id
        if decision.action == "wait":
            await session.defer(claim, self.recheck, decision.reason, payment_id)
            return
        if decision.action == "issue":
            assert payment_id is not None
            status, reason = await session.issue_token(claim, payment_id)
        else:
            status = "expired" if decision.action == "expire" else "rejected"
            reason = decision.reason
            await session.close(claim, status, reason, payment_id)
        log.info("claim_decided", claim_id=claim.id, chain=claim.chain, tx_hash=claim.tx_hash,
                 status=status, reason=reason)


def _well_formed(claim: Claim) -> bool:
    try:
        canonical_tx_id(claim.chain, claim.tx_hash)
    except ValueError:
        return False
    return True


class WorkerPool:
    """N asyncio workers sharing one wake-up signal fed by LISTEN and a polling timer."""

    def __init__(self, processor: ClaimProcessor, *, workers: int, conninfo: str,
                 poll_interval: float):
        self.processor = processor
        self.workers = workers
        self.conninfo = conninfo
        self.poll_interval = poll_interval
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._listen(stop), name="claims-listen")]
        tasks += [asyncio.create_task(self._work(stop), name=f"claims-worker-{i}")
                  for i in range(self.workers)]
        try:
            await stop.wait()
        finally:
            self.wake.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.processor.process_one()
            except DatabaseError as exc:
                log.warning("claim_worker_db_error", error=str(exc))
                busy = False
            except Exception:
                # A bug must not take the worker down with it: log it whole and go on.
                log.exception("claim_worker_failed")
                busy = False
            if busy:
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.poll_interval)

    async def _listen(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # the first wake catches up on anything submitted while not listening
                async for _ in store_claims.listen(self.conninfo):
                    self.wake.set()
            except DatabaseError as exc:
                log.warning("claims_listen_lost", error=str(exc))
                await asyncio.sleep(min(self.poll_interval, 1.0))
