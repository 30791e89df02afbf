"""Chain adapters, one per supported chain kind."""

from __future__ import annotations

from verifier.chains.base import ChainAdapter
from verifier.config import ChainConfig
from verifier.rpc.failover import Observer


async def open_adapter(cfg: ChainConfig, observe: Observer | None = None) -> ChainAdapter:
    """Builds the adapter for a configured chain, with its RPC clients opened."""
    if cfg.kind == "evm":
        from verifier.chains.evm import EvmAdapter
        from verifier.rpc.client import EVM, RpcClient

        rpc = RpcClient(cfg.name, cfg.rpc_urls, codes=EVM, concurrency=cfg.rpc_concurrency,
                        timeout=cfg.rpc_timeout, observe=observe)
        await rpc.open()
        return EvmAdapter(cfg, rpc)
    from verifier.chains.solana import SolanaAdapter

    adapter = SolanaAdapter(cfg, observe=observe)
    await adapter.open()
    return adapter
