"""The Solana chain adapter: finds USDC payments to the operator's token accounts.

Watched accounts are each payee wallet's USDC associated token account (derived from the ATA
program) plus any configured token accounts: a plain SPL transfer lists the recipient's token
account among its keys, not always the wallet. A scan step pages ``getSignaturesForAddress``
(newest first, ``limit`` 1000, ``before`` to go back, ``until`` the cursor's marker) down to
each account's cursor, then fetches the new transactions oldest first with ``getTransaction``
(jsonParsed, maxSupportedTransactionVersion 0, finalized), ``batch_size`` calls per JSON-RPC
batch and several batches at once under a bound; verifier.chains.solana_decode turns each into
facts and verifier.rules judges them. An endpoint that refuses batches is asked one call per request.
Failed transactions are listed with ``err`` set and are not fetched: they pay nothing.
Paging goes on until an empty page or the cursor: a short page is not the end of history.

An answer is read only if it is about the signature asked (``transaction.signatures[0]``);
anything else is a retriable fault of that endpoint. A transaction that fails to read for a
reason of its own (a final error such as -32015, null although listed, an unreadable shape,
another signature's transaction) holds its account's cursor for ``quarantine_after`` polls,
then is handed to the store in ``ScanResult.quarantine`` and the scan goes past it;
``retry_quarantined`` reads such transactions again when the store says they are due.

Cursor per account: position = slot, marker = the newest signature processed. A backlog larger
than one step is handed back in several steps (``done=False``), each with the cursor of its last
signature, so the store can commit step by step and a restart resumes exactly there. The rest of
a backlog is kept between steps only as a work list, and only reused while the cursor the
watcher passes in is the one this adapter returned.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from verifier import rules
from verifier.addresses import canonical_tx_id
from verifier.chains.base import ScanResult
from verifier.chains.solana_decode import (
    TOKEN_PROGRAMS,
    first_signature,
    newest_first_until,
    transaction_facts,
)
from verifier.chains.solana_keys import associated_token_address, verify_ed25519
from verifier.config import ChainConfig
from verifier.errors import (
    ConfigError,
    FinalRpcError,
    NotServedError,
    RetriableRpcError,
    RpcError,
    SlotSkippedError,
    UnreadableAnswer,
    UnreadableTransactionError,
    WrongAnswerError,
    WrongChainError,
)
from verifier.models import ChainView, Cursor, Lookup, Observed, Quarantined, TxFacts
from verifier.money import USDC_DECIMALS
from verifier.rpc.client import SOLANA, RpcClient
from verifier.rpc.failover import Endpoint, Observer, RetryPolicy
from verifier.vocab import QuarantineReason, Reason

log = structlog.get_logger("verifier.solana")

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
PAGE_LIMIT = 1000  # the most getSignaturesForAddress returns
METHOD_NOT_FOUND = -32601  # JSON-RPC: the endpoint does not offer the method
TX_CONFIG = {"encoding": "jsonParsed", "commitment": "finalized",
             "maxSupportedTransactionVersion": 0}


@dataclass
class _Step:
    """What one account's part of a scan step did."""

    cursor: Cursor
    used: int = 0  # entries passed (judged, skipped or quarantined)
    held: bool = False  # stopped at a transaction that failed, not yet quarantined
    payments: list[Observed] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)


def _quarantine_reason(exc: BaseException) -> QuarantineReason | None:
    """Why a transaction itself cannot be read; None when the node is failing (time-outs, 5xx,
    429, node behind...): that holds the cursor, it never puts a transaction aside."""
    if isinstance(exc, WrongAnswerError):
        return "wrong_transaction"
    if isinstance(exc, NotServedError):
        return "not_served"
    if isinstance(exc, UnreadableTransactionError):
        return "unreadable"
    if isinstance(exc, RpcError) and not exc.retriable:
        return "final_error"  # e.g. -32015, a version this client cannot read
    return None


@dataclass
class _Backlog:
    cursor: Cursor  # the cursor this adapter returned; the backlog is valid only after it
    entries: list[Mapping[str, Any]]  # getSignaturesForAddress entries, oldest first


