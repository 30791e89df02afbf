"""The facilitator: /supported, /verify and /settle answers, exactly once through the ledger.

/settle of an authorization:
1. parse (verifier.x402.wire), route to a chain and its terms (policy.route);
2. a ledger entry for (chain, payer, nonce) already there: answer from it (below);
3. the SDK's verification (verifier.x402.sdk), then our policy (policy.policy);
4. take the ledger entry (the unique key decides who settles, across daemons); the loser
   answers from the winner's entry;
5. allocate the settler nonce, sign and store the signed bytes in one database transaction,
   then broadcast: nothing is ever broadcast that the ledger does not hold;
6. the chain's tracker (one loop per chain) batches receipts of every unfinished settlement,
   marks them mined (writing the x402_payments row through the watcher's upsert and the paid
   request's usage, once) or failed, and re-broadcasts the same bytes of one still without a
   receipt (a crash between broadcast and receipt, a dropped transaction);
7. the answer: the one call that flips `success_answered` says success:true; every other
   answer for a mined settlement is success:false, errorReason duplicate_settlement, with the
   original transaction. No outcome within X402_FACILITATOR_SETTLE_TIMEOUT: settlement_pending
   with the hash (the SDK retries once, and the retry answers from the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from x402.mechanisms.evm.constants import ERR_TRANSACTION_FAILED, ERR_TRANSFER_EVENT_MISMATCH
from x402.mechanisms.evm.exact.eip3009_utils import verify_eip3009_transfer_event

from verifier import rules
from verifier.addresses import display_evm_address
from verifier.chains.base import ChainAdapter
from verifier.errors import DatabaseError, RpcError
from verifier.models import Observed
from verifier.store.settlements import Entry, Settlement, SettlementStore

from . import policy as pol
from . import svm as svm_wire
from . import wire
from .sdk import SdkVerifier
from .settler import Settler, await_settlement

if TYPE_CHECKING:
    from .svm_settler import SvmFacilitator

log = structlog.get_logger("verifier.x402")

DUPLICATE = "duplicate_settlement"
PENDING = "settlement_pending"
UNEXPECTED = "unexpected_settle_error"
UNEXPECTED_VERIFY = "unexpected_verify_error"
OUTCOMES = ("success", "duplicate", "pending", "failed", "invalid")


@dataclass
class ChainFacilitator:
    terms: pol.Terms
    verifier: SdkVerifier
    settler: Settler
    adapter: ChainAdapter
    policy: rules.Policy  # the watcher's: price per request and the x402 "exact" minimum
    waiters: dict[int, asyncio.Event] = field(default_factory=dict)


class Facilitator:
    def __init__(self, chains: Mapping[str, ChainFacilitator], store: SettlementStore, *,
                 settle_timeout: float = 20.0, poll_interval: float = 0.25,
                 rebroadcast_after: float = 3.0, svm: SvmFacilitator | None = None):
        self.chains = dict(chains)
        self.svm = svm  # Solana's "exact" (verifier.x402.svm_settler), when configured
        self.store = store
        self.settle_timeout = settle_timeout
        self.poll_interval = poll_interval
        self.rebroadcast_after = rebroadcast_after
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._kick: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.chains}
        self._last_broadcast: dict[int, float] = {}
        self._missing: set[int] = set()

    # -- /supported ---------------------------------------------------------------------------

    def supported(self) -> dict[str, Any]:
        kinds: list[dict[str, Any]] = []
        signers: dict[str, list[str]] = {}
        for c in self.chains.values():
            kinds.append({"x402Version": 2, "scheme": "exact", "network": c.terms.caip2})
            kinds += [{"x402Version": 1, "scheme": "exact", "network": n}
                      for n in c.terms.v1_networks]
            signers.setdefault("eip155:*", []).append(display_evm_address(c.settler.address))
        if self.svm is not None:
            kinds += self.svm.kinds()
            signers.setdefault("solana:*", []).append(self.svm.settler.address)
        return {"kinds": kinds, "extensions": [], "signers": signers}

    # -- /verify ------------------------------------------------------------------------------

    async def verify(self, body: bytes) -> dict[str, Any]:
        if self.svm is not None and svm_wire.is_svm(body):
            return await self.svm.verify(body)
        try:
            req = wire.parse(body)
        except wire.Malformed as bad:
            return wire.verify_answer(False, payer=bad.payer, reason=bad.reason,
                                      message=bad.message)
        chain, refusal = self._route(req)
        payer = req.authorization.payer_display if req.authorization else None
        if refusal is not None:
            return wire.verify_answer(False, payer=payer, reason=refusal.reason,
                                      message=refusal.message)
        assert chain is not None
        refusal = await self._check(chain, req)
        if refusal is not None:
            return wire.verify_answer(False, payer=payer, reason=refusal.reason,
                                      message=refusal.message)
        return wire.verify_answer(True, payer=payer)

    def _route(self, req: wire.FacilitatorRequest) -> tuple[ChainFacilitator | None,
                                                               pol.Refusal | None]:
        routed = pol.route(req, [c.terms for c in self.chains.values()])
        if isinstance(routed, pol.Refusal):
            return None, routed
        return self.chains[routed.chain], None

    async def _check(self, chain: ChainFacilitator, req: wire.FacilitatorRequest
                     ) -> pol.Refusal | None:
        """The SDK's verification, then our policy."""
        try:
            answer = await chain.verifier.verify(req)
        except Exception as exc:  # the SDK raises on an RPC it could not complete
            log.warning("x402_verify_failed", chain=chain.terms.chain, error=str(exc)[:300])
            return pol.Refusal(UNEXPECTED_VERIFY, "the chain could not be read; try again")
        if not answer.is_valid:
            return pol.Refusal(answer.invalid_reason or UNEXPECTED_VERIFY,
                               answer.invalid_message or "")
        return pol.policy(req, chain.terms)

    # -- /settle ------------------------------------------------------------------------------

    async def settle(self, body: bytes) -> dict[str, Any]:
        answer = await self._settle(body)
        if answer.get("success"):
            self.outcomes["success"] += 1
        else:
            reason = answer.get("errorReason")
            key = {DUPLICATE: "duplicate", PENDING: "pending", ERR_TRANSACTION_FAILED: "failed",
                   svm_wire.ERR_TRANSACTION_FAILED: "failed",
                   UNEXPECTED: "failed"}.get(str(reason), "invalid")
            self.outcomes[key] += 1
        return answer

    async def _settle(self, body: bytes) -> dict[str, Any]:
        if self.svm is not None and svm_wire.is_svm(body):
            return await self.svm.settle(body)
        try:
            req = wire.parse(body)
        except wire.Malformed as bad:
            return wire.settle_answer(False, network=bad.network, payer=bad.payer,
                                      reason=bad.reason, message=bad.message)
        chain, refusal = self._route(req)
        auth = req.authorization
        payer = auth.payer_display if auth else None
        if refusal is not None:
            return wire.settle_answer(False, network=req.network, payer=payer,
                                      reason=refusal.reason, message=refusal.message)
        assert chain is not None and auth is not None
        name = chain.terms.chain
        existing = await self.store.find(name, auth.payer, auth.nonce)
        if existing is not None and _same(existing, req):
            return await self._answer(chain, existing.id, req, payer)
        # Not in the ledger, or another authorization under a known (public) nonce: checked
        # like any new payload (the chain then says the nonce is used).
        refusal = await self._check(chain, req)
        if refusal is not None:
            # Lost a race with a settlement that started meanwhile: its answer, not the chain's.
            existing = await self.store.find(name, auth.payer, auth.nonce)
            if existing is not None and _same(existing, req):
                return await self._answer(chain, existing.id, req, payer)
            return wire.settle_answer(False, network=req.network, payer=payer,
                                      reason=refusal.reason, message=refusal.message)
        entry = Entry(chain=name, payer=auth.payer, nonce=auth.nonce, pay_to=auth.to,
                      asset=req.asset, amount=auth.value, valid_before=auth.valid_before,
                      network=req.network, resource=req.resource_path,
                      settler=chain.settler.address)
        taken = await self.store.take(entry)
        if taken is None:
            existing = await self.store.find(name, auth.payer, auth.nonce)
            assert existing is not None
            return await self._answer(chain, existing.id, req, payer)
        await self._send(chain, taken, auth)
        return await self._answer(chain, taken, req, payer)

    async def _send(self, chain: ChainFacilitator, settlement_id: int,
                    auth: wire.Authorization) -> None:
        settler = chain.settler
        try:
            fees = await settler.fees()
            chain_next = await settler.chain_next_nonce()
            nonce, raw, tx_hash = await self.store.sign_with_nonce(
                settlement_id, chain.terms.chain, settler.address, chain_next,
                settler.signer_for(auth, fees))
        except (RpcError, DatabaseError) as exc:
            # Nothing was signed, nothing is on chain: the entry is released, so a retry of the
            # same authorization can settle it.
            log.warning("x402_settle_not_sent", chain=chain.terms.chain, error=str(exc))
            with contextlib.suppress(DatabaseError):
                await self.store.release(settlement_id)
            return
        refused = await settler.broadcast(raw)
        if refused is not None:
            # Kept 'signed': the tracker re-broadcasts the same bytes, so the nonce is filled.
            log.warning("x402_broadcast_refused", chain=chain.terms.chain, tx_hash=tx_hash,
                        nonce=nonce, error=refused[:200])
        else:
            await self.store.sent(settlement_id)
            log.info("x402_settlement_sent", chain=chain.terms.chain, tx_hash=tx_hash,
                     settler=settler.address, nonce=nonce, payer=auth.payer)
        self._kick[chain.terms.chain].set()

    async def _answer(self, chain: ChainFacilitator, settlement_id: int,
                      req: wire.FacilitatorRequest, payer: str | None) -> dict[str, Any]:
        """Waits for the settlement's outcome (up to the settle timeout), then answers."""
        s = await await_settlement(self.store, settlement_id, chain.waiters,
                                   within=self.settle_timeout, poll=self.poll_interval)
        network = req.network
        if s is None:
            return wire.settle_answer(False, network=network, payer=payer, reason=UNEXPECTED)
        tx = s.tx_hash or ""
        if s.state == "mined":
            if await self.store.claim_success(s.id):
                answer = wire.settle_answer(True, network=network, transaction=tx, payer=payer,
                                            amount=s.amount)
                await self.store.store_answer(s.id, answer)
                return answer
            return wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                      reason=DUPLICATE, message="this authorization was settled "
                                      "already; transaction is the settlement")
        if s.state == "failed":
            answer = wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                        reason=s.error_reason or ERR_TRANSACTION_FAILED)
            await self.store.store_answer(s.id, answer)
            return answer
        return wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                  reason=PENDING, message="broadcast; no receipt yet")

    # -- the tracker --------------------------------------------------------------------------

    async def track(self, stop: asyncio.Event) -> None:
        """One loop per chain: receipts, outcomes, re-broadcasts (also after a restart)."""
        svm_tracker = [self.svm.track(stop)] if self.svm is not None else []
        await asyncio.gather(*(self._track(c, stop) for c in self.chains.values()),
                             *svm_tracker)

    async def _track(self, chain: ChainFacilitator, stop: asyncio.Event) -> None:
        kick = self._kick[chain.terms.chain]
        while not stop.is_set():
            try:
                await self.track_once(chain)
            except (RpcError, DatabaseError) as exc:
                log.warning("x402_tracker_failed", chain=chain.terms.chain, error=str(exc))
            except Exception:
                log.exception("x402_tracker_crashed", chain=chain.terms.chain)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), timeout=self.poll_interval)
            kick.clear()

    async def track_once(self, chain: ChainFacilitator) -> None:
        name, settler = chain.terms.chain, chain.settler
        for sid in await self.store.abandoned(name, timedelta(seconds=60)):
            await self.store.release(sid)  # taken, never signed (a crash): nothing was sent
            self._wake(chain, sid)
        ids = await self.store.unfinished(name, settler.address, timedelta(0))
        rows = [s for s in [await self.store.get(i) for i in ids] if s and s.tx_hash]
        if not rows:
            return
        receipts = await settler.receipts([s.tx_hash for s in rows if s.tx_hash])
        view = None
        mined_nonce: int | None = None
        for s, receipt in zip(rows, receipts, strict=True):
            if not isinstance(receipt, dict) or receipt.get("blockNumber") is None:
                if mined_nonce is None:
                    mined_nonce = await settler.mined_nonce()
                if s.tx_nonce is not None and s.tx_nonce < mined_nonce \
                        and s.id in self._missing:
                    # Its nonce was used by another transaction (the key was used elsewhere)
                    # and, asked again, it still has no receipt: it will never be mined.
                    await self.store.failed(s.id, ERR_TRANSACTION_FAILED)
                    log.warning("x402_settlement_replaced", chain=s.chain, tx_hash=s.tx_hash,
                                nonce=s.tx_nonce)
                    self._wake(chain, s.id)
                    continue
                if s.tx_nonce is not None and s.tx_nonce < mined_nonce:
                    self._missing.add(s.id)  # the receipt may lag the nonce: ask once more
                await self._maybe_rebroadcast(chain, s)
                continue
            if view is None:
                view = await chain.adapter.view()
            await self._finish(chain, s, receipt, view)

    async def _finish(self, chain: ChainFacilitator, s: Settlement, receipt: dict[str, Any],
                      view: Any) -> None:
        status = int(str(receipt.get("status", "0x0")), 16)
        if status != 1:
            await self.store.failed(s.id, ERR_TRANSACTION_FAILED)
            log.warning("x402_settlement_reverted", chain=s.chain, tx_hash=s.tx_hash)
        elif not verify_eip3009_transfer_event(receipt.get("logs"), chain.terms.usdc,
                                               from_address=s.payer, to=s.pay_to,
                                               value=s.amount):
            await self.store.failed(s.id, ERR_TRANSFER_EVENT_MISMATCH)
        else:
            block = int(str(receipt["blockNumber"]), 16)
            block_hash = str(receipt["blockHash"]).lower()
            assert s.tx_hash is not None
            verdict = rules.judge(Observed(s.chain, s.tx_hash, block, block_hash, s.payer,
                                           s.pay_to, s.amount, exact=True), view, chain.policy)
            if await self.store.mined(s, block, block_hash, verdict):
                log.info("x402_settlement_mined", chain=s.chain, tx_hash=s.tx_hash, block=block,
                         status=verdict.status)
        self._wake(chain, s.id)

    async def _maybe_rebroadcast(self, chain: ChainFacilitator, s: Settlement) -> None:
        """No receipt yet: the same signed bytes again, at most every `rebroadcast_after`
        seconds per settlement (first right away after a restart: `broadcasts` is 0 for one
        signed and never sent)."""
        assert s.signed_tx is not None
        last = self._last_broadcast.get(s.id)
        now = time.monotonic()
        if s.state == "sent" and last is None:
            self._last_broadcast[s.id] = now  # sent by this or another instance: wait a while
            return
        if last is not None and now - last < self.rebroadcast_after:
            return
        self._last_broadcast[s.id] = now
        refused = await chain.settler.broadcast(s.signed_tx)
        if refused is None:
            await self.store.sent(s.id)
            log.info("x402_rebroadcast", chain=s.chain, tx_hash=s.tx_hash, nonce=s.tx_nonce)
        else:
            log.warning("x402_rebroadcast_refused", chain=s.chain, tx_hash=s.tx_hash,
                        error=refused[:200])

    def _wake(self, chain: ChainFacilitator, settlement_id: int) -> None:
        event = chain.waiters.get(settlement_id)
        if event is not None:
            event.set()


def _same(s: Settlement, req: wire.FacilitatorRequest) -> bool:
    """The request repeats the stored authorization (its recipient, value and network), not
    merely its payer and nonce, which anyone can read on chain once it is settled."""
    auth = req.authorization
    return auth is not None and auth.to == s.pay_to and auth.value == s.amount \
        and req.asset == s.asset and req.network == s.network
