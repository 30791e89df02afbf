"""What every chain adapter offers the watcher and the claim workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from verifier.models import ChainView, Cursor, Lookup, Observed, Quarantined


@dataclass
class ScanResult:
    """Payments found by one scan step, oldest first, and where the scan stopped.

    The store writes ``payments`` and ``cursors`` in one transaction. ``blocks`` are
    (number, hash) pairs worth remembering for reorg checks (EVM only). ``quarantine`` holds
    transactions the cursors moved past unread (written, or their attempts counted, with the
    cursors); ``released`` the signatures of quarantined ones that now read fine (Solana)."""

    payments: list[Observed]
    cursors: list[Cursor]
    blocks: list[tuple[int, str]] = field(default_factory=list)
    done: bool = True  # False: more is waiting; scan again without sleeping
    quarantine: list[Quarantined] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


class ChainAdapter(Protocol):
    chain: str

    async def startup_check(self) -> None:
        """Raises ConfigError naming the endpoint when an RPC is on the wrong chain or the USDC
        address/mint is not there."""

    async def view(self) -> ChainView: ...

    async def initial_cursors(self, start: int | None, view: ChainView) -> list[Cursor]:
        """Cursors for a chain never scanned before."""

    async def scan(self, cursors: Sequence[Cursor], view: ChainView) -> ScanResult: ...

    async def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """Current canonical hashes for reorg checks; {} where the chain has no reorgs to check."""

    async def lookup(self, tx_hash: str) -> Lookup:
        """One transaction looked up on demand (for a claim)."""

    async def tx_signers(self, tx_hash: str) -> tuple[str, ...]:
        """Who signed the transaction (EVM ``tx.from``; Solana its required signers), for
        rules.accepted_signers; raises RetriableRpcError when the node does not serve it."""

    def proof_offline(self, payer: str, message: str, proof: str | None) -> bool | None:
        """The proof's verdict when local cryptography settles it; None when the chain must be
        asked (e.g. an EVM contract wallet's EIP-1271)."""

    async def verify_proof(self, payer: str, message: str, proof: str | None) -> bool:
        """True when `proof` is the payer's signature over the claim message. Raises RpcError
        when the chain could not be asked: that is never a False."""

    def rpc_stats(self) -> list[tuple[str, dict[str, int]]]:
        """(endpoint name, as verifier.redact.name gives it: never the URL, which may carry a
        key; counters such as requests and errors) per RPC endpoint so far, for
        the totals the daemon logs when it stops."""

    async def close(self) -> None: ...


@runtime_checkable
class Quarantining(Protocol):
    """An adapter that may put a transaction aside (see ScanResult.quarantine) and read it again
    later. The watcher hands it those whose retry is due."""

    async def retry_quarantined(self, due: Sequence[Quarantined]) -> ScanResult:
        """Reads ``due`` again: payments found, ``released`` (read now), the rest in
        ``quarantine`` (failed again). Cursors are not touched."""
