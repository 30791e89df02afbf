"""x402 "exact" on Solana: the fee payer's key, the chain reads and writes, exactly once through
the settlement ledger (the pure checks are verifier.x402.svm).

/settle of a partially signed transaction:
1. parse and route; the ledger key is (solana, transfer authority, sha256 of the message), the
   reference's ``txKey``: an entry already there answers from it, sending nothing;
2. the reference's checks and our policy (svm.check, svm.policy), then the chain: the payee's
   token account must exist (a transaction creating it would do so at the fee payer's cost),
   and the transaction is simulated (an expired blockhash is refused here: nothing is sent);
3. co-sign as fee payer (ed25519 is deterministic: the signature is known before sending),
   take the ledger entry, store the signed bytes and signature, and only then send;
4. the tracker asks getSignatureStatuses for every unfinished settlement; a finalized one is
   read back through the watcher's adapter (Solana's `lookup`), judged by the same rules and
   written as its x402_payments row with the paid request's usage (once); one the node does not
   know is sent again (same bytes, same signature: the cluster de-duplicates it) while its
   blockhash is valid, and closed as never landed once it is not. After a crash the stored
   signature is thus always looked up before anything is re-sent;
5. the answer, as on EVM: one success:true per settlement, duplicate_settlement with the
   signature after that, settlement_pending when no outcome came within the settle timeout.

The fee payer key comes from X402_SOLANA_SETTLER_KEY_FILE (owner-only file): a Solana keypair
JSON array of 64 numbers (solana-keygen's format) or a base58 secret key. It is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from solders.keypair import Keypair

from verifier import rules
from verifier.chains.solana import SolanaAdapter
from verifier.errors import ConfigError, DatabaseError, RpcError
from verifier.models import Observed
from verifier.store.settlements import Entry, Settlement, SettlementStore

from . import svm, wire
from .policy import Refusal
from .settler import await_settlement, read_secret_file

log = structlog.get_logger("verifier.x402")

UNEXPECTED = "unexpected_settle_error"
STATUS_BATCH = 256  # getSignatureStatuses takes at most 256 signatures
FINISH_CONCURRENCY = 32
UNEXPECTED_VERIFY = "unexpected_verify_error"


class FeePayerKey:
    """The fee payer's keypair; repr/str show only the address."""

    def __init__(self, keypair: Keypair):
        self._keypair = keypair
        self.address = str(keypair.pubkey())

    def __repr__(self) -> str:
        return f"FeePayerKey({self.address})"

    __str__ = __repr__

    @property
    def keypair(self) -> Keypair:
        return self._keypair


def load_keypair(path: Path, variable: str) -> FeePayerKey:
    """Same file rules as the EVM settler key: a regular file no group or other can access."""
    text = read_secret_file(path, variable)
    bad = ConfigError(f"{variable}: {path} holds neither a Solana keypair JSON array of 64 "
                      "numbers nor a base58 secret key")
    try:
        if text.startswith("["):
            numbers = json.loads(text)
            if not isinstance(numbers, list) or len(numbers) != 64 or not all(
                    isinstance(n, int) and 0 <= n < 256 for n in numbers):
                raise bad
            keypair = Keypair.from_bytes(bytes(numbers))
        else:
            keypair = Keypair.from_base58_string(text)
    except (ValueError, TypeError):
        raise bad from None
    return FeePayerKey(keypair)


