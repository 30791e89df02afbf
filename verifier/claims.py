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
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
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
BACKOFF_CAP = timedelta(seconds=16)  # longest wait between two lookups of one claim
SIGNERS_CACHED = 4096  # transactions whose signers are remembered


class Lookups:
    """Bounds the on-demand lookups of transactions not recorded yet: at most ``concurrency``
    at once and ``rate`` per second (a token bucket holding up to one second's worth).
    Anyone can submit claims for unknown hashes; this keeps them from taking every worker and
    the RPC's capacity, so claims of recorded payments are decided meanwhile."""

    def __init__(self, concurrency: int, rate: float, clock: Callable[[], float] = time.monotonic):
        self.concurrency = max(1, concurrency)
        self.rate = rate
        self.clock = clock
        self.in_flight = 0
        self.started = 0
        self._tokens = max(1.0, rate)
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        """Reserves one lookup (a slot and a token), or says none may start now."""
        self._refill()
        if self.in_flight >= self.concurrency or self._tokens < 1:
            return False
        self.in_flight += 1
        self._tokens -= 1
        return True

    def give_back(self, *, unused: bool) -> None:
        """Ends a reservation; ``unused``: no lookup was made, so its token is returned."""
        self.in_flight -= 1
        if unused:
            self._tokens = min(max(1.0, self.rate), self._tokens + 1)
        else:
            self.started += 1


def backoff(base: timedelta, attempts: int) -> timedelta:
    """base, 2 base, 4 base ... up to BACKOFF_CAP: the wait before a claim's next lookup."""
    return min(base * (2 ** min(max(attempts, 0), 16)), max(base, BACKOFF_CAP))


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
                 *, recheck: timedelta, lookups: Lookups | None = None):
        self.store = store
        self.adapters = adapters
        self.policy = policy
        self.recheck = recheck
        self.lookups = lookups or Lookups(concurrency=2, rate=20.0)
        self._signers: OrderedDict[tuple[str, str], tuple[str, ...]] = OrderedDict()

    async def process_one(self) -> bool:
        """Takes and handles one claim; False when none was due (or only claims needing a
        lookup were, and the lookups are at their limit)."""
        reserved = self.lookups.take()
        looked_up = [False]
        try:
            return await self._process(reserved, looked_up)
        finally:
            if reserved:
                self.lookups.give_back(unused=not looked_up[0])

    async def _process(self, reserved: bool, looked_up: list[bool]) -> bool:
        async with self.store.claim_session() as session:
            claim = await session.lock_next(recorded_only=not reserved)
            if claim is None:
                return False
            outcome = self._offline(claim)
            if outcome is not None:
                await self._apply(session, claim, outcome)
                return True
            await session.lease(claim, LEASE)
        looked_up[0] = claim.payment is None
        try:
            outcome = await self._online(claim)
        except RpcError as exc:
            # "The RPC failed" is never "not paid": the claim waits and is tried again.
            log.warning("claim_rpc_failed", claim_id=claim.id, chain=claim.chain,
                        tx_hash=claim.tx_hash, error=str(exc))
            async with self.store.claim_session() as session:
                await session.defer(claim, backoff(RETRY_AFTER_RPC_ERROR, claim.attempts),
                                    "rpc_unavailable", None)
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
            proof_valid = self._proof_offline(claim, payment, adapter)
            if proof_valid is None:
                return None
        return self._judge(claim, payment, None, proof_valid)

    async def _online(self, claim: Claim) -> Outcome:
        adapter = self.adapters[claim.chain]
        payment, lookup_reason = await self._payment(claim, adapter)
        proof_valid = None
        if payment is not None and self._needs_proof(payment):
            proof_valid = await self._proof_online(claim, payment, adapter)
        return self._judge(claim, payment, lookup_reason, proof_valid)

    def _needs_proof(self, payment: PaymentRow) -> bool:
        return (payment.status == "verified" and not payment.claimed and not payment.lapsed
                and self.policy.claim_proof == "signature")

    # -- whose proof claims a payment: rules.accepted_signers ---------------------------------

    def _proof_offline(self, claim: Claim, payment: PaymentRow,
                       adapter: ChainAdapter) -> bool | None:
        """True when local cryptography finds the proof by an accepted signer; False when no
        signer could have made it (no proof); None when the chain must be asked (the
        transaction's signers, or a contract wallet)."""
        if not claim.proof:
            return False
        message = rules.claim_message(claim.chain, claim.tx_hash, claim.token_hash)
        known = self._signers.get((claim.chain, claim.tx_hash))
        for who in rules.accepted_signers(payment.from_address, known or ()):
            if adapter.proof_offline(who, message, claim.proof):
                return True
        return None

    async def _proof_online(self, claim: Claim, payment: PaymentRow,
                            adapter: ChainAdapter) -> bool:
        if not claim.proof:
            return False
        message = rules.claim_message(claim.chain, claim.tx_hash, claim.token_hash)
        if await adapter.verify_proof(payment.from_address, message, claim.proof):
            return True
        signers = await self._tx_signers(claim, adapter)
        for who in rules.accepted_signers(payment.from_address, signers)[1:]:
            if await adapter.verify_proof(who, message, claim.proof):
                return True
        return False

    async def _tx_signers(self, claim: Claim, adapter: ChainAdapter) -> tuple[str, ...]:
        key = (claim.chain, claim.tx_hash)
        if key not in self._signers:
            self._remember_signers(key, await adapter.tx_signers(claim.tx_hash))
        return self._signers[key]

    def _remember_signers(self, key: tuple[str, str], signers: tuple[str, ...]) -> None:
        self._signers[key] = signers
        self._signers.move_to_end(key)
        while len(self._signers) > SIGNERS_CACHED:
            self._signers.popitem(last=False)

    def _judge(self, claim: Claim, payment: PaymentRow | None, lookup_reason: Reason | None,
               proof_valid: bool | None) -> Outcome:
        facts = rules.ClaimFacts(
            age=claim.age,
            payment_status=payment.status if payment else None,
            lookup_reason=lookup_reason,
            already_claimed=bool(payment and payment.claimed),
            proof_valid=proof_valid,
            payment_lapsed=bool(payment and payment.lapsed),
        )
        return Outcome(rules.judge_claim(facts, self.policy), payment.id if payment else None)

    async def _payment(self, claim: Claim,
                       adapter: ChainAdapter) -> tuple[PaymentRow | None, Reason | None]:
        if claim.payment is not None:
            return claim.payment, None
        lookup = await adapter.lookup(claim.tx_hash)
        if lookup.signers:
            self._remember_signers((claim.chain, claim.tx_hash), lookup.signers)
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
            # A transaction the node does not know yet is asked again less and less often.
            delay = (backoff(self.recheck, claim.attempts) if decision.reason == "not_found"
                     else self.recheck)
            await session.defer(claim, delay, decision.reason, payment_id)
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
