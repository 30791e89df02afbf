"""Base and Ethereum: USDC Transfer logs to the payees, found with eth_getLogs over block ranges.

The adapter turns RPC answers into Transfer facts and leaves every judgement to verifier.rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import structlog
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct

from verifier import rules
from verifier.config import ChainConfig
from verifier.errors import (
    ConfigError,
    FinalRpcError,
    RangeTooLargeError,
    RetriableRpcError,
    RpcError,
)
from verifier.models import ChainView, Cursor, Lookup, Observed, Transfer
from verifier.rpc.evm import EvmRpc
from verifier.rpc.failover import Endpoint

from .base import ScanResult

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ERC1271_SELECTOR = "0x1626ba7e"
_TOPIC = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{130}$")
GROW_AFTER = 3  # successful getLogs calls before the range doubles again
BLOCK_BATCH = 100

log = structlog.get_logger("verifier.evm")


def topic_for(address: str) -> str:
    return "0x" + "0" * 24 + address[2:]


def address_of(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def transfers_from_logs(chain: str, logs: Sequence[Any]) -> list[Transfer]:
    """ERC-20 Transfer facts from raw eth_getLogs / receipt logs; anything malformed is skipped."""
    out = []
    for entry in logs:
        if not isinstance(entry, dict) or entry.get("removed"):
            continue
        topics = entry.get("topics") or []
        data = entry.get("data") or ""
        if (len(topics) != 3 or str(topics[0]).lower() != TRANSFER_TOPIC
                or not all(isinstance(t, str) and _TOPIC.match(t) for t in topics)
                or not isinstance(data, str) or not _HASH.match(data)):
            continue
        try:
            out.append(Transfer(
                chain=chain,
                tx_hash=entry["transactionHash"].lower(),
                index=int(entry["logIndex"], 16),
                block_number=int(entry["blockNumber"], 16),
                block_hash=entry["blockHash"].lower(),
                from_address=address_of(topics[1]),
                to_address=address_of(topics[2]),
                amount=int(data, 16),
                token=entry["address"].lower(),
            ))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


class EvmAdapter:
    """One EVM chain: its scanning, reorg checks, on-demand lookups and payer proofs."""

    def __init__(self, cfg: ChainConfig, rpc: EvmRpc):
        self.cfg = cfg
        self.chain = cfg.name
        self.rpc = rpc
        self.log_range = cfg.max_log_range
        self._streak = 0
        self._payee_topics = [topic_for(a) for a in cfg.payment_addresses]

    def rpc_stats(self) -> list[tuple[str, dict[str, int]]]:
        return [(e.url, dict(e.stats)) for e in self.rpc.endpoints]

    async def close(self) -> None:
        await self.rpc.close()

    async def startup_check(self) -> None:
        reachable = 0
        for endpoint in self.rpc.endpoints:
            try:
                chain_id = _int(await self.rpc.pool.call_on(
                    endpoint, "eth_chainId", lambda e: self.rpc.request_on(e, "eth_chainId", [])))
            except RpcError as exc:
                log.warning("rpc_unreachable_at_start", chain=self.chain, endpoint=endpoint.url,
                            error=str(exc))
                continue
            reachable += 1
            if chain_id != self.cfg.chain_id:
                raise ConfigError(
                    f"X402_{self.chain.upper()}_RPC_URLS: {endpoint.url} is on chain id {chain_id},"
                    f" expected {self.cfg.chain_id} (X402_{self.chain.upper()}_CHAIN_ID)"
                )
        if not reachable:
            raise RetriableRpcError(f"{self.chain}: no RPC endpoint answered eth_chainId")
        code = await self._hex("eth_getCode", [self.cfg.usdc, "latest"])
        if code == "0x":
            raise ConfigError(
                f"X402_{self.chain.upper()}_USDC_ADDRESS: no contract code at {self.cfg.usdc}"
            )

    async def view(self) -> ChainView:
        calls: list[tuple[str, list[Any]]] = [("eth_blockNumber", []),
                                              ("eth_getBlockByNumber", ["latest", False])]
        if self.cfg.finality != "depth":
            calls.append(("eth_getBlockByNumber", [self.cfg.finality, False]))
        answers = await self.rpc.batch(calls)
        # The head counts only as far as the node shows its block: a garbled eth_blockNumber
        # (too high) must never count as confirmations.
        latest = answers[1].get("number") if isinstance(answers[1], dict) else None
        head = min(_int(answers[0]), _int(latest))
        if self.cfg.finality == "depth":
            return ChainView(head, rules.final_block(head, self.cfg.confirmations))
        tagged = answers[2]
        final = _int(tagged["number"]) if isinstance(tagged, dict) else -1
        return ChainView(head, min(final, head))

    async def initial_cursors(self, start: int | None, view: ChainView) -> list[Cursor]:
        position = start - 1 if start is not None else view.head
        return [Cursor(self.chain, "", position, None)]

    async def scan(self, cursors: Sequence[Cursor], view: ChainView) -> ScanResult:
        cursor = cursors[0]
        first = cursor.position + 1
        if first > view.head:
            return ScanResult([], list(cursors))
        last = min(view.head, first + self.log_range - 1)
        try:
            logs, block = await self.rpc.batch([
                ("eth_getLogs", [{
                    "fromBlock": hex(first),
                    "toBlock": hex(last),
                    "address": self.cfg.usdc,
                    "topics": [TRANSFER_TOPIC, None, self._payee_topics],
                }]),
                ("eth_getBlockByNumber", [hex(last), False]),
            ])
        except RangeTooLargeError:
            self.log_range = max(1, (last - first + 1) // 2)
            self._streak = 0
            log.info("log_range_shrunk", chain=self.chain, range=self.log_range)
            return ScanResult([], list(cursors), done=False)
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            raise RetriableRpcError(f"{self.chain}: node has no block {last} below its head")
        transfers = self._logged_transfers(logs, first, last)
        self._grow()
        payments = rules.payments_from_transfers(transfers, self.cfg.payment_addresses,
                                                 self.cfg.usdc)
        block_hash = str(block["hash"]).lower()
        blocks = {last: block_hash}
        blocks.update({p.block_number: p.block_hash for p in payments if p.block_hash})
        return ScanResult(
            payments=payments,
            cursors=[Cursor(self.chain, "", last, block_hash)],
            blocks=sorted(blocks.items()),
            done=last >= view.head,
        )

    def _logged_transfers(self, logs: Any, first: int, last: int) -> list[Transfer]:
        """eth_getLogs was asked for USDC Transfer logs of blocks first..last: an entry that is
        not one means the answer is corrupt. Skipping it would move the cursor past a payment
        for good; refusing the answer reads the range again."""
        transfers = transfers_from_logs(self.chain, logs) if isinstance(logs, list) else []
        if not isinstance(logs, list) or len(transfers) != len(logs) \
                or any(not first <= t.block_number <= last for t in transfers):
            raise RetriableRpcError(f"{self.chain}: eth_getLogs {first}-{last} answered a "
                                    "malformed or out-of-range log")
        return transfers

    def _grow(self) -> None:
        self._streak += 1
        if self._streak >= GROW_AFTER and self.log_range < self.cfg.max_log_range:
            self.log_range = min(self.cfg.max_log_range, self.log_range * 2)
            self._streak = 0

    async def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        found: dict[int, str | None] = {}
        numbers = list(numbers)
        for i in range(0, len(numbers), BLOCK_BATCH):
            chunk = numbers[i:i + BLOCK_BATCH]
            blocks = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False])
                                           for n in chunk])
            for n, block in zip(chunk, blocks, strict=True):
                if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
                    # Asked only for blocks at or below the head: a node that has no such block
                    # is lagging or broken, which must never be mistaken for a reorg.
                    raise RetriableRpcError(f"{self.chain}: node has no block {n}")
                found[n] = block["hash"].lower()
        return found

    async def lookup(self, tx_hash: str) -> Lookup:
        receipt = await self.rpc.request("eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            return Lookup(None, "not_found")
        if not isinstance(receipt, dict) or str(receipt.get("transactionHash", "")).lower() != tx_hash:
            raise RetriableRpcError(f"{self.chain}: receipt returned for another transaction")
        if _int(receipt.get("status")) != 1:
            return Lookup(None, "failed_tx")
        transfers = self._receipt_transfers(receipt.get("logs"))
        payments = rules.payments_from_transfers(transfers, self.cfg.payment_addresses,
                                                 self.cfg.usdc)
        if payments:
            return Lookup(payments[0], None, await self.view())
        payees = set(self.cfg.payment_addresses)
        if any(t.token == self.cfg.usdc for t in transfers):
            return Lookup(None, "wrong_recipient")
        if any(t.to_address in payees for t in transfers):
            return Lookup(None, "wrong_token")
        return Lookup(None, "no_transfer")

    def _receipt_transfers(self, logs: Any) -> list[Transfer]:
        """A receipt holds every log of the transaction; a USDC Transfer log among them that
        cannot be read means the answer is corrupt (retried), never "no transfer"."""
        if not isinstance(logs, list):
            raise RetriableRpcError(f"{self.chain}: receipt logs are not a list")
        transfers = transfers_from_logs(self.chain, logs)
        usdc_logs = sum(1 for e in logs if isinstance(e, dict) and not e.get("removed")
                        and str(e.get("address", "")).lower() == self.cfg.usdc
                        and isinstance(e.get("topics"), list) and e["topics"]
                        and str(e["topics"][0]).lower() == TRANSFER_TOPIC)
        if usdc_logs != sum(1 for t in transfers if t.token == self.cfg.usdc):
            raise RetriableRpcError(f"{self.chain}: receipt has a malformed USDC Transfer log")
        return transfers

    def proof_offline(self, payer: str, message: str, proof: str | None) -> bool | None:
        """True when the payer's key signed (EIP-191); False for a proof that is no signature;
        None otherwise, as the payer may be a contract wallet (EIP-1271 needs the chain)."""
        if not proof or not _SIGNATURE.match(proof):
            return False
        signature = proof if proof.startswith("0x") else "0x" + proof
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signature)
        except Exception:  # eth_keys raises several types for a bad signature
            signer = None
        if signer is not None and signer.lower() == payer:
            return True
        return None

    async def verify_proof(self, payer: str, message: str, proof: str | None) -> bool:
        """EIP-191 by the payer's key, or EIP-1271 isValidSignature when the payer is a contract."""
        offline = self.proof_offline(payer, message, proof)
        if offline is not None:
            return offline
        assert proof is not None
        return await self._erc1271(payer, message, proof if proof.startswith("0x") else "0x" + proof)

    async def _erc1271(self, wallet: str, message: str, signature: str) -> bool:
        code = await self._hex("eth_getCode", [wallet, "latest"])
        if code == "0x":
            return False
        digest = defunct_hash_message(text=message)
        data = ERC1271_SELECTOR + abi_encode(
            ["bytes32", "bytes"], [bytes(digest), bytes.fromhex(signature[2:])]
        ).hex()
        try:
            result = await self._hex("eth_call", [{"to": wallet, "data": data}, "latest"])
        except FinalRpcError:
            return False  # reverted or refused: not a valid signature
        return result.lower().startswith(ERC1271_SELECTOR) and len(result) >= 66

    async def _hex(self, method: str, params: list[Any]) -> str:
        """A call whose answer is 0x-hex data. Anything else (null...) is the node failing, not
        "no code" or "not valid": retried like any retriable fault."""

        async def op(endpoint: Endpoint) -> str:
            answer = await self.rpc.request_on(endpoint, method, params)
            if not isinstance(answer, str) or not answer.startswith("0x"):
                raise RetriableRpcError(f"{method}: answered {answer!r:.80} instead of hex data",
                                        endpoint=endpoint.url)
            return answer

        return await self.rpc.pool.call(method, op)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise RetriableRpcError(f"expected a hex quantity, got {value!r}")


__all__ = ["EvmAdapter", "Observed", "transfers_from_logs"]
