"""What a Solana RPC node remembers about executed transactions, and how it shows them.

LiteSVM executes transactions but keeps no history an RPC node could serve, so the test server
records one ``Landed`` entry per transaction it executes (slot, error, balances before and after,
inner instructions, logs) and renders it in the documented getTransaction shapes: encoding
``json`` (compiled instructions, ``meta.loadedAddresses``) and ``jsonParsed`` (account key
objects, parsed spl-token / associated-token-account / system instructions, the agave fallback
for other programs). Shapes follow agave's transaction-status crate (parse_token.rs,
parse_associated_token.rs, parse_system.rs) and the RPC documentation in
shared/data/solana/rpc_shapes_and_errors.json.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from solders.message import Message, MessageV0, MessageV1
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
SYSTEM_PROGRAM = "11111111111111111111111111111111"
TOKEN_PROGRAMS = (TOKEN_PROGRAM, TOKEN_2022_PROGRAM)
TOKEN_ACCOUNT_LEN = 165

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rest = divmod(number, 58)
        out.append(_B58[rest])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


@dataclass(frozen=True)
class TokenBalance:
    index: int
    mint: str
    owner: str
    program: str
    amount: int
    decimals: int

    def to_json(self) -> dict[str, Any]:
        return {
            "accountIndex": self.index,
            "mint": self.mint,
            "owner": self.owner,
            "programId": self.program,
            "uiTokenAmount": ui_token_amount(self.amount, self.decimals),
        }


@dataclass(frozen=True)
class Inner:
    """One instruction run through CPI: indexes into the full key list, as agave records it."""

    program_index: int
    accounts: tuple[int, ...]
    data: bytes
    stack_height: int


@dataclass
class Landed:
    """A transaction as the ledger keeps it once it has landed in a slot."""

    seq: int
    signature: str
    slot: int
    block_time: int
    tx: Transaction | VersionedTransaction
    keys: list[str]  # static keys, then loaded writable, then loaded readonly
    loaded_writable: list[str]
    loaded_readonly: list[str]
    err: Any  # None, or a TransactionError in its JSON shape
    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    pre_tokens: list[TokenBalance]
    post_tokens: list[TokenBalance]
    inner: list[list[Inner]]  # per top-level instruction
    logs: list[str]
    compute_units: int
    rendered: dict[tuple[str, bool], dict[str, Any]] = field(default_factory=dict)

    @property
    def versioned(self) -> bool:
        return isinstance(self.message, MessageV0)

    @property
    def message(self) -> Message | MessageV0 | MessageV1:
        return self.tx.message

    def render(self, encoding: str, with_version: bool) -> dict[str, Any]:
        key = (encoding, with_version)
        if key not in self.rendered:
            self.rendered[key] = render(self, encoding, with_version)
        return self.rendered[key]


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    text = format(Decimal(amount).scaleb(-decimals), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": float(text),
        "uiAmountString": text,
    }


def error_json(err: Any) -> Any:
    """A solders TransactionError in the JSON shape RPC nodes use."""
    name = type(err).__name__
    if name == "TransactionErrorInstructionError":
        return {"InstructionError": [err.index, _instruction_error_json(err.err)]}
    if name == "TransactionErrorInsufficientFundsForRent":
        return {"InsufficientFundsForRent": {"account_index": err.account_index}}
    if name == "TransactionErrorDuplicateInstruction":
        return {"DuplicateInstruction": err.index}
    return str(err).rsplit(".", 1)[-1]


def _instruction_error_json(err: Any) -> Any:
    name = type(err).__name__
    if name == "InstructionErrorCustom":
        return {"Custom": err.code}
    if name == "InstructionErrorBorshIO":
        return {"BorshIoError": err.value}
    return str(err).rsplit(".", 1)[-1]


# --- rendering -------------------------------------------------------------------------------


def render(entry: Landed, encoding: str, with_version: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "slot": entry.slot,
        "blockTime": entry.block_time,
        "meta": _meta(entry, parsed=encoding == "jsonParsed"),
    }
    if encoding in ("base64", "base58"):
        raw = bytes(entry.tx)
        text = base64.b64encode(raw).decode() if encoding == "base64" else b58encode(raw)
        result["transaction"] = [text, encoding]
    else:
        result["transaction"] = {
            "signatures": [str(s) for s in entry.tx.signatures],
            "message": _parsed_message(entry) if encoding == "jsonParsed" else _raw_message(entry),
        }
    if with_version:
        result["version"] = 0 if entry.versioned else "legacy"
    return result


def _meta(entry: Landed, *, parsed: bool) -> dict[str, Any]:
    inner = []
    for index, group in enumerate(entry.inner):
        if group:
            inner.append({
                "index": index,
                "instructions": [_instruction(entry, ix.program_index, ix.accounts, ix.data,
                                              ix.stack_height, parsed) for ix in group],
            })
    meta: dict[str, Any] = {
        "err": entry.err,
        "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
        "fee": entry.fee,
        "preBalances": entry.pre_balances,
        "postBalances": entry.post_balances,
        "innerInstructions": inner,
        "logMessages": entry.logs,
        "preTokenBalances": [b.to_json() for b in entry.pre_tokens],
        "postTokenBalances": [b.to_json() for b in entry.post_tokens],
        "rewards": [],
        "computeUnitsConsumed": entry.compute_units,
    }
    if not parsed:  # jsonParsed lists loaded keys in accountKeys (source lookupTable) instead
        meta["loadedAddresses"] = {
            "writable": entry.loaded_writable,
            "readonly": entry.loaded_readonly,
        }
    return meta


def _raw_message(entry: Landed) -> dict[str, Any]:
    msg = entry.message
    header = msg.header
    out: dict[str, Any] = {
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "accountKeys": [str(k) for k in msg.account_keys],
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [
            _instruction(entry, ix.program_id_index, tuple(ix.accounts), bytes(ix.data), None,
                         parsed=False)
            for ix in msg.instructions
        ],
    }
    if entry.versioned:
        out["addressTableLookups"] = _lookups(msg)
    return out


def _parsed_message(entry: Landed) -> dict[str, Any]:
    msg = entry.message
    out: dict[str, Any] = {
        "accountKeys": _key_objects(entry),
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [
            _instruction(entry, ix.program_id_index, tuple(ix.accounts), bytes(ix.data), None,
                         parsed=True)
            for ix in msg.instructions
        ],
    }
    if entry.versioned:
        out["addressTableLookups"] = _lookups(msg)
    return out


def _lookups(msg: Any) -> list[dict[str, Any]]:
    return [
        {
            "accountKey": str(lookup.account_key),
            "writableIndexes": list(lookup.writable_indexes),
            "readonlyIndexes": list(lookup.readonly_indexes),
        }
        for lookup in msg.address_table_lookups
    ]


def _key_objects(entry: Landed) -> list[dict[str, Any]]:
    msg = entry.message
    header = msg.header
    static = len(msg.account_keys)
    signed = header.num_required_signatures
    invoked = {ix.program_id_index for ix in msg.instructions}
    keys = []
    for i, key in enumerate(entry.keys):
        if i < static:
            if i < signed:
                writable = i < signed - header.num_readonly_signed_accounts
            else:
                writable = i < static - header.num_readonly_unsigned_accounts
            writable = writable and i not in invoked
            keys.append({"pubkey": key, "signer": i < signed, "writable": writable,
                         "source": "transaction"})
        else:
            keys.append({"pubkey": key, "signer": False,
                         "writable": i < static + len(entry.loaded_writable),
                         "source": "lookupTable"})
    return keys


def _instruction(entry: Landed, program_index: int, accounts: tuple[int, ...], data: bytes,
                 stack_height: int | None, parsed: bool) -> dict[str, Any]:
    if not parsed:
        return {"programIdIndex": program_index, "accounts": list(accounts),
                "data": b58encode(data), "stackHeight": stack_height}
    program = entry.keys[program_index]
    names = [entry.keys[a] for a in accounts]
    decoded = parse_instruction(program, names, data)
    if decoded is None:
        return {"programId": program, "accounts": names, "data": b58encode(data),
                "stackHeight": stack_height}
    label, kind, info = decoded
    return {"program": label, "programId": program, "parsed": {"type": kind, "info": info},
            "stackHeight": stack_height}


# --- instruction parsers (agave transaction-status, the cases these tests produce) -----------


def parse_instruction(program: str, accounts: list[str], data: bytes
                      ) -> tuple[str, str, dict[str, Any]] | None:
    try:
        if program in TOKEN_PROGRAMS:
            found = _parse_token(accounts, data)
            return None if found is None else ("spl-token", *found)
        if program == ATA_PROGRAM:
            found = _parse_ata(accounts, data)
            return None if found is None else ("spl-associated-token-account", *found)
        if program == SYSTEM_PROGRAM:
            found = _parse_system(accounts, data)
            return None if found is None else ("system", *found)
    except (IndexError, struct.error):
        return None  # agave falls back to the undecoded form on a malformed instruction
    return None


def _signers(info: dict[str, Any], accounts: list[str], last_nonsigner: int, owner_field: str,
             multisig_field: str) -> dict[str, Any]:
    """parse_signers: extra trailing accounts mean a multisig authority plus its signers."""
    if len(accounts) > last_nonsigner + 2:
        info[multisig_field] = accounts[last_nonsigner + 1]
        info["signers"] = accounts[last_nonsigner + 2:]
    else:
        info[owner_field] = accounts[last_nonsigner + 1]
    return info


def _parse_token(accounts: list[str], data: bytes) -> tuple[str, dict[str, Any]] | None:
    tag = data[0]
    info: dict[str, Any]
    if tag == 3:
        (amount,) = struct.unpack_from("<Q", data, 1)
        info = {"source": accounts[0], "destination": accounts[1], "amount": str(amount)}
        return "transfer", _signers(info, accounts, 1, "authority", "multisigAuthority")
    if tag == 12:
        amount, decimals = struct.unpack_from("<QB", data, 1)
        info = {"source": accounts[0], "mint": accounts[1], "destination": accounts[2],
                "tokenAmount": ui_token_amount(amount, decimals)}
        return "transferChecked", _signers(info, accounts, 2, "authority", "multisigAuthority")
    if tag == 7:
        (amount,) = struct.unpack_from("<Q", data, 1)
        info = {"mint": accounts[0], "account": accounts[1], "amount": str(amount)}
        return "mintTo", _signers(info, accounts, 1, "mintAuthority", "multisigMintAuthority")
    if tag == 9:
        info = {"account": accounts[0], "destination": accounts[1]}
        return "closeAccount", _signers(info, accounts, 1, "owner", "multisigOwner")
    if tag == 18:
        return "initializeAccount3", {"account": accounts[0], "mint": accounts[1],
                                      "owner": str(Pubkey.from_bytes(data[1:33]))}
    if tag == 21:
        return "getAccountDataSize", {"mint": accounts[0]}
    if tag == 22:
        return "initializeImmutableOwner", {"account": accounts[0]}
    return None


def _parse_ata(accounts: list[str], data: bytes) -> tuple[str, dict[str, Any]] | None:
    tag = data[0] if data else 0
    if tag in (0, 1):
        return ("create" if tag == 0 else "createIdempotent"), {
            "source": accounts[0], "account": accounts[1], "wallet": accounts[2],
            "mint": accounts[3], "systemProgram": accounts[4], "tokenProgram": accounts[5],
        }
    if tag == 2:
        return "recoverNested", {
            "nestedSource": accounts[0], "nestedMint": accounts[1], "destination": accounts[2],
            "nestedOwner": accounts[3], "ownerMint": accounts[4], "wallet": accounts[5],
            "tokenProgram": accounts[6],
        }
    return None


def _parse_system(accounts: list[str], data: bytes) -> tuple[str, dict[str, Any]] | None:
    (tag,) = struct.unpack_from("<I", data, 0)
    if tag == 0:
        lamports, space = struct.unpack_from("<QQ", data, 4)
        return "createAccount", {"source": accounts[0], "newAccount": accounts[1],
                                 "lamports": lamports, "space": space,
                                 "owner": str(Pubkey.from_bytes(data[20:52]))}
    if tag == 1:
        return "assign", {"account": accounts[0], "owner": str(Pubkey.from_bytes(data[4:36]))}
    if tag == 2:
        (lamports,) = struct.unpack_from("<Q", data, 4)
        return "transfer", {"source": accounts[0], "destination": accounts[1],
                            "lamports": lamports}
    if tag == 8:
        (space,) = struct.unpack_from("<Q", data, 4)
        return "allocate", {"account": accounts[0], "space": space}
    return None
