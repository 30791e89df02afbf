"""A Solana JSON-RPC node for tests: real HTTP on 127.0.0.1, real execution in LiteSVM.

Transactions sent through ``SolanaServer.send`` really execute (SPL Token, Associated Token
Account, System and Address Lookup Table programs, as shipped inside ``solders.litesvm``); each
lands in a slot of its own. LiteSVM keeps no history an RPC node could serve, so the server keeps
a ledger (verifier/devnet/solana_ledger.py) and answers, in the documented shapes: getHealth,
getSlot, getVersion, getGenesisHash, getLatestBlockhash, getAccountInfo (base64 / jsonParsed),
getSignaturesForAddress (newest first; before / until / limit exactly as documented) and
getTransaction (json, jsonParsed, base64; -32015 for a versioned transaction asked for without
maxSupportedTransactionVersion), and what an x402 facilitator needs: simulateTransaction,
sendTransaction (base58/base64; preflight unless skipPreflight, -32002 when it fails),
getSignatureStatuses, getFeeForMessage, isBlockhashValid and getBalance. Everything it has is
finalized.

Blockhashes: every slot has its own, valid for 150 slots as on a real cluster (LiteSVM itself
knows only the latest one, so its own check is off and the node checks the age);
``expire_blockhashes`` ends the validity of every blockhash handed out so far. A transaction
sent with an expired blockhash is dropped (skipPreflight) or refused (-32002), never executed.

Tests steer it with ``inject`` (documented errors for chosen calls: -32005, HTTP 429,
-32007/-32009, -32015, a null result; and lies: another signature's transaction, an answer
without account keys), ``page_cap`` (short signature pages) and ``latency`` (seconds added to
every HTTP request); ``calls`` counts what was asked.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import json
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web
from solders.address_lookup_table_account import ID as ALT_PROGRAM
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0, MessageV1
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from verifier.chains.solana_decode import b58decode
from verifier.devnet.solana_ledger import (
    TOKEN_ACCOUNT_LEN,
    TOKEN_PROGRAMS,
    Inner,
    Landed,
    TokenBalance,
    error_json,
)

LOOKUP_TABLE_META_SIZE = 56
MAX_BLOCKHASH_AGE = 150  # slots
LAMPORTS_PER_SIGNATURE = 5000
GENESIS_TIME = 1_700_000_000


class Fault(Enum):
    NODE_BEHIND = "node_behind"  # -32005
    HTTP_429 = "http_429"  # HTTP 429 with rpcpool's body
    SLOT_SKIPPED = "slot_skipped"  # -32007
    LONG_TERM_SLOT_SKIPPED = "long_term_slot_skipped"  # -32009
    NULL = "null"  # a null result: the node has not got it (yet)
    UNSUPPORTED_VERSION = "unsupported_version"  # -32015, whatever the request asked for
    OTHER_TRANSACTION = "other_transaction"  # getTransaction answers for ``other`` instead
    UNREADABLE = "unreadable"  # getTransaction: the real answer without its account keys


@dataclass
class _Injected:
    method: str
    fault: Fault
    times: int
    when: Callable[[list[Any]], bool] | None
    retry_after: float | None
    other: str | None = None


class RpcFailure(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class TransactionRejected(Exception):
    """LiteSVM refused a transaction before it could land (a real node would not record it)."""


class SolanaServer:
    def __init__(self, *, start_slot: int = 100):
        self.svm = LiteSVM()
        self.svm.with_blockhash_check(False)  # the node checks blockhash ages (_blockhash_ok)
        self.svm.warp_to_slot(start_slot)
        self.slot = start_slot
        self.genesis_hash = str(Hash.new_unique())
        self.latency = 0.0
        self.accept_batches = True
        # getSignaturesForAddress answers at most this many entries per page, whatever the
        # limit asked (as nodes do where their ledger meets long-term storage).
        self.page_cap: int | None = None
        self.calls: Counter[str] = Counter()
        self.call_log: deque[str] = deque(maxlen=10_000)  # the latest methods, in order
        self.errors: Counter[int] = Counter()  # JSON-RPC error codes and HTTP statuses sent
        self.http_requests = 0
        self.ledger: list[Landed] = []
        self._by_signature: dict[str, Landed] = {}
        self._by_address: dict[str, list[Landed]] = {}
        self._faults: list[_Injected] = []
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._blockhashes: dict[str, int] = {str(self.svm.latest_blockhash()): start_slot}
        self._expired_below = 0  # blockhashes handed out before this slot are expired
        self.sent: Counter[str] = Counter()  # sendTransaction calls per signature
        # hold_sends: sendTransaction accepts but does not execute (a congested leader); the
        # transactions wait in `held` until release_held() lands or drop_held() loses them.
        self.hold_sends = False
        self.held: list[VersionedTransaction] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SolanaServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name="solana-rpc")
        self._thread.start()
        if not ready.wait(10) or not self.url:
            raise RuntimeError("the Solana test RPC server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> SolanaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._http)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()
        loop.run_forever()
        loop.close()

    # --- steering ----------------------------------------------------------------------------

    def inject(self, method: str, fault: Fault, *, times: int = 1,
               when: Callable[[list[Any]], bool] | None = None,
               retry_after: float | None = None, other: str | None = None) -> None:
        """The next ``times`` calls of ``method`` (whose params satisfy ``when``) fail so.
        ``other``: the signature whose transaction Fault.OTHER_TRANSACTION serves."""
        with self._lock:
            self._faults.append(_Injected(method, fault, times, when, retry_after, other))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults_left(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.errors.clear()
            self.http_requests = 0

    def _take_fault(self, method: str, params: list[Any]) -> _Injected | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and (fault.when is None or fault.when(params)):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- transactions ------------------------------------------------------------------------

    def send(self, signers: Sequence[Keypair], instructions: Sequence[Instruction], *,
             lookup_tables: Sequence[AddressLookupTableAccount] = ()) -> str:
        """Builds, signs and executes a transaction in a new slot; returns its signature.

        The first signer pays the fee. With ``lookup_tables`` it is a v0 transaction. A
        transaction that fails while executing lands with meta.err set, as with skipPreflight.
        """
        with self._lock:
            self._next_slot()
            blockhash = self.svm.latest_blockhash()
            payer = signers[0].pubkey()
            tx: Transaction | VersionedTransaction
            if lookup_tables:
                msg = MessageV0.try_compile(payer, list(instructions), list(lookup_tables),
                                            blockhash)
                tx = VersionedTransaction(msg, list(signers))
            else:
                legacy = Message.new_with_blockhash(list(instructions), payer, blockhash)
                tx = Transaction(list(signers), legacy, blockhash)
            return self._execute(tx).signature

    def skip_slots(self, count: int) -> None:
        """Slots that pass with no transaction (a leader skipped them)."""
        with self._lock:
            self.slot += count
            self.svm.warp_to_slot(self.slot)
            self.svm.expire_blockhash()
            self._blockhashes[str(self.svm.latest_blockhash())] = self.slot

    def _next_slot(self) -> None:
        self.slot += 1
        self.svm.warp_to_slot(self.slot)
        self.svm.expire_blockhash()  # every slot has its own blockhash
        self._blockhashes[str(self.svm.latest_blockhash())] = self.slot

    def expire_blockhashes(self) -> None:
        """Every blockhash handed out so far is too old from now on."""
        with self._lock:
            self._next_slot()
            self._expired_below = self.slot

    def release_held(self) -> list[str]:
        """Lands the held transactions (each once); their signatures."""
        with self._lock:
            landed = []
            for tx in self.held:
                if str(tx.signatures[0]) not in self._by_signature:
                    self._next_slot()
                    landed.append(self._execute(tx).signature)
            self.held.clear()
            return landed

    def drop_held(self) -> None:
        with self._lock:
            self.held.clear()

    def _blockhash_ok(self, blockhash: str) -> bool:
        issued = self._blockhashes.get(blockhash)
        return issued is not None and issued >= self._expired_below \
            and self.slot - issued <= MAX_BLOCKHASH_AGE

    def _execute(self, tx: Transaction | VersionedTransaction) -> Landed:
        keys, loaded_w, loaded_r = self._full_keys(tx.message)
        pubkeys = [Pubkey.from_string(k) for k in keys]
        pre_lamports = [self.svm.get_balance(k) or 0 for k in pubkeys]
        pre_tokens = self._token_balances(pubkeys)
        outcome = self.svm.send_transaction(tx)
        if isinstance(outcome, FailedTransactionMetadata):
            err = outcome.err()
            if type(err).__name__ not in ("TransactionErrorInstructionError",
                                          "TransactionErrorInsufficientFundsForRent"):
                raise TransactionRejected(str(err))
            meta = outcome.meta()
            err_json = error_json(err)
        else:
            meta, err_json = outcome, None
        entry = Landed(
            seq=len(self.ledger),
            signature=str(tx.signatures[0]),
            slot=self.slot,
            block_time=GENESIS_TIME + self.slot * 2 // 5,
            tx=tx,
            keys=keys,
            loaded_writable=loaded_w,
            loaded_readonly=loaded_r,
            err=err_json,
            fee=meta.fee(),
            pre_balances=pre_lamports,
            post_balances=[self.svm.get_balance(k) or 0 for k in pubkeys],
            pre_tokens=pre_tokens,
            post_tokens=self._token_balances(pubkeys),
            inner=[[_inner(ix) for ix in group] for group in meta.inner_instructions()],
            logs=list(meta.logs()),
            compute_units=meta.compute_units_consumed(),
        )
        self.ledger.append(entry)
        self._by_signature[entry.signature] = entry
        for key in dict.fromkeys(keys):
            self._by_address.setdefault(key, []).append(entry)
        return entry

    def _full_keys(self, msg: Message | MessageV0 | MessageV1
                   ) -> tuple[list[str], list[str], list[str]]:
        static = [str(k) for k in msg.account_keys]
        if not isinstance(msg, MessageV0):
            return static, [], []
        writable: list[str] = []
        readonly: list[str] = []
        for lookup in msg.address_table_lookups:
            table = self._lookup_table(lookup.account_key)
            writable += [table[i] for i in lookup.writable_indexes]
            readonly += [table[i] for i in lookup.readonly_indexes]
        return static + writable + readonly, writable, readonly

    def _lookup_table(self, key: Pubkey) -> list[str]:
        account = self.svm.get_account(key)
        if account is None or account.owner != ALT_PROGRAM:
            raise TransactionRejected(f"address lookup table {key} not found")
        body = bytes(account.data)[LOOKUP_TABLE_META_SIZE:]
        return [str(Pubkey.from_bytes(body[i:i + 32])) for i in range(0, len(body), 32)]

    def _token_balances(self, keys: list[Pubkey]) -> list[TokenBalance]:
        out = []
        decimals: dict[bytes, int] = {}
        for index, key in enumerate(keys):
            account = self.svm.get_account(key)
            if account is None or str(account.owner) not in TOKEN_PROGRAMS:
                continue
            data = bytes(account.data)
            if len(data) < TOKEN_ACCOUNT_LEN or data[108] == 0:
                continue  # a mint, a multisig, or an uninitialized account
            mint = data[0:32]
            if mint not in decimals:
                mint_account = self.svm.get_account(Pubkey.from_bytes(mint))
                decimals[mint] = bytes(mint_account.data)[44] if mint_account else 0
            (amount,) = struct.unpack_from("<Q", data, 64)
            out.append(TokenBalance(index, str(Pubkey.from_bytes(mint)),
                                    str(Pubkey.from_bytes(data[32:64])), str(account.owner),
                                    amount, decimals[mint]))
        return out

    def landed(self, signature: str) -> Landed:
        with self._lock:
            return self._by_signature[signature]

    def signatures_for(self, address: str) -> list[str]:
        """Every signature involving ``address``, oldest first (what the ledger holds)."""
        with self._lock:
            return [e.signature for e in self._by_address.get(address, [])]

    # --- JSON-RPC ----------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.Response:
        with self._lock:
            self.http_requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response(_error(None, -32700, "Parse error"))
        if isinstance(body, list):
            with self._lock:
                self.calls["batch"] += 1
            if not self.accept_batches:
                with self._lock:
                    self.errors[-32600] += 1
                return web.json_response(_error(None, -32600, "batch requests are not allowed"))
            replies = [self._answer(call) for call in body]
            if any(isinstance(r, web.Response) for r in replies):
                return next(r for r in replies if isinstance(r, web.Response))
            return web.json_response(replies)
        reply = self._answer(body)
        if isinstance(reply, web.Response):
            return reply
        return web.Response(text=json.dumps(reply), content_type="application/json")

    def _answer(self, call: Any) -> dict[str, Any] | web.Response:
        if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or "method" not in call:
            return _error(None, -32600, "Invalid request")
        ident, method, params = call.get("id"), call["method"], call.get("params") or []
        with self._lock:
            self.calls[method] += 1
            self.call_log.append(method)
        reply = self._reply(ident, method, params)
        with self._lock:
            if isinstance(reply, web.Response):
                self.errors[reply.status] += 1
            elif "error" in reply:
                self.errors[reply["error"]["code"]] += 1
        return reply

    def _reply(self, ident: Any, method: str, params: list[Any]) -> dict[str, Any] | web.Response:
        fault = self._take_fault(method, params)
        if fault is not None:
            if fault.fault is Fault.HTTP_429:
                headers = {} if fault.retry_after is None else {
                    "Retry-After": str(fault.retry_after)}
                text = ('{"jsonrpc":"2.0","error":{"code": 429, "message":"Too many requests for '
                        'a specific RPC call, contact your app developer or support@rpcpool.com.'
                        f'"}}, "id": {json.dumps(ident)} }}')
                return web.Response(status=429, text=text, content_type="application/json",
                                    headers=headers)
            if fault.fault is Fault.NULL:
                return {"jsonrpc": "2.0", "result": None, "id": ident}
            if fault.fault in (Fault.OTHER_TRANSACTION, Fault.UNREADABLE):
                asked = [fault.other or params[0], *params[1:]]
                with self._lock:  # a copy: the ledger caches what it rendered
                    result = copy.deepcopy(self._transaction(asked))
                if fault.fault is Fault.UNREADABLE and result is not None:
                    result["transaction"]["message"].pop("accountKeys", None)
                return {"jsonrpc": "2.0", "result": result, "id": ident}
            code, message, data = _FAULT_ERRORS[fault.fault](self.slot)
            return _error(ident, code, message, data)
        handler = self._methods().get(method)
        if handler is None:
            return _error(ident, -32601, "Method not found")
        try:
            with self._lock:
                result = handler(params)
        except RpcFailure as exc:
            return _error(ident, exc.code, exc.message, exc.data)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            return _error(ident, -32602, f"Invalid params: {exc}")
        return {"jsonrpc": "2.0", "result": result, "id": ident}

    def _methods(self) -> dict[str, Callable[[list[Any]], Any]]:
        return {
            "getHealth": lambda p: "ok",
            "getSlot": lambda p: self.slot,
            "getBlockHeight": lambda p: self.slot,
            "getVersion": lambda p: {"solana-core": "2.2.0-litesvm", "feature-set": 0},
            "getGenesisHash": lambda p: self.genesis_hash,
            "getLatestBlockhash": self._latest_blockhash,
            "getAccountInfo": self._account_info,
            "getSignaturesForAddress": self._signatures_for_address,
            "getTransaction": self._transaction,
            "simulateTransaction": self._simulate,
            "sendTransaction": self._send_transaction,
            "getSignatureStatuses": self._signature_statuses,
            "getFeeForMessage": self._fee_for_message,
            "isBlockhashValid": lambda p: {"context": self._context(),
                                           "value": self._blockhash_ok(str(p[0]))},
            "getBalance": lambda p: {"context": self._context(),
                                     "value": self.svm.get_balance(Pubkey.from_string(p[0])) or 0},
        }

    def _context(self) -> dict[str, Any]:
        return {"slot": self.slot, "apiVersion": "2.2.0"}

    def _latest_blockhash(self, params: list[Any]) -> dict[str, Any]:
        self._blockhashes.setdefault(str(self.svm.latest_blockhash()), self.slot)
        return {"context": self._context(),
                "value": {"blockhash": str(self.svm.latest_blockhash()),
                          "lastValidBlockHeight": self.slot + 150}}

    def _account_info(self, params: list[Any]) -> dict[str, Any]:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        encoding = config.get("encoding", "base64")
        account = self.svm.get_account(Pubkey.from_string(params[0]))
        if account is None:
            return {"context": self._context(), "value": None}
        data = bytes(account.data)
        rendered: Any = [base64.b64encode(data).decode(), "base64"]
        if encoding == "jsonParsed" and str(account.owner) in TOKEN_PROGRAMS and len(data) == 82:
            rendered = {"program": "spl-token", "space": 82, "parsed": _parsed_mint(data)}
        return {"context": self._context(), "value": {
            "data": rendered, "executable": account.executable, "lamports": account.lamports,
            "owner": str(account.owner), "rentEpoch": 18446744073709551615, "space": len(data),
        }}

    def _signatures_for_address(self, params: list[Any]) -> list[dict[str, Any]]:
        address = str(Pubkey.from_string(params[0]))
        config = params[1] if len(params) > 1 and params[1] else {}
        limit = config.get("limit") or 1000
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise RpcFailure(-32602, "Invalid limit; max 1000")
        limit = min(limit, self.page_cap or limit)
        if config.get("minContextSlot", 0) > self.slot:
            raise RpcFailure(-32016, "Minimum context slot has not been reached",
                             {"contextSlot": self.slot})
        entries = self._by_address.get(address, [])
        seqs = [e.seq for e in entries]
        high = len(entries)
        if config.get("before"):
            before = self._by_signature.get(config["before"])
            if before is None:
                return []  # agave: an unknown `before` signature gives an empty answer
            high = bisect.bisect_left(seqs, before.seq)
        low = 0
        if config.get("until"):
            until = self._by_signature.get(config["until"])
            if until is not None:  # an unknown `until` signature searches to the beginning
                low = bisect.bisect_right(seqs, until.seq)
        chosen = entries[max(low, high - limit):high] if high > low else []
        return [{
            "signature": e.signature, "slot": e.slot, "err": e.err, "memo": None,
            "blockTime": e.block_time, "confirmationStatus": "finalized",
        } for e in reversed(chosen)]

    def _transaction(self, params: list[Any]) -> dict[str, Any] | None:
        config = params[1] if len(params) > 1 and params[1] else {}
        if isinstance(config, str):
            config = {"encoding": config}
        encoding = config.get("encoding", "json")
        if encoding not in ("json", "jsonParsed", "base64", "base58"):
            raise RpcFailure(-32602, f"Invalid params: unknown variant `{encoding}`")
        if config.get("commitment") == "processed":
            raise RpcFailure(-32602, "Method does not support commitment below `confirmed`")
        entry = self._by_signature.get(params[0])
        if entry is None:
            return None
        max_version = config.get("maxSupportedTransactionVersion")
        if entry.versioned and max_version is None:
            raise RpcFailure(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                "\"maxSupportedTransactionVersion\": 0",
            )
        return entry.render(encoding, with_version=max_version is not None)


    # --- what a facilitator needs ------------------------------------------------------------

    def _simulate(self, params: list[Any]) -> dict[str, Any]:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        tx = _decode_tx(params[0], config.get("encoding", "base58"))
        value = self._simulated(tx, sig_verify=bool(config.get("sigVerify", False)),
                                replace=bool(config.get("replaceRecentBlockhash", False)))
        return {"context": self._context(), "value": value}

    def _simulated(self, tx: VersionedTransaction, *, sig_verify: bool,
                   replace: bool) -> dict[str, Any]:
        value: dict[str, Any] = {"err": None, "logs": [], "accounts": None, "unitsConsumed": 0,
                                 "returnData": None, "innerInstructions": None,
                                 "replacementBlockhash": None}
        if not replace and not self._blockhash_ok(str(tx.message.recent_blockhash)):
            value["err"] = "BlockhashNotFound"
            return value
        if replace:
            value["replacementBlockhash"] = {"blockhash": str(self.svm.latest_blockhash()),
                                             "lastValidBlockHeight": self.slot + 150}
        if sig_verify and not all(tx.verify_with_results()):
            value["err"] = "SignatureFailure"
            return value
        self.svm.with_sigverify(False)
        try:
            outcome = self.svm.simulate_transaction(tx)
        finally:
            self.svm.with_sigverify(True)
        if isinstance(outcome, FailedTransactionMetadata):
            meta = outcome.meta()
            value["err"] = error_json(outcome.err())
        else:
            meta = outcome.meta()
        value["logs"] = list(meta.logs())
        value["unitsConsumed"] = meta.compute_units_consumed()
        return value

    def _send_transaction(self, params: list[Any]) -> str:
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        tx = _decode_tx(params[0], config.get("encoding", "base58"))
        signature = str(tx.signatures[0])
        self.sent[signature] += 1
        if signature in self._by_signature:
            return signature  # already processed: the cluster keeps one
        if not config.get("skipPreflight", False):
            value = self._simulated(tx, sig_verify=True, replace=False)
            if value["err"] is not None:
                err = value["err"]
                text = "Blockhash not found" if err == "BlockhashNotFound" else json.dumps(err)
                raise RpcFailure(-32002, f"Transaction simulation failed: {text}", value)
        elif not self._blockhash_ok(str(tx.message.recent_blockhash)):
            return signature  # forwarded and dropped by the leaders: it never lands
        if self.hold_sends:
            self.held.append(tx)
            return signature
        self._next_slot()
        try:
            self._execute(tx)
        except TransactionRejected as exc:
            raise RpcFailure(-32003, f"Transaction rejected: {exc}") from None
        return signature

    def _signature_statuses(self, params: list[Any]) -> dict[str, Any]:
        signatures = params[0]
        if not isinstance(signatures, list) or len(signatures) > 256:
            raise RpcFailure(-32602, "Invalid params: too many signatures (at most 256)")
        value: list[dict[str, Any] | None] = []
        for signature in signatures:
            entry = self._by_signature.get(signature)
            if entry is None:
                value.append(None)
                continue
            value.append({"slot": entry.slot, "confirmations": None, "err": entry.err,
                          "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
                          "confirmationStatus": "finalized"})
        return {"context": self._context(), "value": value}

    def _fee_for_message(self, params: list[Any]) -> dict[str, Any]:
        from solders.message import from_bytes_versioned

        msg = from_bytes_versioned(base64.b64decode(params[0]))
        if not self._blockhash_ok(str(msg.recent_blockhash)):
            return {"context": self._context(), "value": None}
        keys = list(msg.account_keys)
        limit, price = 200_000, 0
        for ix in msg.instructions:
            data = bytes(ix.data)
            if str(keys[ix.program_id_index]) != COMPUTE_BUDGET and not data:
                continue
            if str(keys[ix.program_id_index]) == COMPUTE_BUDGET and data[:1] == b"\x02":
                (limit,) = struct.unpack_from("<I", data, 1)
            elif str(keys[ix.program_id_index]) == COMPUTE_BUDGET and data[:1] == b"\x03":
                (price,) = struct.unpack_from("<Q", data, 1)
        fee = LAMPORTS_PER_SIGNATURE * msg.header.num_required_signatures \
            + (limit * price + 999_999) // 1_000_000
        return {"context": self._context(), "value": fee}


COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"


def _decode_tx(text: Any, encoding: str) -> VersionedTransaction:
    if encoding not in ("base58", "base64"):
        raise RpcFailure(-32602, f"Invalid params: unknown encoding {encoding!r}")
    try:
        raw = base64.b64decode(text, validate=True) if encoding == "base64" else \
            bytes(b58decode(text))
        return VersionedTransaction.from_bytes(raw)
    except Exception:
        raise RpcFailure(-32602, "Invalid params: failed to deserialize the transaction") \
            from None


def _inner(ix: Any) -> Inner:
    compiled = ix.instruction()
    return Inner(compiled.program_id_index, tuple(compiled.accounts), bytes(compiled.data),
                 ix.stack_height())


def _parsed_mint(data: bytes) -> dict[str, Any]:
    has_authority, authority, supply, decimals, initialized, has_freeze, freeze = struct.unpack(
        "<I32sQBBI32s", data)
    return {"type": "mint", "info": {
        "decimals": decimals,
        "freezeAuthority": str(Pubkey.from_bytes(freeze)) if has_freeze else None,
        "isInitialized": bool(initialized),
        "mintAuthority": str(Pubkey.from_bytes(authority)) if has_authority else None,
        "supply": str(supply),
    }}


def _error(ident: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": ident}


_FAULT_ERRORS: dict[Fault, Callable[[int], tuple[int, str, Any]]] = {
    Fault.NODE_BEHIND: lambda slot: (-32005, "Node is behind by 42 slots",
                                     {"numSlotsBehind": 42}),
    Fault.SLOT_SKIPPED: lambda slot: (
        -32007, f"Slot {slot} was skipped, or missing due to ledger jump to recent snapshot",
        None),
    Fault.LONG_TERM_SLOT_SKIPPED: lambda slot: (
        -32009, f"Slot {slot} was skipped, or missing in long-term storage", None),
    Fault.UNSUPPORTED_VERSION: lambda slot: (
        -32015, "Transaction version (1) is not supported by the requesting client. Please "
        "try the request again with the following configuration parameter: "
        "\"maxSupportedTransactionVersion\": 1", None),
}
