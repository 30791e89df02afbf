"""Claim workers: turn a claim (chain, tx hash, token hash, proof) into a token, or a reason.

Claims are taken with FOR UPDATE SKIP LOCKED and a lease, so any number of workers in any
number of daemons share them and a crashed worker's claim is taken again when its lease ends.
Workers wake on NOTIFY x402_claims and also poll, so a lost notification only costs a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import timedelta

import psycopg
import structlog

from verifier import rules
from verifier.addresses import canonical_evm_tx_hash, canonical_solana_signature
from verifier.chains.base import ChainAdapter
from verifier.errors import DatabaseError, RpcError
from verifier.sqlfiles import queries
from verifier.store import Claim, PaymentRow, Store

log = structlog.get_logger("verifier.claims")

LEASE = timedelta(seconds=60)
RETRY_AFTER_RPC_ERROR = timedelta(seconds=2)


class ClaimProcessor:
    """Decides one claim at a time; I/O through the store and the chain adapters."""

    def __init__(self, store: Store, adapters: Mapping[str, ChainAdapter], policy: rules.Policy,
                 *, recheck: timedelta):
        self.store = store
        self.adapters = adapters
        self.policy = policy
        self.recheck = recheck
        self.decided: dict[str, int] = {}

    async def process_one(self) -> bool:
        """Takes and handles one claim; False when none was waiting."""
        claim = await self.store.take_claim(LEASE)
        if claim is None:
            return False
        try:
            await self.handle(claim)
        except RpcError as exc:
            # "The RPC failed" is never "not paid": the claim waits and is tried again.
            log.warning("claim_rpc_failed", claim_id=claim.id, chain=claim.chain,
                        tx_hash=claim.tx_hash, error=str(exc))
            await self.store.defer_claim(claim, RETRY_AFTER_RPC_ERROR, "rpc_unavailable", None)
        return True

    async def handle(self, claim: Claim) -> None:
        adapter = self.adapters.get(claim.chain)
        if adapter is None:
            return await self._close(claim, "rejected", "unsupported_chain", None)
        if not _well_formed(claim):
            return await self._close(claim, "rejected", "malformed_tx_hash", None)
        payment, lookup_reason = await self._payment(claim, adapter)
        proof_valid = None
        if payment and payment.status == "verified" and not payment.claimed \
                and self.policy.claim_proof == "signature":
            message = rules.claim_message(claim.chain, claim.tx_hash, claim.token_hash)
            proof_valid = await adapter.verify_proof(payment.from_address, message, claim.proof)
        facts = rules.ClaimFacts(
            age=claim.age,
            payment_status=payment.status if payment else None,
            lookup_reason=lookup_reason,
            already_claimed=bool(payment and payment.claimed),
            proof_valid=proof_valid,
        )
        decision = rules.judge_claim(facts, self.policy)
        payment_id = payment.id if payment else None
        if decision.action == "wait":
            await self.store.defer_claim(claim, self.recheck, decision.reason, payment_id)
        elif decision.action == "issue":
            assert payment is not None
            status, reason = await self.store.issue_token(claim, payment.id)
            self._count(status)
            log.info("claim_decided", claim_id=claim.id, chain=claim.chain,
                     tx_hash=claim.tx_hash, status=status, reason=reason)
        else:
            status = "expired" if decision.action == "expire" else "rejected"
            await self._close(claim, status, decision.reason, payment_id)

    async def _payment(self, claim: Claim, adapter: ChainAdapter) -> tuple[PaymentRow | None, str | None]:
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

    async def _close(self, claim: Claim, status: str, reason: str | None,
                     payment_id: int | None) -> None:
        await self.store.close_claim(claim, status, reason, payment_id)
        self._count(status)
        log.info("claim_decided", claim_id=claim.id, chain=claim.chain, tx_hash=claim.tx_hash,
                 status=status, reason=reason)

    def _count(self, status: str) -> None:
        self.decided[status] = self.decided.get(status, 0) + 1


def _well_formed(claim: Claim) -> bool:
    check = canonical_solana_signature if claim.chain == "solana" else canonical_evm_tx_hash
    try:
        check(claim.tx_hash)
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
                async with await psycopg.AsyncConnection.connect(self.conninfo,
                                                                 autocommit=True) as conn:
                    await conn.execute(queries()["listen_claims"])
                    self.wake.set()  # catch up on anything submitted while not listening
                    async for _ in conn.notifies():
                        self.wake.set()
            except psycopg.Error as exc:
                log.warning("claims_listen_lost", error=str(exc))
                await asyncio.sleep(min(self.poll_interval, 1.0))
