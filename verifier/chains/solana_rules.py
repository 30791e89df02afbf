"""What a Solana transaction paid, decided from its getTransaction answer alone (no I/O).

The amount is the net change, in the USDC mint, of the token accounts owned by a payee (plus any
token account configured as the operator's), taken from ``meta.preTokenBalances`` and
``meta.postTokenBalances``: an account missing from the pre list was created in the transaction
(0 before), one missing from the post list was closed (0 after). Balances see everything the
transaction did, inner (CPI) instructions included, so no instruction needs decoding to know the
amount. ``accountIndex`` runs over the static keys, then ``loadedAddresses.writable``, then
``.readonly``.

Accepted shapes: the RPC result in encoding ``json`` (keys are strings, loaded keys in
``meta.loadedAddresses``) or ``jsonParsed`` (keys are objects and already include the loaded
ones), and the stored form whose message sits at the top level with ``staticAccountKeys``.
Amounts come from ``uiTokenAmount.amount`` (an integer string); ``uiAmount`` is a float and is
never read. Base58 is compared exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from verifier.models import Observed

CHAIN = "solana"
TOKEN_PROGRAMS = frozenset({
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
})
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
_TRANSFER, _TRANSFER_CHECKED = 3, 12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_HEX_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")


class UnreadableTransaction(ValueError):
    """The answer is not a transaction in a shape these rules read."""


@dataclass(frozen=True)
class Outcome:
    """Exactly one of payment / reason: not_found, failed_tx, wrong_token, wrong_recipient."""

    payment: Observed | None
    reason: str | None


@dataclass(frozen=True)
class TokenDelta:
    index: int
    account: str
    owner: str | None
    mint: str
    pre: int
    post: int

    @property
    def change(self) -> int:
        return self.post - self.pre


@dataclass(frozen=True)
class TokenTransfer:
    """A spl-token Transfer / TransferChecked, top-level or inner, in execution order."""

    source: str
    destination: str
    authority: str


def associated_token_address(owner: str, mint: str, token_program: str) -> str:
    """The owner's associated token account for ``mint`` (a PDA of the ATA program)."""
    seeds = [bytes(Pubkey.from_string(owner)), bytes(Pubkey.from_string(token_program)),
             bytes(Pubkey.from_string(mint))]
    return str(Pubkey.find_program_address(seeds, Pubkey.from_string(ATA_PROGRAM))[0])


def judge_transaction(tx: Mapping[str, Any] | None, *, signature: str, payees: Sequence[str],
                      mint: str, token_accounts: Sequence[str] = ()) -> Outcome:
    """What ``tx`` paid to the payees in ``mint``; a reason when it paid them nothing."""
    if tx is None or tx.get("meta") is None:
        return Outcome(None, "not_found")
    if tx["meta"].get("err") is not None:
        return Outcome(None, "failed_tx")
    deltas = token_deltas(tx)
    payee_set, extra = set(payees), set(token_accounts)
    received: dict[str, int] = {}
    other_mint = False
    for d in deltas:
        to = d.owner if d.owner in payee_set else d.account if d.account in extra else None
        if to is None:
            continue
        if d.mint == mint:
            received[to] = received.get(to, 0) + d.change
        elif d.change > 0:
            other_mint = True
    paid = [(amount, to) for to, amount in received.items() if amount > 0]
    if not paid:
        return Outcome(None, "wrong_token" if other_mint else "wrong_recipient")
    amount, to = max(paid, key=lambda p: (p[0], -_order(p[1], payees, token_accounts)))
    payer = find_payer(tx, deltas, mint, payee_set | extra)
    return Outcome(Observed(chain=CHAIN, tx_hash=signature, block_number=int(tx["slot"]),
                            block_hash=None, from_address=payer, to_address=to, amount=amount),
                   None)


def find_payer(tx: Mapping[str, Any], deltas: Sequence[TokenDelta], mint: str,
               payees: set[str]) -> str:
    """The owner whose balance in ``mint`` fell most; else the authority of the first transfer
    into a payee's account (inner instructions included); else the fee payer."""
    fell: dict[str, int] = {}
    for d in deltas:
        if d.mint == mint and d.owner and d.owner not in payees and d.account not in payees:
            fell[d.owner] = fell.get(d.owner, 0) + d.change
    losers = [(change, owner) for owner, change in fell.items() if change < 0]
    if losers:
        return min(losers, key=lambda c: c[0])[1]
    payee_accounts = {d.account for d in deltas if d.owner in payees or d.account in payees}
    transfers = token_transfers(tx)
    for t in transfers:
        if t.destination in payee_accounts:
            return t.authority
    if transfers:
        return transfers[0].authority
    return account_keys(tx)[0]


