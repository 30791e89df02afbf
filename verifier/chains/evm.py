"""Base and Ethereum: USDC Transfer logs to the payees, found with eth_getLogs over block ranges,
and the AuthorizationUsed logs (EIP-3009) of their senders, which make a payment x402 "exact".

The adapter only fetches: verifier.chains.evm_decode turns the answers into facts and
verifier.rules judges them.
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
    UnreadableAnswer,
)
from verifier.models import AuthorizationUse, ChainView, Cursor, Lookup, Observed, Transfer
from verifier.rpc.client import RpcClient
from verifier.rpc.failover import Endpoint

from .base import ScanResult
from .evm_decode import (
    AUTHORIZATION_USED_TOPIC,
    TRANSFER_TOPIC,
    logged_authorizations,
    logged_transfers,
    receipt_facts,
    topic_for,
)

ERC1271_SELECTOR = "0x1626ba7e"
_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{130}$")
GROW_AFTER = 3  # successful getLogs calls before the range doubles again
BLOCK_BATCH = 100
AUTHORIZERS_PER_QUERY = 100  # topic alternatives per eth_getLogs filter (providers cap them)

log = structlog.get_logger("verifier.evm")


class EvmAdapter:
    """One EVM chain: its scanning, reorg checks, on-demand lookups and payer proofs."""

    def __init__(self, cfg: ChainConfig, rpc: RpcClient):
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
        final = _int(tagged.get("number")) if isinstance(tagged, dict) else -1
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
        try:
            transfers = logged_transfers(self.chain, logs, first, last)
        except UnreadableAnswer as exc:
            raise RetriableRpcError(str(exc)) from exc
        try:
            authorizations = await self._authorizations(transfers)
        except RangeTooLargeError:
            self.log_range = max(1, (last - first + 1) // 2)
            self._streak = 0
            log.info("log_range_shrunk", chain=self.chain, range=self.log_range)
            return ScanResult([], list(cursors), done=False)
        self._grow()
        payments = rules.payments_from_transfers(transfers, self.cfg.payment_addresses,
                                                 self.cfg.usdc, authorizations)
        block_hash = str(block["hash"]).lower()
        blocks = {last: block_hash}
        blocks.update({p.block_number: p.block_hash for p in payments if p.block_hash})
        return ScanResult(
            payments=payments,
            cursors=[Cursor(self.chain, "", last, block_hash)],
            blocks=sorted(blocks.items()),
            done=last >= view.head,
        )

    async def _authorizations(self, transfers: Sequence[Transfer]) -> list[AuthorizationUse]:
        """The AuthorizationUsed logs (EIP-3009) of the senders of these transfers, over the
        blocks they are in: what tells an x402 "exact" payment (rules.authorized). Asked only
        when a range paid the payees, and only for those senders, so an x402-busy chain costs
        one more eth_getLogs per paying range, not a log per authorization anyone used."""
        senders = sorted({t.from_address for t in transfers
                          if t.from_address not in self.cfg.payment_addresses})
        if not senders:
            return []
        low = min(t.block_number for t in transfers)
        high = max(t.block_number for t in transfers)
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getLogs", [{
                "fromBlock": hex(low),
                "toBlock": hex(high),
                "address": self.cfg.usdc,
                "topics": [AUTHORIZATION_USED_TOPIC,
                           [topic_for(a) for a in senders[i:i + AUTHORIZERS_PER_QUERY]]],
            }])
            for i in range(0, len(senders), AUTHORIZERS_PER_QUERY)
        ]
        answers = await self.rpc.batch(calls)
        try:
            found = [a for logs in answers for a in logged_authorizations(logs, low, high)]
        except UnreadableAnswer as exc:
            raise RetriableRpcError(f"{self.chain}: {exc}") from exc
        # Two calls, two moments: a block replaced in between would pair logs of two chains.
        blocks = {t.tx_hash: t.block_hash for t in transfers}
        if any(a.tx_hash in blocks and blocks[a.tx_hash] != a.block_hash for a in found):
            raise RetriableRpcError(f"{self.chain}: AuthorizationUsed logs from another block "
                                    "than their transaction's transfers (reorg in between)")
        return found

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
        try:
            facts = receipt_facts(self.chain, receipt, tx_hash, self.cfg.usdc)
        except UnreadableAnswer as exc:
            raise RetriableRpcError(str(exc)) from exc
        verdict = rules.judge_transaction(facts, self.cfg.payment_addresses, self.cfg.usdc)
        if isinstance(verdict, Observed):
            return Lookup(verdict, None, await self.view())
        return Lookup(None, verdict)

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


__all__ = ["EvmAdapter", "Observed"]
