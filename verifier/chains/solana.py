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
from dataclasses import dataclass
from typing import Any

import structlog

from verifier import rules
from verifier.addresses import canonical_tx_id
from verifier.chains.base import ScanResult
from verifier.chains.solana_decode import TOKEN_PROGRAMS, newest_first_until, transaction_facts
from verifier.chains.solana_keys import associated_token_address, verify_ed25519
from verifier.config import ChainConfig
from verifier.errors import (
    ConfigError,
    FinalRpcError,
    RetriableRpcError,
    RpcError,
    SlotSkippedError,
    UnreadableAnswer,
)
from verifier.models import ChainView, Cursor, Lookup, Observed
from verifier.rpc.client import SOLANA, RpcClient
from verifier.rpc.failover import Endpoint, Observer, RetryPolicy
from verifier.vocab import Reason

log = structlog.get_logger("verifier.solana")

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
PAGE_LIMIT = 1000  # the most getSignaturesForAddress returns
USDC_DECIMALS = 6
TX_CONFIG = {"encoding": "jsonParsed", "commitment": "finalized",
             "maxSupportedTransactionVersion": 0}


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
        slot = await self.rpc.request("getSlot", [{"commitment": "finalized"}])
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
        out: list[Cursor] = []
        done = True
        for account in self.accounts:
            cursor = known.get(account) or Cursor(self.chain, account, view.final, None)
            if budget <= 0:
                out.append(cursor)
                done = False
                continue
            pending, listed = await self._pending(account, cursor)
            found, cursor, used = await self._process(account, cursor, pending[:budget])
            payments += found
            budget -= used
            rest = pending[used:]
            if rest:
                self._backlogs[account] = _Backlog(cursor, rest)
            else:
                self._backlogs.pop(account, None)
            # A backlog read from memory may have grown on chain since it was listed.
            done = done and not rest and listed
            out.append(cursor)
        unique = {p.tx_hash: p for p in payments}  # a tx may touch two watched accounts
        ordered = sorted(unique.values(), key=lambda p: p.block_number)
        return ScanResult(payments=ordered, cursors=out, done=done)

    async def _pending(self, account: str, cursor: Cursor
                       ) -> tuple[list[Mapping[str, Any]], bool]:
        """What is newer than the cursor, oldest first; and whether it was listed just now."""
        backlog = self._backlogs.get(account)
        if backlog is not None and backlog.cursor == cursor:
            return backlog.entries, False
        return await self._list_new(account, cursor), True

    async def _list_new(self, account: str, cursor: Cursor) -> list[Mapping[str, Any]]:
        """Signatures newer than the cursor, oldest first."""
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
            if met or len(page) < PAGE_LIMIT:
                break
            before = page[-1]["signature"]
        fresh.reverse()
        return fresh

    async def _process(self, account: str, cursor: Cursor, entries: list[Mapping[str, Any]]
                       ) -> tuple[list[Observed], Cursor, int]:
        """Judges ``entries`` (oldest first). Stops before the first one that could not be
        fetched, so the cursor never passes a transaction not yet read."""
        wanted = [e for e in entries if e.get("err") is None]
        fetched = await self._fetch_many([e["signature"] for e in wanted])
        payments: list[Observed] = []
        used = 0
        for entry in entries:
            signature = entry["signature"]
            if entry.get("err") is None:
                tx = fetched[signature]
                if isinstance(tx, SlotSkippedError):
                    log.warning("solana_slot_skipped", account=account, tx_hash=signature,
                                slot=entry.get("slot"), error=str(tx))
                elif isinstance(tx, BaseException):
                    if used == 0:
                        raise tx
                    log.warning("solana_scan_cut_short", account=account, tx_hash=signature,
                                error=str(tx))
                    break
                else:
                    found = self._judge(tx, signature)
                    if isinstance(found, Observed):
                        payments.append(found)
            cursor = Cursor(self.chain, account, int(entry["slot"]), signature)
            used += 1
        return payments, cursor, used

    async def _fetch_many(self, signatures: list[str]) -> dict[str, Any]:
        """getTransaction for each signature, ``batch_size`` per HTTP request, at most
        ``fetch_concurrency`` requests at once. An item that failed in its batch (an error,
        or null for a listed signature) is asked again on its own, with the pool's retries."""
        limit = asyncio.Semaphore(self.fetch_concurrency)
        results: dict[str, Any] = {}

        async def chunk(part: list[str]) -> None:
            async with limit:
                answers = await self._batch(part)
                for signature, answer in zip(part, answers, strict=True):
                    if answer is None or (isinstance(answer, RpcError) and answer.retriable):
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
        """Answers for ``part`` in order; None where the item must be asked again alone."""
        if len(part) == 1 or self.batch_size == 1:
            return [None] * len(part)
        try:
            return await self.rpc.batch([("getTransaction", [s, TX_CONFIG]) for s in part])
        except RpcError as exc:
            if not exc.retriable:  # refused as a batch (a single error, HTTP 4xx): ask singly
                log.warning("solana_batch_refused", endpoint=exc.endpoint, error=str(exc))
                self.batch_size = 1
            else:
                log.warning("solana_batch_failed", error=str(exc), size=len(part))
        return [None] * len(part)

    async def _transaction(self, signature: str, *, listed: bool) -> Any:
        async def op(endpoint: Endpoint) -> Any:
            tx = await self.rpc.request_on(endpoint, "getTransaction", [signature, TX_CONFIG])
            if tx is None and listed:
                # Listed as finalized yet not served: this node is behind. Not yet, not "not paid".
                raise RetriableRpcError(f"getTransaction {signature}: null for a listed "
                                        "signature", endpoint=endpoint.name)
            return tx

        return await self.rpc.pool.call("getTransaction", op)

    def _judge(self, tx: Any, signature: str) -> Observed | Reason:
        """The payment ``tx`` made, or why none (``not_found`` when the node has no answer)."""
        try:
            facts = transaction_facts(tx, signature)
        except (UnreadableAnswer, KeyError, TypeError, ValueError) as exc:
            raise FinalRpcError(f"getTransaction {signature}: unreadable answer: {exc}") from exc
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
            tx = await self._transaction(signature, listed=False)
        except SlotSkippedError:
            tx = None
        view = await self.view()  # after the answer: the payment's slot is within it
        verdict = self._judge(tx, signature)
        if isinstance(verdict, Observed):
            return Lookup(verdict, None, view)
        return Lookup(None, verdict, view)

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
