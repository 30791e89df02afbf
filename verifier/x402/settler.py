"""The settler: one gas key per chain, transactions signed here, nonces from PostgreSQL.

The key comes from ``X402_<CHAIN>_SETTLER_KEY_FILE`` (under systemd, ``LoadCredential=``): a
file readable by its owner only, holding a 0x-hex private key. It is never logged or shown; the
address is. A settlement is signed with a nonce allocated in the database in the same
transaction that stores the signed bytes (verifier.store.settlements), then broadcast; the next
settlement does not wait for the previous receipt (pipelined), and any instance can re-broadcast
the stored bytes of one that has no receipt yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak

from verifier.errors import ConfigError, FinalRpcError, RpcError
from verifier.rpc.client import RpcClient
from verifier.store.settlements import Settlement, SettlementStore

from .wire import Authorization

_VRS = keccak(text="transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,"
                   "uint8,bytes32,bytes32)")[:4]
_BYTES = keccak(text="transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,"
                     "bytes)")[:4]
GWEI = 10**9
FEE_CACHE_SECONDS = 1.0
# Answers of eth_sendRawTransaction that mean "this very transaction is already in": a
# re-broadcast of stored bytes after a crash, or by a second instance.
ALREADY_IN = ("already known", "already imported", "known transaction", "nonce too low",
              "transaction already exists", "replacement transaction underpriced")


class SettlerKey:
    """A private key read from a file only its owner can read. repr/str show the address."""

    def __init__(self, key: bytes):
        self._account = Account.from_key(key)
        self.address = self._account.address.lower()

    def __repr__(self) -> str:
        return f"SettlerKey({self.address})"

    __str__ = __repr__

    def sign(self, tx: dict[str, Any]) -> tuple[str, str]:
        signed = self._account.sign_transaction(tx)
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def read_secret_file(path: Path, variable: str) -> str:
    """The stripped ASCII text of a key file, refused unless it is a regular file that no group
    or other may access (a settler or fee-payer key is money)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{variable}: {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(f"{variable}: {path} is readable or writable by group or others "
                          f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{variable}: cannot read {path}") from None


def load_key(path: Path, variable: str) -> SettlerKey:
    text = read_secret_file(path, variable)
    body = text.removeprefix("0x")
    if len(body) != 64:
        raise ConfigError(f"{variable}: {path} does not hold a 32-byte hex private key")
    try:
        key = bytes.fromhex(body)
        return SettlerKey(key)
    except ValueError:
        raise ConfigError(f"{variable}: {path} does not hold a 32-byte hex private key") from None


def transfer_call(auth: Authorization) -> str:
    """transferWithAuthorization calldata: the (v, r, s) overload for a 65-byte signature, the
    bytes overload (EIP-1271 wallets; FiatTokenV2_2) otherwise."""
    signature = bytes.fromhex(auth.signature[2:])
    head = [auth.payer, auth.to, auth.value, auth.valid_after, auth.valid_before,
            bytes.fromhex(auth.nonce[2:])]
    types = ["address", "address", "uint256", "uint256", "uint256", "bytes32"]
    if len(signature) == 65:
        v = signature[64] + 27 if signature[64] in (0, 1) else signature[64]
        data = _VRS + abi_encode([*types, "uint8", "bytes32", "bytes32"],
                                 [*head, v, signature[:32], signature[32:64]])
    else:
        data = _BYTES + abi_encode([*types, "bytes"], [*head, signature])
    return "0x" + data.hex()


@dataclass(frozen=True)
class Fees:
    max_fee: int
    priority: int


class Settler:
    def __init__(self, chain: str, chain_id: int, usdc: str, rpc: RpcClient, key: SettlerKey, *,
                 gas_limit: int = 150_000, max_fee_gwei: float | None = None):
        self.chain = chain
        self.chain_id = chain_id
        self.usdc = usdc
        self.rpc = rpc
        self.key = key
        self.address = key.address
        self.gas_limit = gas_limit
        self.max_fee = int(max_fee_gwei * GWEI) if max_fee_gwei is not None else None
        self._fees: tuple[float, Fees] | None = None
        self._chain_next: tuple[float, int] | None = None

    async def fees(self) -> Fees:
        """EIP-1559 fees: twice the base fee plus the node's suggested tip, capped by
        X402_<CHAIN>_SETTLER_MAX_FEE_GWEI. Cached a second: a burst of settlements asks once."""
        now = time.monotonic()
        if self._fees and now - self._fees[0] < FEE_CACHE_SECONDS:
            return self._fees[1]
        block, tip = await self.rpc.batch([("eth_getBlockByNumber", ["latest", False]),
                                           ("eth_maxPriorityFeePerGas", [])])
        base = int(block.get("baseFeePerGas") or "0x0", 16) if isinstance(block, dict) else 0
        priority = int(tip, 16) if isinstance(tip, str) else GWEI
        fees = Fees(2 * base + priority, priority)
        if self.max_fee is not None and fees.max_fee > self.max_fee:
            fees = Fees(self.max_fee, min(priority, self.max_fee))
        self._fees = (now, fees)
        return fees

    async def chain_next_nonce(self) -> int:
        """The node's pending transaction count, read at most once a second: the ledger takes
        the larger of it and its own next nonce, so a second-old figure never reuses a nonce
        handed out here; it only lets the key move past transactions sent elsewhere."""
        now = time.monotonic()
        if self._chain_next and now - self._chain_next[0] < FEE_CACHE_SECONDS:
            return self._chain_next[1]
        count = int(await self.rpc.request("eth_getTransactionCount",
                                           [self.address, "pending"]), 16)
        self._chain_next = (now, count)
        return count

    async def mined_nonce(self) -> int:
        """How many of the key's transactions are mined (its 'latest' transaction count)."""
        return int(await self.rpc.request("eth_getTransactionCount", [self.address, "latest"]),
                   16)

    def signer_for(self, auth: Authorization, fees: Fees):  # -> Callable[[int], (raw, hash)]
        data = transfer_call(auth)

        def sign(nonce: int) -> tuple[str, str]:
            return self.key.sign({
                "type": 2, "chainId": self.chain_id, "nonce": nonce, "to": _checksum(self.usdc),
                "value": 0, "data": data, "gas": self.gas_limit,
                "maxFeePerGas": fees.max_fee, "maxPriorityFeePerGas": fees.priority,
            })

        return sign

    async def broadcast(self, raw: str) -> str | None:
        """Sends the stored bytes. None when sent (or already in); the node's refusal otherwise."""
        try:
            await self.rpc.request("eth_sendRawTransaction", [raw])
        except FinalRpcError as exc:
            text = str(exc).lower()
            if any(marker in text for marker in ALREADY_IN):
                return None
            return str(exc)
        return None

    async def receipts(self, tx_hashes: list[str]) -> list[Any]:
        if not tx_hashes:
            return []
        return await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes])

    async def balance(self) -> int | None:
        try:
            return int(await self.rpc.request("eth_getBalance", [self.address, "latest"]), 16)
        except (RpcError, ValueError, TypeError):
            return None


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


async def await_settlement(store: SettlementStore, settlement_id: int,
                           waiters: dict[int, asyncio.Event], *, within: float,
                           poll: float) -> Settlement | None:
    """The settlement once it is mined or failed, or as it stands after ``within`` seconds (a
    tracker sets the settlement's event in ``waiters`` when it moves; the store is read again
    at least every two polls in case a wake-up was missed)."""
    deadline = time.monotonic() + within
    try:
        while True:
            s = await store.get(settlement_id)
            if s is None or s.state in ("mined", "failed"):
                return s
            left = deadline - time.monotonic()
            if left <= 0:
                return s
            event = waiters.setdefault(settlement_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(left, poll * 2))
            event.clear()
    finally:
        waiters.pop(settlement_id, None)