class SvmSettler:
    """The chain side: reads and writes through the Solana adapter's RPC client."""

    def __init__(self, adapter: SolanaAdapter, key: FeePayerKey):
        self.adapter = adapter
        self.rpc = adapter.rpc
        self.key = key
        self.address = key.address

    async def account_exists(self, address: str) -> bool:
        answer = await self.rpc.request("getAccountInfo", [address, {
            "encoding": "base64", "commitment": "confirmed"}])
        return isinstance(answer, dict) and answer.get("value") is not None

    async def simulate(self, transaction: str) -> Any:
        answer = await self.rpc.request("simulateTransaction", [transaction, {
            "encoding": "base64", "sigVerify": False, "replaceRecentBlockhash": False,
            "commitment": "confirmed"}])
        return answer.get("value") if isinstance(answer, dict) else None

    async def send(self, signed: str) -> str | None:
        """Sends the stored bytes; None when sent, the node's refusal otherwise."""
        try:
            await self.rpc.request("sendTransaction", [signed, {
                "encoding": "base64", "skipPreflight": True, "maxRetries": 0}])
        except RpcError as exc:
            if "AlreadyProcessed" in str(exc) or "already been processed" in str(exc):
                return None
            return str(exc)
        return None

    async def statuses(self, signatures: list[str]) -> list[Any]:
        if not signatures:
            return []
        answer = await self.rpc.request("getSignatureStatuses", [
            signatures, {"searchTransactionHistory": True}])
        value = answer.get("value") if isinstance(answer, dict) else None
        return list(value) if isinstance(value, list) else [None] * len(signatures)

    async def blockhash_valid(self, blockhash: str) -> bool:
        answer = await self.rpc.request("isBlockhashValid", [blockhash, {
            "commitment": "processed"}])
        return bool(answer.get("value")) if isinstance(answer, dict) else False

    async def balance(self) -> int | None:
        try:
            answer = await self.rpc.request("getBalance", [self.address])
        except RpcError:
            return None
        return int(answer["value"]) if isinstance(answer, dict) else None


