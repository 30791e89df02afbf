"""Assembles the facilitator from the configuration and the daemon's open chains."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from verifier import rules
from verifier.chains.base import ChainAdapter
from verifier.chains.evm import EvmAdapter
from verifier.chains.solana import SolanaAdapter
from verifier.config import Config
from verifier.errors import ConfigError
from verifier.store.settlements import SettlementStore

from .facilitator import ChainFacilitator, Facilitator
from .policy import Terms
from .sdk import ChainReader, SdkVerifier
from .settler import Settler, load_key
from .svm import SvmTerms
from .svm_settler import SvmFacilitator, SvmSettler, load_keypair


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"X402_FACILITATOR_TOKEN_FILE: cannot read {path}: {exc}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError("X402_FACILITATOR_TOKEN_FILE: the token must be at least 16 "
                          "characters with no white space")
    return token


def settlers(config: Config, adapters: Mapping[str, ChainAdapter]) -> dict[str, Settler]:
    """One Settler per chain that has a key file (refused when group/other can read it)."""
    found: dict[str, Settler] = {}
    for name, cfg in config.chains.items():
        if cfg.settler_key_file is None or cfg.kind != "evm":
            continue
        adapter = adapters[name]
        assert isinstance(adapter, EvmAdapter) and cfg.chain_id is not None
        key = load_key(cfg.settler_key_file, f"X402_{name.upper()}_SETTLER_KEY_FILE")
        found[name] = Settler(name, cfg.chain_id, cfg.usdc, adapter.rpc, key,
                              gas_limit=cfg.settler_gas_limit,
                              max_fee_gwei=cfg.settler_max_fee_gwei)
    return found


def facilitator(config: Config, adapters: Mapping[str, ChainAdapter],
                pool: AsyncConnectionPool) -> Facilitator:
    loop = asyncio.get_running_loop()
    chains: dict[str, ChainFacilitator] = {}
    # The watcher's policy: a settlement is an x402 "exact" payment, judged by its minimum.
    exact = config.policy
    for name, settler in settlers(config, adapters).items():
        cfg = config.chains[name]
        assert cfg.chain_id is not None
        terms = Terms(chain=name, chain_id=cfg.chain_id, usdc=cfg.usdc,
                      payees=cfg.payment_addresses, settler=settler.address,
                      min_amount=max(config.policy.exact_minimum, 1),
                      max_amount=config.facilitator_max_amount)
        reader = ChainReader(settler.rpc, loop, cfg.chain_id, [settler.address])
        chains[name] = ChainFacilitator(terms, SdkVerifier(reader), settler, adapters[name],
                                        exact)
    store = SettlementStore(pool, access_ttl=config.access_ttl)
    poll = min(max(config.poll_interval / 4, 0.05), 0.5)
    return Facilitator(chains, store, settle_timeout=config.settle_timeout, poll_interval=poll,
                       svm=svm_facilitator(config, adapters, store, exact, poll))


def svm_facilitator(config: Config, adapters: Mapping[str, ChainAdapter], store: SettlementStore,
                    exact: rules.Policy, poll: float) -> SvmFacilitator | None:
    """Solana's "exact", when X402_SOLANA_SETTLER_KEY_FILE is set."""
    cfg = config.chains.get("solana")
    if cfg is None or cfg.settler_key_file is None:
        return None
    adapter = adapters["solana"]
    assert isinstance(adapter, SolanaAdapter) and cfg.x402_network is not None
    key = load_keypair(cfg.settler_key_file, "X402_SOLANA_SETTLER_KEY_FILE")
    terms = SvmTerms(chain="solana", network=cfg.x402_network, mint=cfg.usdc,
                     payees=cfg.payment_addresses, fee_payer=key.address,
                     min_amount=max(config.policy.exact_minimum, 1),
                     max_amount=config.facilitator_max_amount,
                     max_compute_price=cfg.settler_max_compute_price)
    return SvmFacilitator(terms, SvmSettler(adapter, key), store, exact,
                          settle_timeout=config.settle_timeout, poll_interval=poll)
