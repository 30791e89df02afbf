from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

import pytest
from solders.keypair import Keypair

from verifier.chains.base import ScanResult
from verifier.chains.solana import SolanaAdapter
from verifier.config import ChainConfig
from verifier.devnet.solana_server import SolanaServer
from verifier.devnet.solana_tokens import USDC_MINT, TokenKit
from verifier.models import Cursor, Observed
from verifier.rpc.failover import RetryPolicy

FAST = RetryPolicy(attempts=6, initial_wait=0.01, max_wait=0.05)


def solana_config(urls: Sequence[str], payees: Sequence[str], *,
                  token_accounts: Sequence[str] = (), mint: str = str(USDC_MINT),
                  concurrency: int = 8) -> ChainConfig:
    return ChainConfig(
        name="solana", kind="solana", rpc_urls=tuple(urls), payment_addresses=tuple(payees),
        usdc=mint, chain_id=None, confirmations=0, finality="finalized", start_block=None,
        token_accounts=tuple(token_accounts), rpc_concurrency=concurrency, rpc_timeout=5.0,
    )


class MakeAdapter(Protocol):
    async def __call__(self, *payees: Keypair | str, urls: Sequence[str] | None = None,
                       **kwargs: Any) -> SolanaAdapter: ...


@pytest.fixture
def node() -> Iterator[SolanaServer]:
    with SolanaServer() as server:
        yield server


@pytest.fixture
def kit(node: SolanaServer) -> TokenKit:
    tokens = TokenKit(node)
    tokens.create_usdc()
    return tokens


@pytest.fixture
def payer(kit: TokenKit) -> Keypair:
    wallet = kit.wallet()
    kit.fund(wallet.pubkey(), 1_000_000_000)
    return wallet


@pytest.fixture
def payee(kit: TokenKit) -> Keypair:
    wallet = kit.wallet()
    kit.create_ata(wallet.pubkey())
    return wallet


@pytest.fixture
async def make_adapter(node: SolanaServer) -> AsyncIterator[MakeAdapter]:
    made: list[SolanaAdapter] = []

    async def make(*payees: Keypair | str, urls: Sequence[str] | None = None,
                   token_accounts: Sequence[str] = (), **kwargs: Any) -> SolanaAdapter:
        names = [p if isinstance(p, str) else str(p.pubkey()) for p in payees]
        cfg = solana_config(urls or [node.url], names, token_accounts=token_accounts)
        adapter = SolanaAdapter(cfg, policy=kwargs.pop("policy", FAST), **kwargs)
        await adapter.open()
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


async def start_cursors(adapter: SolanaAdapter, start_slot: int = 0) -> list[Cursor]:
    return await adapter.initial_cursors(start_slot, await adapter.view())


async def scan_all(adapter: SolanaAdapter, cursors: list[Cursor]
                   ) -> tuple[list[Observed], list[Cursor], list[ScanResult]]:
    """Scans until done, as the watcher would (committing each step's cursors)."""
    payments: list[Observed] = []
    steps: list[ScanResult] = []
    for _ in range(100):
        result = await adapter.scan(cursors, await adapter.view())
        steps.append(result)
        payments += result.payments
        cursors = result.cursors
        if result.done:
            return payments, cursors, steps
    raise AssertionError("the scan never finished")
