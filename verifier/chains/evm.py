"""Base and Ethereum: USDC Transfer logs to the payees, found with eth_getLogs over block ranges,
and the AuthorizationUsed logs (EIP-3009) of their senders, which make a payment x402 "exact".

The adapter only fetches: verifier.chains.evm_decode turns the answers into facts and
verifier.rules judges them. Every request carries eth_chainId in its JSON-RPC batch: an answer
is used only when the same request shows the configured chain (an endpoint that starts serving
another chain is a WrongChainError, dropped by the failover pool until it comes back). A log's
or a receipt's block hash is checked against the block itself, on the same endpoint: an answer
that contradicts itself is a fault of that endpoint, never a reorg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from verifier import rules
from verifier.config import ChainConfig
from verifier.errors import (
    ConfigError,
    ExecutionReverted,
    RangeTooLargeError,
    RetriableRpcError,
    RpcError,
    UnreadableAnswer,
    WrongChainError,
)
from verifier.models import AuthorizationUse, ChainView, Cursor, Lookup, Observed, Transfer
from verifier.rpc.client import Call, RpcClient, batch_label
from verifier.rpc.failover import Endpoint

from . import evm_signatures
from .base import ScanResult
from .evm_decode import (
    AUTHORIZATION_USED_TOPIC,
    TRANSFER_TOPIC,
    hex_quantity,
    logged_authorizations,
    logged_transfers,
    receipt_facts,
    sender_of,
    topic_for,
)

GROW_AFTER = 3  # successful getLogs calls before the range doubles again
BLOCK_BATCH = 100
CHAIN_ID: Call = ("eth_chainId", [])
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
        return [(e.name, dict(e.stats)) for e in self.rpc.endpoints]

    async def close(self) -> None:
        await self.rpc.close()

    async def startup_check(self) -> None:
        reachable = 0
        for endpoint in self.rpc.endpoints:
            try:
                chain_id = _int(await self.rpc.pool.call_on(
                    endpoint, "eth_chainId", lambda e: self.rpc.request_on(e, "eth_chainId", [])))
            except RpcError as exc:
                log.warning("rpc_unreachable_at_start", chain=self.chain, endpoint=endpoint.name,
                            error=str(exc))
                continue
            reachable += 1
            if chain_id != self.cfg.chain_id:
                raise ConfigError(
                    f"X402_{self.chain.upper()}_RPC_URLS: {endpoint.name} is on chain id {chain_id},"
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
        calls: list[Call] = [("eth_blockNumber", []), ("eth_getBlockByNumber", ["latest", False])]
        if self.cfg.finality != "depth":
            calls.append(("eth_getBlockByNumber", [self.cfg.finality, False]))
        answers = await self._batch(calls)
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
            transfers, hashes = await self.rpc.pool.call(
                "batch:eth_chainId,eth_getBlockByNumber,eth_getLogs",
                lambda e: self._logs_on(e, first, last), checks_chain=True)
        except RangeTooLargeError:
            self.log_range = max(1, (last - first + 1) // 2)
            self._streak = 0
            log.info("log_range_shrunk", chain=self.chain, range=self.log_range)
            return ScanResult([], list(cursors), done=False)
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
        return ScanResult(
            payments=payments,
            cursors=[Cursor(self.chain, "", last, hashes[last])],
            blocks=sorted(hashes.items()),
            done=last >= view.head,
        )

    async def _logs_on(self, endpoint: Endpoint, first: int, last: int
                       ) -> tuple[list[Transfer], dict[int, str]]:
        """The Transfer logs of blocks first..last and the hashes of the blocks they are in
        (and of ``last``), all from ``endpoint``. A log whose block hash is not its block's
        is an answer contradicting itself: a retriable fault of the endpoint, not a reorg (the
        hash would be remembered, and every later check would find it "gone")."""
        logs, block = await self._batch_on(endpoint, [
            ("eth_getLogs", [{
                "fromBlock": hex(first),
                "toBlock": hex(last),
                "address": self.cfg.usdc,
                "topics": [TRANSFER_TOPIC, None, self._payee_topics],
            }]),
            ("eth_getBlockByNumber", [hex(last), False]),
        ])
        hashes = {last: self._hash_of(endpoint, last, block)}
        try:
            transfers = logged_transfers(self.chain, logs, first, last)
        except UnreadableAnswer as exc:
            raise RetriableRpcError(str(exc), endpoint=endpoint.name) from exc
        hashes.update(await self._hashes_on(endpoint, {t.block_number for t in transfers}
                                            - hashes.keys()))
        for t in transfers:
            if t.block_hash != hashes[t.block_number]:
                raise RetriableRpcError(
                    f"{self.chain}: eth_getLogs gave block {t.block_number} the hash "
                    f"{t.block_hash}, the block has {hashes[t.block_number]}",
                    endpoint=endpoint.name)
        return transfers, hashes

    async def _hashes_on(self, endpoint: Endpoint, numbers: Iterable[int]) -> dict[int, str]:
        numbers = sorted(numbers)
        found: dict[int, str] = {}
        for i in range(0, len(numbers), BLOCK_BATCH):
            chunk = numbers[i:i + BLOCK_BATCH]
            blocks = await self._batch_on(endpoint, [("eth_getBlockByNumber", [hex(n), False])
                                                     for n in chunk])
            found.update({n: self._hash_of(endpoint, n, b)
                          for n, b in zip(chunk, blocks, strict=True)})
        return found

    def _hash_of(self, endpoint: Endpoint, number: int, block: Any) -> str:
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            # Asked only for blocks at or below the head: a node that has no such block is
            # lagging or broken, which must never be mistaken for a reorg.
            raise RetriableRpcError(f"{self.chain}: node has no block {number} below its head",
                                    endpoint=endpoint.name)
        return str(block["hash"]).lower()

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
        answers = await self._batch(calls)
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

            async def op(endpoint: Endpoint, chunk: list[int] = chunk) -> dict[int, str]:
                return await self._hashes_on(endpoint, chunk)

            found.update(await self.rpc.pool.call("batch:eth_chainId,eth_getBlockByNumber", op,
                                                  checks_chain=True))
        return found

    async def lookup(self, tx_hash: str) -> Lookup:
        receipt = await self.rpc.pool.call(
            "batch:eth_chainId,eth_getTransactionReceipt",
            lambda e: self._receipt_on(e, tx_hash), checks_chain=True)
        if receipt is None:
            return Lookup(None, "not_found")
        try:
            facts = receipt_facts(self.chain, receipt, tx_hash, self.cfg.usdc)
        except UnreadableAnswer as exc:
            raise RetriableRpcError(str(exc)) from exc
        verdict = rules.judge_transaction(facts, self.cfg.payment_addresses, self.cfg.usdc)
        if isinstance(verdict, Observed):
            return Lookup(verdict, None, await self.view(), signers=facts.signers)
        return Lookup(None, verdict, signers=facts.signers)

    async def tx_signers(self, tx_hash: str) -> tuple[str, ...]:
        """Who signed the transaction (``tx.from``), for rules.accepted_signers. A node without
        the transaction, or answering for another one, is retried: never "nobody signed"."""
        tx = await self.rpc.request("eth_getTransactionByHash", [tx_hash])
        if not isinstance(tx, dict) or str(tx.get("hash", "")).lower() != tx_hash:
            raise RetriableRpcError(f"{self.chain}: eth_getTransactionByHash {tx_hash} answered "
                                    "no such transaction")
        signers = sender_of(tx)
        if not signers:
            raise RetriableRpcError(f"{self.chain}: transaction {tx_hash} has no readable from")
        return signers

    async def _receipt_on(self, endpoint: Endpoint, tx_hash: str) -> Any:
        """The receipt, its block hash checked against its block on the same endpoint."""
        [receipt] = await self._batch_on(endpoint, [("eth_getTransactionReceipt", [tx_hash])])
        if not isinstance(receipt, dict) or not isinstance(receipt.get("blockHash"), str):
            return receipt  # null (not found), or for receipt_facts to refuse
        try:
            number = hex_quantity(receipt.get("blockNumber"))
        except UnreadableAnswer:
            return receipt
        block = (await self._hashes_on(endpoint, [number]))[number]
        if receipt["blockHash"].lower() != block:
            raise RetriableRpcError(f"{self.chain}: receipt of {tx_hash} gave block {number} "
                                    f"the hash {receipt['blockHash']}, the block has {block}",
                                    endpoint=endpoint.name)
        return receipt

    def proof_offline(self, payer: str, message: str, proof: str | None) -> bool | None:
        """True when the payer's key signed (EIP-191); False for a proof in no readable format;
        None otherwise: the payer may be a contract wallet, which only the chain can ask."""
        signature = evm_signatures.decode_proof(proof)
        if signature is None:
            return False
        if evm_signatures.signed_by(signature, message, payer):
            return True
        return None

    async def verify_proof(self, payer: str, message: str, proof: str | None) -> bool:
        """EIP-191 by the payer's key; else EIP-1271 isValidSignature when the payer has code,
        whatever the signature's length; else ERC-6492 when the signature carries its suffix.
        Raises RpcError when the chain could not be asked: that is never "not valid"."""
        offline = self.proof_offline(payer, message, proof)
        if offline is not None:
            return offline
        signature = evm_signatures.decode_proof(proof)
        assert signature is not None
        digest = evm_signatures.digest(message)
        if evm_signatures.is_erc6492(signature):
            return await self._erc6492(payer, digest, signature)
        code = await self._hex("eth_getCode", [payer, "latest"])
        if code == "0x":
            return False
        return await self._erc1271(payer, digest, signature)

    async def _erc1271(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        data = evm_signatures.erc1271_call(digest, signature)
        try:
            answer = await self._hex("eth_call", [{"to": wallet, "data": data}, "latest"])
        except ExecutionReverted:
            return False  # the wallet refused by reverting
        return evm_signatures.erc1271_approves(answer)

    async def _erc6492(self, signer: str, digest: bytes, signature: bytes) -> bool:
        """The deploy-less validator's eth_call: deploys a counterfactual wallet inside the
        simulation and asks it. It reverts only on a malformed 6492 wrapper."""
        data = evm_signatures.validator_call(signer, digest, signature)
        try:
            answer = await self._hex("eth_call", [{"data": data}, "latest"])
        except ExecutionReverted:
            return False
        verdict = evm_signatures.validator_verdict(answer)
        if verdict is None:
            raise RetriableRpcError(f"{self.chain}: ERC-6492 validation answered {answer:.80}")
        return verdict

    async def _hex(self, method: str, params: list[Any]) -> str:
        """A call whose answer is 0x-hex data. Anything else (null...) is the node failing, not
        "no code" or "not valid": retried like any retriable fault."""

        async def op(endpoint: Endpoint) -> str:
            [answer] = await self._batch_on(endpoint, [(method, params)])
            if not isinstance(answer, str) or not answer.startswith("0x"):
                raise RetriableRpcError(f"{method}: answered {answer!r:.80} instead of hex data",
                                        endpoint=endpoint.name)
            return answer

        return await self.rpc.pool.call(method, op, checks_chain=True)

    async def _batch(self, calls: Sequence[Call]) -> list[Any]:
        """``calls`` in one request, answered by an endpoint on the configured chain."""
        return await self.rpc.pool.call(batch_label([CHAIN_ID, *calls]),
                                        lambda e: self._batch_on(e, calls), checks_chain=True)

    async def _batch_on(self, endpoint: Endpoint, calls: Sequence[Call]) -> list[Any]:
        """``calls`` on ``endpoint`` in one JSON-RPC batch with eth_chainId: their answers, or
        WrongChainError when that batch shows another chain."""
        answers = await self.rpc.batch_on(endpoint, [CHAIN_ID, *calls])
        chain_id = _int(answers[0])
        if chain_id != self.cfg.chain_id:
            raise WrongChainError(
                f"{self.chain}: {endpoint.name} serves chain id {chain_id}, expected "
                f"{self.cfg.chain_id}", endpoint=endpoint.name)
        return answers[1:]


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise RetriableRpcError(f"expected a hex quantity, got {value!r}")


__all__ = ["EvmAdapter", "Observed"]