def token_deltas(tx: Mapping[str, Any]) -> list[TokenDelta]:
    """Per token account: balance before and after (0 where an entry is missing)."""
    meta = tx["meta"]
    keys = account_keys(tx)
    seen: dict[int, dict[str, Any]] = {}
    for when in ("pre", "post"):
        for entry in meta.get(f"{when}TokenBalances") or ():
            index = int(entry["accountIndex"])
            if not 0 <= index < len(keys):
                raise UnreadableTransaction(f"accountIndex {index} outside the account keys")
            row = seen.setdefault(index, {"pre": 0, "post": 0, "mint": entry["mint"],
                                          "owner": entry.get("owner")})
            row[when] = int(entry["uiTokenAmount"]["amount"])
            row["owner"] = row["owner"] or entry.get("owner")
    return [TokenDelta(i, keys[i], r["owner"], r["mint"], r["pre"], r["post"])
            for i, r in sorted(seen.items())]


def account_keys(tx: Mapping[str, Any]) -> list[str]:
    """Every account of the transaction, in accountIndex order."""
    message = _message(tx)
    raw = message.get("accountKeys")
    if raw is None:
        raw = message.get("staticAccountKeys")
    if not isinstance(raw, list):
        raise UnreadableTransaction("no account keys in the message")
    if raw and isinstance(raw[0], dict):  # jsonParsed: loaded keys are already listed
        return [k["pubkey"] for k in raw]
    loaded = (tx.get("meta") or {}).get("loadedAddresses") or {}
    return list(raw) + list(loaded.get("writable") or ()) + list(loaded.get("readonly") or ())


def token_transfers(tx: Mapping[str, Any]) -> list[TokenTransfer]:
    """Transfer / TransferChecked instructions, each top-level one followed by its inner ones."""
    keys = account_keys(tx)
    inner: dict[int, list[Any]] = {}
    for group in (tx.get("meta") or {}).get("innerInstructions") or ():
        inner.setdefault(int(group["index"]), []).extend(group.get("instructions") or ())
    found = []
    for index, top in enumerate(_message(tx).get("instructions") or ()):
        for ix in (top, *inner.get(index, ())):
            transfer = _as_transfer(ix, keys)
            if transfer is not None:
                found.append(transfer)
    return found


def _as_transfer(ix: Mapping[str, Any], keys: list[str]) -> TokenTransfer | None:
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
        return TokenTransfer(info["source"], info["destination"], authority)
    accounts = [keys[a] if isinstance(a, int) else a for a in ix.get("accounts") or ()]
    data = b58decode(ix.get("data") or "")
    if data[:1] == bytes([_TRANSFER]) and len(accounts) >= 3:
        return TokenTransfer(accounts[0], accounts[1], accounts[2])
    if data[:1] == bytes([_TRANSFER_CHECKED]) and len(accounts) >= 4:
        return TokenTransfer(accounts[0], accounts[2], accounts[3])
    return None


def _message(tx: Mapping[str, Any]) -> Mapping[str, Any]:
    body = tx.get("transaction")
    if isinstance(body, dict):
        return body.get("message") or {}
    if body is None and isinstance(tx.get("message"), dict):
        return tx["message"]  # the stored form: message at the top level
    raise UnreadableTransaction("transaction is not in json or jsonParsed encoding")


def _order(to: str, payees: Sequence[str], token_accounts: Sequence[str]) -> int:
    listed = list(payees) + list(token_accounts)
    return listed.index(to) if to in listed else len(listed)


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise UnreadableTransaction(f"{char!r} is not base58")
        number = number * 58 + _B58_INDEX[char]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def decode_proof(proof: str) -> bytes | None:
    """A 64-byte ed25519 signature written in base58 (as Solana wallets give it) or in hex
    (128 digits, optional 0x); None when it is neither."""
    proof = proof.strip()
    if _HEX_SIGNATURE.match(proof):
        return bytes.fromhex(proof.removeprefix("0x"))
    try:
        raw = b58decode(proof)
    except UnreadableTransaction:
        return None
    return raw if len(raw) == 64 else None


def verify_ed25519(payer: str, message: bytes, proof: str) -> bool:
    """True when ``proof`` is the payer's ed25519 signature over ``message``."""
    raw = decode_proof(proof)
    if raw is None:
        return False
    try:
        key = Pubkey.from_string(payer)
    except ValueError:
        return False
    return Signature.from_bytes(raw).verify(key, message)


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
