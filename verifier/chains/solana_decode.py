"""Solana answers turned into facts, with no I/O: a getTransaction answer into the facts of its
transaction, a getSignaturesForAddress page into what a cursor has not yet seen.

The facts of a transaction are the net change of every token account it touched, taken from
``meta.preTokenBalances`` and ``meta.postTokenBalances`` (an account missing from the pre list
was created in the transaction, 0 before; one missing from the post list was closed, 0 after),
its token instructions (top-level and inner), its signers and whether it failed. Balances see
everything the transaction did, inner (CPI) instructions included, so no instruction needs
decoding to know an amount. ``accountIndex`` runs over the static keys, then
``loadedAddresses.writable``, then ``.readonly``.

Accepted shapes: the RPC result in encoding ``json`` (keys are strings, loaded keys in
``meta.loadedAddresses``) or ``jsonParsed`` (keys are objects and already include the loaded
ones), and the stored form whose message sits at the top level with ``staticAccountKeys``.
Amounts come from ``uiTokenAmount.amount`` (an integer string); ``uiAmount`` is a float and is
never read. Base58 is compared exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from verifier.errors import UnreadableAnswer
from verifier.models import BalanceChange, TokenMove, TxFacts

CHAIN = "solana"
TOKEN_PROGRAMS = frozenset({
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
})
_TRANSFER, _TRANSFER_CHECKED = 3, 12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


class UnreadableTransaction(UnreadableAnswer, ValueError):
    """The answer is not a transaction in a shape these decoders read."""


def transaction_facts(tx: Mapping[str, Any] | None, signature: str) -> TxFacts | None:
    """The facts of the transaction ``signature``; None when the answer does not hold it yet
    (null, or no ``meta``): the node may not have it, which never means "not paid"."""
    if tx is None or tx.get("meta") is None:
        return None
    failed = tx["meta"].get("err") is not None
    return TxFacts(CHAIN, signature, int(tx["slot"]), None, failed=failed,
                   balances=tuple(balance_changes(tx)), moves=tuple(token_moves(tx)),
                   signers=tuple(signers(tx)), svm_exact=x402_exact_layout(tx))


_COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"
_OPTIONAL = ("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
             "L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95")


def x402_exact_layout(tx: Mapping[str, Any]) -> bool:
    """The layout of an x402 "exact" SVM payment (the reference facilitator's static path):
    SetComputeUnitLimit, SetComputeUnitPrice, one token TransferChecked, then only Memo or
    Lighthouse, 3..7 instructions, and a fee payer that is not the transfer's authority (a
    facilitator paid the fee). Any facilitator's settlement has it."""
    keys = account_keys(tx)
    top = list(_message(tx).get("instructions") or ())
    if not 3 <= len(top) <= 7:
        return False

    def program(ix: Mapping[str, Any]) -> Any:
        if ix.get("programId") is not None:
            return ix["programId"]
        index = ix.get("programIdIndex")
        return keys[int(index)] if isinstance(index, int) and 0 <= index < len(keys) else None

    if program(top[0]) != _COMPUTE_BUDGET or program(top[1]) != _COMPUTE_BUDGET:
        return False
    if any(program(ix) not in _OPTIONAL for ix in top[3:]):
        return False
    transfer = top[2]
    parsed = transfer.get("parsed")
    if isinstance(parsed, dict):
        checked = parsed.get("type") == "transferChecked"
    else:
        checked = b58decode(transfer.get("data") or "")[:1] == bytes([_TRANSFER_CHECKED])
    move = _as_move(transfer, keys)
    fee_payer = next(iter(signers(tx)), None)
    return checked and move is not None and move.authority != fee_payer


def first_signature(tx: Mapping[str, Any]) -> str:
    """The signature a getTransaction answer is about: ``transaction.signatures[0]`` (the
    stored form: ``signature``). A transaction's first signature is its id."""
    body = tx.get("transaction")
    found = body.get("signatures") if isinstance(body, dict) else None
    if found is None and body is None:
        found = [tx.get("signature")]  # the stored form
    if not isinstance(found, list) or not found or not isinstance(found[0], str):
        raise UnreadableTransaction("no signatures in the transaction")
    return found[0]


def balance_changes(tx: Mapping[str, Any]) -> list[BalanceChange]:
    """Per token account, in accountIndex order: its balance after minus before."""
    keys = account_keys(tx)
    seen: dict[int, dict[str, Any]] = {}
    for when in ("pre", "post"):
        for entry in tx["meta"].get(f"{when}TokenBalances") or ():
            index = int(entry["accountIndex"])
            if not 0 <= index < len(keys):
                raise UnreadableTransaction(f"accountIndex {index} outside the account keys")
            row = seen.setdefault(index, {"pre": 0, "post": 0, "mint": entry["mint"],
                                          "owner": entry.get("owner")})
            row[when] = int(entry["uiTokenAmount"]["amount"])
            row["owner"] = row["owner"] or entry.get("owner")
    return [BalanceChange(keys[i], r["owner"], r["mint"], r["post"] - r["pre"])
            for i, r in sorted(seen.items())]