class SvmFacilitator:
    def __init__(self, terms: svm.SvmTerms, settler: SvmSettler, store: SettlementStore,
                 policy: rules.Policy, *, settle_timeout: float = 20.0,
                 poll_interval: float = 0.25, resend_after: float = 2.0):
        self.terms = terms
        self.settler = settler
        self.store = store
        self.policy = policy
        self.settle_timeout = settle_timeout
        self.poll_interval = poll_interval
        self.resend_after = resend_after
        self.sent_count = 0  # sendTransaction calls that went out (tests and the benchmark)
        self._kick = asyncio.Event()
        self._waiters: dict[int, asyncio.Event] = {}
        self._last_send: dict[int, float] = {}

    def kinds(self) -> list[dict[str, Any]]:
        extra = {"feePayer": self.settler.address}
        kinds: list[dict[str, Any]] = [{"x402Version": 2, "scheme": "exact",
                                        "network": self.terms.network, "extra": extra}]
        kinds += [{"x402Version": 1, "scheme": "exact", "network": n, "extra": extra}
                  for n in self.terms.v1_networks]
        return kinds

    # -- /verify ------------------------------------------------------------------------------

    async def verify(self, body: bytes) -> dict[str, Any]:
        try:
            req = svm.parse(body)
        except wire.Malformed as bad:
            return wire.verify_answer(False, payer=None, reason=bad.reason, message=bad.message)
        checked = await self._check(req)
        if isinstance(checked, tuple):
            refusal, payer = checked
            return wire.verify_answer(False, payer=payer, reason=refusal.reason,
                                      message=refusal.message)
        return wire.verify_answer(True, payer=checked.payer)

    async def _check(self, req: svm.SvmRequest) -> svm.Transfer | tuple[Refusal, str]:
        refusal = svm.route(req, self.terms)
        if refusal is not None:
            return refusal, ""
        found = svm.check(req, self.terms)
        if isinstance(found, Refusal):
            return found, _payer_hint(req)
        refusal = svm.policy(req, found, self.terms)
        if refusal is not None:
            return refusal, found.payer
        try:  # both reads at once: one round trip, not two
            exists, simulated = await asyncio.gather(
                self.settler.account_exists(found.destination),
                self.settler.simulate(req.transaction or ""))
            if not exists:
                return Refusal(svm.ERR_PAYEE_ATA_MISSING, "the payee's token account does not "
                               "exist; it is not created at the fee payer's cost"), found.payer
            refusal = svm.simulation_refusal(simulated)
        except RpcError as exc:
            log.warning("x402_svm_verify_failed", error=str(exc)[:300])
            return Refusal(UNEXPECTED_VERIFY, "the chain could not be read; try again"), \
                found.payer
        if refusal is not None:
            return refusal, found.payer
        return found

    # -- /settle ------------------------------------------------------------------------------

    async def settle(self, body: bytes) -> dict[str, Any]:
        try:
            req = svm.parse(body)
        except wire.Malformed as bad:
            return wire.settle_answer(False, network=bad.network, reason=bad.reason,
                                      message=bad.message)
        network = req.network
        tx = svm.decode(req.transaction)
        key = None
        if tx is not None and svm.route(req, self.terms) is None:
            payer = _payer_hint(req)
            key = (payer, svm.message_hash(tx))
            existing = await self.store.find(self.terms.chain, *key)
            if existing is not None:
                return await self._answer(existing.id, network, payer)
        checked = await self._check(req)
        if isinstance(checked, tuple):
            refusal, payer = checked
            if key is not None:  # lost a race with a settlement that started meanwhile
                existing = await self.store.find(self.terms.chain, *key)
                if existing is not None:
                    return await self._answer(existing.id, network, payer)
            return wire.settle_answer(False, network=network, payer=payer,
                                      reason=refusal.reason, message=refusal.message)
        transfer = checked
        signed, signature = svm.co_sign(transfer, self.settler.key.keypair)
        entry = Entry(chain=self.terms.chain, payer=transfer.payer, nonce=transfer.message_hash,
                      pay_to=req.pay_to, asset=transfer.mint, amount=transfer.amount,
                      valid_before=0, network=network, resource=req.resource_path,
                      settler=self.settler.address)
        taken = await self.store.take(entry)
        if taken is None:
            existing = await self.store.find(self.terms.chain, transfer.payer,
                                             transfer.message_hash)
            assert existing is not None
            return await self._answer(existing.id, network, transfer.payer)
        try:
            # tx_nonce is only a sequence number here (Solana has no account nonce).
            await self.store.sign_with_nonce(taken, self.terms.chain, self.settler.address, 0,
                                             lambda _n: (signed, signature))
        except DatabaseError as exc:
            log.warning("x402_settle_not_sent", chain=self.terms.chain, error=str(exc))
            with contextlib.suppress(DatabaseError):
                await self.store.release(taken)  # nothing was signed or sent: may be retried
            return wire.settle_answer(False, network=network, payer=transfer.payer,
                                      reason=UNEXPECTED, message="the ledger could not be "
                                      "written; nothing was sent, try again")
        await self._send(taken, signed, signature)
        return await self._answer(taken, network, transfer.payer)

    async def _send(self, settlement_id: int, signed: str, signature: str) -> None:
        self._last_send[settlement_id] = time.monotonic()
        self.sent_count += 1
        refused = await self.settler.send(signed)
        if refused is not None:
            # Kept 'signed': the tracker looks the signature up, then sends again or closes.
            log.warning("x402_svm_send_refused", signature=signature, error=refused[:200])
        else:
            await self.store.sent(settlement_id)
            log.info("x402_settlement_sent", chain=self.terms.chain, tx_hash=signature)
        self._kick.set()

    async def _answer(self, settlement_id: int, network: str, payer: str) -> dict[str, Any]:
        s = await await_settlement(self.store, settlement_id, self._waiters,
                                   within=self.settle_timeout, poll=self.poll_interval)
        if s is None:
            return wire.settle_answer(False, network=network, payer=payer, reason=UNEXPECTED)
        tx = s.tx_hash or ""
        payer = payer or s.payer
        if s.state == "mined":
            if await self.store.claim_success(s.id):
                answer = wire.settle_answer(True, network=network, transaction=tx, payer=payer,
                                            amount=s.amount)
                await self.store.store_answer(s.id, answer)
                return answer
            return wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                      reason=svm.ERR_DUPLICATE_SETTLEMENT,
                                      message="this transaction was settled already; "
                                      "transaction is the settlement")
        if s.state == "failed":
            answer = wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                        reason=s.error_reason or svm.ERR_TRANSACTION_FAILED)
            await self.store.store_answer(s.id, answer)
            return answer
        return wire.settle_answer(False, network=network, transaction=tx, payer=payer,
                                  reason=svm.ERR_SETTLEMENT_PENDING,
                                  message="sent; not finalized yet")

    # -- the tracker --------------------------------------------------------------------------

    async def track(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.track_once()
            except (RpcError, DatabaseError) as exc:
                log.warning("x402_tracker_failed", chain=self.terms.chain, error=str(exc))
            except Exception:
                log.exception("x402_tracker_crashed", chain=self.terms.chain)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=self.poll_interval)
            self._kick.clear()

    async def track_once(self) -> None:
        chain = self.terms.chain
        for sid in await self.store.abandoned(chain, timedelta(seconds=60)):
            await self.store.release(sid)  # taken, never signed (a crash): nothing was sent
            self._wake(sid)
        ids = await self.store.unfinished(chain, self.settler.address, timedelta(0))
        got = await asyncio.gather(*(self.store.get(i) for i in ids))
        rows = [s for s in got if s and s.tx_hash]
        if not rows:
            return
        statuses: list[Any] = []
        for start in range(0, len(rows), STATUS_BATCH):  # the method takes 256 at most
            statuses += await self.settler.statuses(
                [s.tx_hash or "" for s in rows[start:start + STATUS_BATCH]])
        finished = []
        for s, status in zip(rows, statuses, strict=True):
            if not isinstance(status, dict):
                await self._not_seen(s)
            elif status.get("err") is not None:
                await self.store.failed(s.id, svm.ERR_TRANSACTION_FAILED)
                log.warning("x402_settlement_failed", chain=chain, tx_hash=s.tx_hash,
                            err=str(status.get("err"))[:200])
                self._wake(s.id)
            elif status.get("confirmationStatus") == "finalized":
                finished.append(s)
        # Read back and recorded side by side: a burst of settlements is not one RPC round
        # trip each, one after the other.
        limit = asyncio.Semaphore(FINISH_CONCURRENCY)

        async def finish(s: Settlement) -> None:
            async with limit:
                await self._finish(s)

        await asyncio.gather(*(finish(s) for s in finished))

    async def _finish(self, s: Settlement) -> None:
        assert s.tx_hash is not None
        found = await self.settler.adapter.lookup(s.tx_hash)
        if not isinstance(found.payment, Observed) or found.view is None:
            if found.reason not in (None, "not_found"):
                await self.store.failed(s.id, svm.ERR_TRANSACTION_FAILED)
                self._wake(s.id)
            return
        # An x402 "exact" payment, judged by X402_EXACT_MIN_PAYMENT_USDC as on EVM.
        paid = dataclasses.replace(found.payment, exact=True)
        verdict = rules.judge(paid, found.view, self.policy)
        # The row is what the watcher would write for this transaction.
        as_seen = dataclasses.replace(s, payer=paid.from_address, pay_to=paid.to_address,
                                      amount=paid.amount)
        if await self.store.mined(as_seen, paid.block_number, paid.block_hash or "", verdict):
            log.info("x402_settlement_mined", chain=s.chain, tx_hash=s.tx_hash,
                     slot=paid.block_number, status=verdict.status)
        self._wake(s.id)

    async def _not_seen(self, s: Settlement) -> None:
        """The node does not know the signature: send the same bytes again while the
        blockhash is valid (not more often than every `resend_after` seconds); once it is not,
        the transaction can never land: closed, nothing more is sent."""
        last = self._last_send.get(s.id)
        if last is not None and time.monotonic() - last < self.resend_after:
            return
        assert s.signed_tx is not None
        tx = svm.decode(s.signed_tx)
        if tx is None or not await self.settler.blockhash_valid(str(tx.message.recent_blockhash)):
            await self.store.failed(s.id, svm.ERR_BLOCKHASH_EXPIRED)
            log.warning("x402_settlement_expired", chain=s.chain, tx_hash=s.tx_hash)
            self._wake(s.id)
            return
        assert s.tx_hash is not None
        log.info("x402_resend", chain=s.chain, tx_hash=s.tx_hash)
        await self._send(s.id, s.signed_tx, s.tx_hash)

    def _wake(self, settlement_id: int) -> None:
        event = self._waiters.get(settlement_id)
        if event is not None:
            event.set()


def _payer_hint(req: svm.SvmRequest) -> str:
    tx = svm.decode(req.transaction)
    if tx is None:
        return ""
    keys = [str(k) for k in tx.message.account_keys]
    return svm._token_payer(keys, list(tx.message.instructions)) or ""