class SolanaAdapter:
    chain = "solana"

    def __init__(
        self,
        config: ChainConfig,
        *,
        rpc: RpcClient | None = None,
        step_limit: int = 1000,
        batch_size: int = 20,
        fetch_concurrency: int | None = None,
        policy: RetryPolicy | None = None,
        observe: Observer | None = None,
        quarantine_after: int = 3,
    ):
        self.config = config
        self.mint = config.usdc
        self.payees = tuple(config.payment_addresses)
        self.token_program = TOKEN_PROGRAM
        self.rpc = rpc or RpcClient(config.name, config.rpc_urls, codes=SOLANA,
                                    errors_in_place=True, concurrency=config.rpc_concurrency,
                                    timeout=config.rpc_timeout, policy=policy, observe=observe)
        self.step_limit = step_limit
        self.batch_size = max(1, batch_size)
        self.fetch_concurrency = fetch_concurrency or (
            config.rpc_concurrency * len(config.rpc_urls))
        self.accounts = self._watched()
        # A configured token account is judged as a payee itself (its owner may be anyone).
        self._payees = (*self.payees, *config.token_accounts)
        self._backlogs: dict[str, _Backlog] = {}
        self.genesis: str | None = None  # the cluster's genesis hash, known after startup_check
        # Polls in a row that failed to read a transaction for a reason of its own; at
        # ``quarantine_after`` it is put aside (verifier.solana_quarantine) and the scan goes on.
        self.quarantine_after = max(1, quarantine_after)
        self._strikes: dict[str, int] = {}

    def _watched(self) -> tuple[str, ...]:
        derived = [associated_token_address(p, self.mint, self.token_program)
                   for p in self.payees]
        return tuple(dict.fromkeys([*derived, *self.config.token_accounts]))

    async def open(self) -> None:
        """Creates the HTTP clients (no request is sent)."""
        await self.rpc.open()

    # --- start and view --------------------------------------------------------------------

    async def startup_check(self) -> None:
        """Every endpoint answers getHealth and getGenesisHash (all the same cluster), and the
        USDC mint exists there, owned by a token program, with 6 decimals."""
        genesis: dict[str, str] = {}
        for endpoint in self.rpc.endpoints:
            genesis[endpoint.name] = await self._check_endpoint(endpoint)
        first_url, first_hash = next(iter(genesis.items()))
        for url, value in genesis.items():
            if value != first_hash:
                raise ConfigError(
                    f"X402_SOLANA_RPC_URLS: {url} is on another cluster (genesis hash {value}, "
                    f"{first_url} has {first_hash})")
        self.genesis = first_hash  # checked again with every poll's view
        self.accounts = self._watched()

    async def _check_endpoint(self, endpoint: Endpoint) -> str:
        name = f"X402_SOLANA_RPC_URLS: {endpoint.name}"

        async def ask(method: str, params: list[Any] | None = None) -> Any:
            # Retried on this endpoint: a passing fault must not refuse the start.
            return await self.rpc.pool.call_on(
                endpoint, method, lambda e: self.rpc.request_on(e, method, params))

        try:
            try:
                health = await ask("getHealth")
            except RetriableRpcError as exc:
                if exc.code != -32005:
                    raise
                log.warning("solana_node_behind", endpoint=endpoint.name, error=str(exc))
                health = "ok"
            except FinalRpcError as exc:
                if exc.code != METHOD_NOT_FOUND:
                    raise
                # Some gateways do not offer getHealth: no health method is not "down"; the
                # calls below still have to answer.
                log.info("solana_no_health_method", endpoint=endpoint.name)
                health = "ok"
            genesis = await ask("getGenesisHash")
            account = await ask("getAccountInfo", [self.mint, {"encoding": "base64",
                                                               "commitment": "finalized"}])
        except RpcError as exc:
            raise ConfigError(f"{name}: does not answer: {exc}") from exc
        if health != "ok" or not isinstance(genesis, str):
            raise ConfigError(f"{name}: unhealthy (getHealth {health!r})")
        self.token_program = self._mint_program(name, account)
        return genesis

    def _mint_program(self, name: str, account: Any) -> str:
        value = account.get("value") if isinstance(account, dict) else None
        if not value:
            raise ConfigError(f"{name}: the USDC mint {self.mint} does not exist there "
                              "(X402_SOLANA_USDC_MINT)")
        if value.get("owner") not in TOKEN_PROGRAMS:
            raise ConfigError(f"{name}: {self.mint} is owned by {value.get('owner')}, not by a "
                              "token program (X402_SOLANA_USDC_MINT)")
        data = base64.b64decode(value["data"][0])
        if len(data) < 82 or data[45] != 1 or data[44] != USDC_DECIMALS:
            raise ConfigError(f"{name}: {self.mint} is not an initialized mint with "
                              f"{USDC_DECIMALS} decimals (X402_SOLANA_USDC_MINT)")
        return str(value["owner"])

    async def view(self) -> ChainView:
        """The finalized slot, from an endpoint that shows the cluster's genesis hash in the
        same poll: one that starts serving another cluster is dropped by the pool (see
        verifier.rpc.failover) until it answers for this one again."""

        async def op(endpoint: Endpoint) -> Any:
            if self.genesis is not None:
                genesis = await self.rpc.request_on(endpoint, "getGenesisHash")
                if genesis != self.genesis:
                    raise WrongChainError(
                        f"solana: {endpoint.name} serves genesis hash {genesis!r:.60}, expected "
                        f"{self.genesis}", endpoint=endpoint.name)
            return await self.rpc.request_on(endpoint, "getSlot", [{"commitment": "finalized"}])

        slot = await self.rpc.pool.call("getSlot", op, checks_chain=True)
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            # A garbled head is the node failing (retried), never a crash of the caller.
            raise RetriableRpcError(f"getSlot answered {slot!r:.80} instead of a slot")
        return ChainView(head=slot, final=slot)

    async def initial_cursors(self, start: int | None, view: ChainView) -> list[Cursor]:
        """``start`` is the first slot to scan; without it, only what comes after ``view``."""
        position = start - 1 if start is not None else view.final
        return [Cursor(self.chain, account, position, None) for account in self.accounts]

    async def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        return {}  # only finalized transactions are read: nothing to re-check

    # --- scanning --------------------------------------------------------------------------

    async def scan(self, cursors: Sequence[Cursor], view: ChainView) -> ScanResult:
        known = {c.account: c for c in cursors if c.chain == self.chain}
        budget = self.step_limit
        payments: list[Observed] = []
        quarantine: dict[str, Quarantined] = {}
        out: list[Cursor] = []
        done = True
        for account in self.accounts:
            cursor = known.get(account) or Cursor(self.chain, account, view.final, None)
            if budget <= 0:
                out.append(cursor)
                done = False
                continue
            pending, listed = await self._pending(account, cursor)
            step = await self._process(account, cursor, pending[:budget])
            payments += step.payments
            for q in step.quarantine:
                quarantine.setdefault(q.signature, q)  # a tx may touch two watched accounts
            cursor, used = step.cursor, step.used
            budget -= used
            rest = pending[used:]
            if rest:
                self._backlogs[account] = _Backlog(cursor, rest)
            else:
                self._backlogs.pop(account, None)
            # A backlog read from memory may have grown on chain since it was listed. An
            # account held on an unreadable transaction waits for the next poll.
            done = done and (step.held or (not rest and listed))
            out.append(cursor)
        unique = {p.tx_hash: p for p in payments}  # a tx may touch two watched accounts
        ordered = sorted(unique.values(), key=lambda p: p.block_number)
        return ScanResult(payments=ordered, cursors=out, done=done,
                          quarantine=list(quarantine.values()))

    async def _pending(self, account: str, cursor: Cursor
                       ) -> tuple[list[Mapping[str, Any]], bool]:
        """What is newer than the cursor, oldest first; and whether it was listed just now."""
        backlog = self._backlogs.get(account)
        if backlog is not None and backlog.cursor == cursor:
            return backlog.entries, False
        return await self._list_new(account, cursor), True

    async def _list_new(self, account: str, cursor: Cursor) -> list[Mapping[str, Any]]:
        """Signatures newer than the cursor, oldest first. Pages until the cursor is met or a
        page is empty: a short page is not the end (nodes answer short pages where their
        ledger meets long-term storage)."""
        fresh: list[Mapping[str, Any]] = []
        before: str | None = None
        while True:
            config: dict[str, Any] = {"commitment": "finalized", "limit": PAGE_LIMIT}
            if cursor.marker:
                config["until"] = cursor.marker
            if before:
                config["before"] = before
            page = await self.rpc.request("getSignaturesForAddress", [account, config])
            if not isinstance(page, list):
                raise FinalRpcError(f"getSignaturesForAddress answered {type(page).__name__}")
            new, met = newest_first_until(page, cursor.marker, cursor.position)
            fresh += new
            if met or not page:
                break
            before = page[-1]["signature"]
        fresh.reverse()
        return fresh

    async def _process(self, account: str, cursor: Cursor, entries: list[Mapping[str, Any]]
                       ) -> _Step:
        """Judges ``entries`` (oldest first). Stops before the first one that could not be
        fetched, so the cursor never passes a transaction not yet read; unless that one has
        failed ``quarantine_after`` polls in a row for a reason of its own (see
        ``_quarantine_reason``): then it is put aside and the scan goes on past it."""
        wanted = [e for e in entries if e.get("err") is None]
        fetched = await self._fetch_many([e["signature"] for e in wanted])
        self._count_strikes(fetched)
        step = _Step(cursor)
        for entry in entries:
            signature = entry["signature"]
            if entry.get("err") is None:
                tx = fetched[signature]
                if isinstance(tx, SlotSkippedError):
                    log.warning("solana_slot_skipped", account=account, tx_hash=signature,
                                slot=entry.get("slot"), error=str(tx))
                elif isinstance(tx, BaseException):
                    reason = _quarantine_reason(tx)
                    strikes = self._strikes.get(signature, 0)
                    if reason is None:  # the node failing, not this transaction
                        if step.used == 0:
                            raise tx
                        log.warning("solana_scan_cut_short", account=account,
                                    tx_hash=signature, error=str(tx))
                        break
                    if strikes < self.quarantine_after:
                        log.warning("solana_scan_held", account=account, tx_hash=signature,
                                    reason=reason, attempts=strikes, error=str(tx))
                        step.held = True
                        break
                    del self._strikes[signature]
                    step.quarantine.append(Quarantined(
                        self.chain, account, signature, int(entry["slot"]), reason,
                        getattr(tx, "code", None), strikes))
                    log.warning("solana_quarantined", account=account, tx_hash=signature,
                                reason=reason, attempts=strikes, error=str(tx))
                else:
                    found = self._judge(tx)
                    if isinstance(found, Observed):
                        step.payments.append(found)
            step.cursor = Cursor(self.chain, account, int(entry["slot"]), signature)
            step.used += 1
        return step

    def _count_strikes(self, fetched: Mapping[str, Any]) -> None:
        """One more failed poll for each transaction that failed for a reason of its own; a
        transaction read (or the node failing) clears its count."""
        for signature, answer in fetched.items():
            if isinstance(answer, RpcError) and _quarantine_reason(answer) is not None:
                self._strikes[signature] = self._strikes.get(signature, 0) + 1
            else:
                self._strikes.pop(signature, None)
        if len(self._strikes) > 100_000:  # bounded whatever the node does
            self._strikes.clear()

    async def retry_quarantined(self, due: Sequence[Quarantined]) -> ScanResult:
        """Reads quarantined transactions again (one call each, with the pool's retries). Read
        now: their payment (if any) and ``released``; failed again: in ``quarantine``, whose
        attempts the store counts and whose next retry it puts further away."""
        fetched = await self._fetch_many([q.signature for q in due])
        result = ScanResult(payments=[], cursors=[])
        for q in due:
            tx = fetched[q.signature]
            if isinstance(tx, SlotSkippedError) or not isinstance(tx, BaseException):
                result.released.append(q.signature)
                found = None if isinstance(tx, BaseException) else self._judge(tx)
                log.info("solana_quarantine_released", account=q.account, tx_hash=q.signature,
                         paid=isinstance(found, Observed))
                if isinstance(found, Observed):
                    result.payments.append(found)
                continue
            reason = _quarantine_reason(tx) or q.reason
            result.quarantine.append(Quarantined(q.chain, q.account, q.signature, q.slot, reason,
                                                 getattr(tx, "code", None), q.attempts + 1))
            log.warning("solana_quarantine_retry_failed", account=q.account, tx_hash=q.signature,
                        reason=reason, attempts=q.attempts + 1, error=str(tx))
        result.payments.sort(key=lambda p: p.block_number)
        return result

    async def _fetch_many(self, signatures: list[str]) -> dict[str, Any]:
        """The facts of each signature's transaction (or the RpcError met instead), from
        getTransaction, ``batch_size`` per HTTP request, at most ``fetch_concurrency`` requests
        at once. An item that failed in its batch (any error but a skipped slot, null, an answer
        for another signature or unreadable) is asked again on its own, with the pool's retries
        and failover, before it counts as failed."""
        limit = asyncio.Semaphore(self.fetch_concurrency)
        results: dict[str, Any] = {}

        async def chunk(part: list[str]) -> None:
            async with limit:
                answers = await self._batch(part)
                for signature, answer in zip(part, answers, strict=True):
                    if answer is None:  # _batch read nothing usable for it
                        try:
                            answer = await self._transaction(signature, listed=True)
                        except RpcError as exc:
                            answer = exc
                    results[signature] = answer

        size = self.batch_size
        await asyncio.gather(*(chunk(signatures[i:i + size])
                               for i in range(0, len(signatures), size)))
        return results

    async def _batch(self, part: list[str]) -> list[Any]:
        """Facts for ``part`` in order, read from one batch; None where the item must be asked
        again alone (SlotSkippedError kept: asking again gives the same answer)."""
        if len(part) == 1 or self.batch_size == 1:
            return [None] * len(part)
        try:
            answers = await self.rpc.batch([("getTransaction", [s, TX_CONFIG]) for s in part])
        except RpcError as exc:
            if not exc.retriable:  # refused as a batch (a single error, HTTP 4xx): ask singly
                log.warning("solana_batch_refused", endpoint=exc.endpoint, error=str(exc))
                self.batch_size = 1
            else:
                log.warning("solana_batch_failed", error=str(exc), size=len(part))
            return [None] * len(part)
        read: list[Any] = []
        for signature, answer in zip(part, answers, strict=True):
            if isinstance(answer, SlotSkippedError):
                read.append(answer)
                continue
            try:
                read.append(None if isinstance(answer, RpcError)
                            else self._read(signature, answer, None, listed=True))
            except RpcError:
                read.append(None)
        return read

    async def _transaction(self, signature: str, *, listed: bool) -> TxFacts | None:
        """The facts of one transaction; None (only when not ``listed``) if the node has none."""
        async def op(endpoint: Endpoint) -> TxFacts | None:
            tx = await self.rpc.request_on(endpoint, "getTransaction", [signature, TX_CONFIG])
            return self._read(signature, tx, endpoint.name, listed=listed)

        return await self.rpc.pool.call("getTransaction", op)

    @staticmethod
    def _read(signature: str, tx: Any, endpoint: str | None, *, listed: bool
              ) -> TxFacts | None:
        """A getTransaction answer for ``signature`` turned into facts, or the retriable fault
        it stands for: an answer about another transaction does not answer the question."""
        what = f"getTransaction {signature}"
        try:
            if tx is not None and not isinstance(tx, dict):
                raise UnreadableAnswer(f"not an object: {tx!r:.80}")
            if tx is not None and (answered := first_signature(tx)) != signature:
                raise WrongAnswerError(f"{what}: answered with transaction {answered:.100}",
                                       endpoint=endpoint)
            facts = transaction_facts(tx, signature)
        except (UnreadableAnswer, KeyError, TypeError, ValueError) as exc:
            raise UnreadableTransactionError(f"{what}: unreadable answer: {exc!r:.200}",
                                             endpoint=endpoint) from exc
        if facts is None and listed:
            # Listed as finalized yet not served: this node is behind. Not yet, not "not paid".
            raise NotServedError(f"{what}: null for a listed signature", endpoint=endpoint)
        return facts

    def _judge(self, facts: TxFacts | None) -> Observed | Reason:
        """The payment a transaction made, or why none (``not_found`` when the node has none)."""
        if facts is None:
            return "not_found"
        return rules.judge_transaction(facts, self._payees, self.mint)

    # --- claims ----------------------------------------------------------------------------

    async def lookup(self, tx_hash: str) -> Lookup:
        """One transaction, judged on demand. A null answer is ``not_found``: the node may not
        have it yet, so the caller may ask again; it never means "not paid"."""
        try:
            signature = canonical_tx_id(self.chain, tx_hash)
        except ValueError:
            return Lookup(None, "malformed_tx_hash")
        try:
            facts = await self._transaction(signature, listed=False)
        except SlotSkippedError:
            facts = None
        view = await self.view()  # after the answer: the payment's slot is within it
        verdict = self._judge(facts)
        signers = facts.signers if facts is not None else ()
        if isinstance(verdict, Observed):
            return Lookup(verdict, None, view, signers=signers)
        return Lookup(None, verdict, view, signers=signers)

    async def tx_signers(self, tx_hash: str) -> tuple[str, ...]:
        """The transaction's required signers, fee payer first, for rules.accepted_signers. A
        node that does not serve it (or serves another transaction) is retried."""
        signature = canonical_tx_id(self.chain, tx_hash)
        facts = await self._transaction(signature, listed=True)  # checked: the one asked for
        if facts is None or not facts.signers:
            raise RetriableRpcError(f"getTransaction {signature}: no signers in the answer")
        return facts.signers

    def proof_offline(self, payer: str, message: str, proof: str | None) -> bool | None:
        """ed25519 needs no network: always settled here."""
        if not proof:
            return False
        return verify_ed25519(payer, message.encode(), proof)

    async def verify_proof(self, payer: str, message: str | bytes, proof: str | None) -> bool:
        """An ed25519 signature by ``payer`` over ``message`` (UTF-8 when text), written in
        base58 or hex."""
        if not proof:
            return False
        raw = message.encode() if isinstance(message, str) else message
        return verify_ed25519(payer, raw, proof)

    def rpc_stats(self) -> list[tuple[str, dict[str, int]]]:
        return [(e.name, dict(e.stats)) for e in self.rpc.endpoints]

    async def close(self) -> None:
        await self.rpc.close()