def account_keys(tx: Mapping[str, Any]) -> list[str]:
    """Every account of the transaction, in accountIndex order."""
    raw = _raw_keys(tx)
    if raw and isinstance(raw[0], dict):  # jsonParsed: loaded keys are already listed
        return [k["pubkey"] for k in raw]
    loaded = (tx.get("meta") or {}).get("loadedAddresses") or {}
    return list(raw) + list(loaded.get("writable") or ()) + list(loaded.get("readonly") or ())


def signers(tx: Mapping[str, Any]) -> list[str]:
    """The accounts that signed, fee payer first."""
    raw = _raw_keys(tx)
    if raw and isinstance(raw[0], dict):
        return [k["pubkey"] for k in raw if k.get("signer")]
    header = _message(tx).get("header") or {}
    return list(raw[:max(1, int(header.get("numRequiredSignatures") or 1))])


def _raw_keys(tx: Mapping[str, Any]) -> list[Any]:
    message = _message(tx)
    raw = message.get("accountKeys")
    if raw is None:
        raw = message.get("staticAccountKeys")
    if not isinstance(raw, list):
        raise UnreadableTransaction("no account keys in the message")
    return raw


def token_moves(tx: Mapping[str, Any]) -> list[TokenMove]:
    """Transfer / TransferChecked instructions, each top-level one followed by its inner ones."""
    keys = account_keys(tx)
    inner: dict[int, list[Any]] = {}
    for group in (tx.get("meta") or {}).get("innerInstructions") or ():
        inner.setdefault(int(group["index"]), []).extend(group.get("instructions") or ())
    found = []
    for index, top in enumerate(_message(tx).get("instructions") or ()):
        for ix in (top, *inner.get(index, ())):
            move = _as_move(ix, keys)
            if move is not None:
                found.append(move)
    return found


def _as_move(ix: Mapping[str, Any], keys: list[str]) -> TokenMove | None:
    program = ix.get("programId")
    if program is None and "programIdIndex" in ix:
        program = keys[int(ix["programIdIndex"])]
    if program not in TOKEN_PROGRAMS:
        return None
    parsed = ix.get("parsed")
    if isinstance(parsed, dict):
        if parsed.get("type") not in ("transfer", "transferChecked"):
            return None
        info = parsed["info"]
        authority = info.get("authority") or info.get("multisigAuthority")
        amount = (info.get("tokenAmount") or {}).get("amount") or info.get("amount") or 0
        return TokenMove(info["source"], info["destination"], authority, int(amount))
    accounts = [keys[a] if isinstance(a, int) else a for a in ix.get("accounts") or ()]
    data = b58decode(ix.get("data") or "")
    amount = int.from_bytes(data[1:9], "little")
    if data[:1] == bytes([_TRANSFER]) and len(accounts) >= 3:
        return TokenMove(accounts[0], accounts[1], accounts[2], amount)
    if data[:1] == bytes([_TRANSFER_CHECKED]) and len(accounts) >= 4:
        return TokenMove(accounts[0], accounts[2], accounts[3], amount)
    return None


def _message(tx: Mapping[str, Any]) -> Mapping[str, Any]:
    body = tx.get("transaction")
    if isinstance(body, dict):
        return body.get("message") or {}
    if body is None and isinstance(tx.get("message"), dict):
        return tx["message"]  # the stored form: message at the top level
    raise UnreadableTransaction("transaction is not in json or jsonParsed encoding")


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise UnreadableTransaction(f"{char!r} is not base58")
        number = number * 58 + _B58_INDEX[char]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def newest_first_until(page: Iterable[Mapping[str, Any]], marker: str | None,
                       position: int) -> tuple[list[Mapping[str, Any]], bool]:
    """Cuts one getSignaturesForAddress page (newest first) at what a cursor already covers.

    With a marker, everything newer than it is new (the node's ``until`` does the same; the slot
    test also stops a node that does not know the marker from paging to genesis). Without one,
    slots after ``position`` are new. Returns the new entries and whether the cursor was met.
    """
    fresh: list[Mapping[str, Any]] = []
    for entry in page:
        if entry["signature"] == marker:
            return fresh, True
        slot = int(entry["slot"])
        if slot < position or (marker is None and slot == position):
            return fresh, True
        fresh.append(entry)
    return fresh, False
