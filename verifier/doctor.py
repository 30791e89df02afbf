"""`x402-verifier doctor`: checks what the daemon needs, one verdict per line, exit 0 or 1.

  config       the environment (and X402_CONFIG_FILE) parses and validates
  database     PostgreSQL answers (DATABASE_URL, or the embedded server when it is unset)
  migrations   every migration of this version is applied, none was edited afterwards, and the
               database has none this version does not know
  rpc          each endpoint of each chain, on its own: EVM eth_chainId equals the configured
               chain id and the USDC address has code; Solana the adapter's start-up check
               (healthy, the USDC mint exists with 6 decimals under a token program)
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from verifier import config as config_mod
from verifier import db, migrate, redact
from verifier.errors import ConfigError, DatabaseError, MigrationError, VerifierError
from verifier.store import ledger, reports, settlements

RPC_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self, width: int) -> str:
        # One line per check whatever the error says, and no credential in it.
        detail = redact.scrub(" ".join(self.detail.split()))
        return f"{'OK' if self.ok else 'FAIL':<4}  {self.name:<{width}}  {detail}"


def run(env: Mapping[str, str]) -> int:
    checks: list[Check] = []
    width = 0
    for check in diagnose(env):
        checks.append(check)
        width = max(width, len(check.name), 10)
        print(check.line(width), flush=True)
    failed = [c for c in checks if not c.ok]
    print(f"doctor: {len(checks) - len(failed)} of {len(checks)} checks passed"
          + (f", {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


def diagnose(env: Mapping[str, str]) -> Iterator[Check]:
    cfg: config_mod.Config | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", config_mod.ConfigFileExposed)
        try:
            cfg = config_mod.load(env)
            yield Check("config", True, _describe_config(cfg))
        except ConfigError as exc:
            yield Check("config", False, str(exc))
    for warning in caught:
        if issubclass(warning.category, config_mod.ConfigFileExposed):
            yield Check("config file", False, str(warning.message))
    check, url = _database(env, cfg)
    yield check
    if url is not None:
        yield _migrations(url)
    if cfg is not None:
        for chain in cfg.chains.values():
            for rank, rpc_url in enumerate(chain.rpc_urls):
                yield asyncio.run(_endpoint(chain, rank, rpc_url))
            if chain.settler_key_file is not None and chain.kind == "solana":
                yield asyncio.run(_fee_payer(chain))
            elif chain.settler_key_file is not None:
                yield asyncio.run(_settler(chain, url))


async def _fee_payer(chain: config_mod.ChainConfig) -> Check:
    """Solana's x402 fee payer: its address (never the key) and SOL balance."""
    from verifier.rpc.client import SOLANA, RpcClient
    from verifier.x402.svm_settler import load_keypair

    name = "settler solana"
    assert chain.settler_key_file is not None
    try:
        key = load_keypair(chain.settler_key_file, "X402_SOLANA_SETTLER_KEY_FILE")
    except ConfigError as exc:
        return Check(name, False, str(exc))
    rpc = RpcClient(chain.name, list(chain.rpc_urls), codes=SOLANA, timeout=chain.rpc_timeout)
    await rpc.open()
    try:
        async with asyncio.timeout(RPC_TIMEOUT):
            answer = await rpc.request("getBalance", [key.address])
        lamports = int(answer["value"])
    except (TimeoutError, VerifierError, ValueError, TypeError, KeyError) as exc:
        return Check(name, False, f"fee payer {key.address}: cannot read its balance: {exc}")
    finally:
        await rpc.close()
    return Check(name, lamports > 0, f"fee payer {key.address}: balance "
                 f"{lamports / 10**9:.9f} SOL, network {chain.x402_network}")


async def _settler(chain: config_mod.ChainConfig, database_url: str | None) -> Check:
    """The settler key's address (never the key), its balance and its next nonce (the chain's,
    and the one the ledger would hand out)."""
    from verifier.rpc.client import EVM, RpcClient
    from verifier.x402.settler import load_key

    name = f"settler {chain.name}"
    assert chain.settler_key_file is not None
    try:
        key = load_key(chain.settler_key_file, f"X402_{chain.name.upper()}_SETTLER_KEY_FILE")
    except ConfigError as exc:
        return Check(name, False, str(exc))
    rpc = RpcClient(chain.name, list(chain.rpc_urls), codes=EVM, timeout=chain.rpc_timeout)
    await rpc.open()
    try:
        async with asyncio.timeout(RPC_TIMEOUT):
            balance = int(await rpc.request("eth_getBalance", [key.address, "latest"]), 16)
            nonce = int(await rpc.request("eth_getTransactionCount", [key.address, "pending"]),
                        16)
    except (TimeoutError, VerifierError, ValueError, TypeError) as exc:
        return Check(name, False, f"{key.address}: cannot read balance/nonce: {exc}")
    finally:
        await rpc.close()
    ledger_next = await asyncio.to_thread(
        settlements.settler_next_nonce, database_url, chain.name, key.address) \
        if database_url else None
    low = balance < chain.settler_min_balance_wei
    detail = (f"{key.address}: balance {balance / 10**18:.6f} ETH"
              f"{' (below X402_' + chain.name.upper() + '_SETTLER_MIN_BALANCE_ETH)' if low else ''}"
              f", next nonce {nonce} on chain"
              f"{'' if ledger_next is None else f', {ledger_next} in the ledger'}")
    return Check(name, not low, detail)


def _describe_config(cfg: config_mod.Config) -> str:
    chains = ", ".join(f"{c.name} ({len(c.rpc_urls)} RPC, {len(c.payment_addresses)} payee)"
                       for c in cfg.chains.values())
    metrics = "off" if cfg.metrics_addr is None else "{}:{}".format(*cfg.metrics_addr)
    return f"chains {chains}; claim proof {cfg.policy.claim_proof}; metrics {metrics}"


def _database(env: Mapping[str, str],
              cfg: config_mod.Config | None) -> tuple[Check, str | None]:
    try:
        # The configuration is read once; only when it failed is its database part read alone.
        database_url, embedded_dir = ((cfg.database_url, cfg.embedded_dir) if cfg is not None
                                      else config_mod.database_location(env))
        url = db.resolve_url(database_url, embedded_dir)
        version, where = reports.server(url)
    except VerifierError as exc:
        return Check("database", False, f"{exc.__class__.__name__}: {exc}".strip()), None
    embedded = "" if database_url else " (embedded; DATABASE_URL is not set)"
    return Check("database", True, f"PostgreSQL {version} at {where}"
                 + embedded), url


def _migrations(url: str) -> Check:
    try:
        applied = ledger.applied(url)
        known = migrate.discover()
        todo = migrate.pending(known, applied)
    except (DatabaseError, MigrationError) as exc:
        return Check("migrations", False, str(exc))
    unknown = sorted(set(applied) - {m.filename for m in known})
    if todo:
        return Check("migrations", False, "pending: " + ", ".join(m.filename for m in todo)
                     + "; run `x402-verifier migrate`")
    if unknown:
        return Check("migrations", False, "applied but unknown to this version (the database "
                     "is newer than this program): " + ", ".join(unknown))
    return Check("migrations", True, f"{len(applied)} applied, none pending, none edited")


async def _endpoint(chain: config_mod.ChainConfig, rank: int, url: str) -> Check:
    """One endpoint's verdict, naming it '#<position> scheme://host[:port]' (never the URL:
    it may carry a key or a password)."""
    name = f"rpc {chain.name}"
    where = redact.name(rank, url)
    try:
        async with asyncio.timeout(RPC_TIMEOUT):
            if chain.kind == "evm":
                detail = await _evm_endpoint(chain, url)
            else:
                detail = await _solana_endpoint(chain, url)
    except TimeoutError:
        return Check(name, False, f"{where}: no answer within {RPC_TIMEOUT:.0f}s")
    except VerifierError as exc:
        return Check(name, False, f"{where}: {exc}")
    except (ValueError, TypeError) as exc:  # an answer that is not what the method returns
        return Check(name, False, f"{where}: unexpected answer: {exc}")
    return Check(name, not detail.startswith("!"), f"{where}: {detail.removeprefix('!')}")


async def _evm_endpoint(chain: config_mod.ChainConfig, url: str) -> str:
    """A detail line; a leading '!' marks a failure."""
    from verifier.rpc.client import EVM, RpcClient

    rpc = RpcClient(chain.name, [url], codes=EVM, timeout=chain.rpc_timeout)
    await rpc.open()
    try:
        endpoint = rpc.endpoints[0]
        chain_id = int(await rpc.request_on(endpoint, "eth_chainId", []), 16)
        if chain_id != chain.chain_id:
            return (f"!chain id {chain_id}, expected {chain.chain_id} "
                    f"(X402_{chain.name.upper()}_CHAIN_ID)")
        code = await rpc.request_on(endpoint, "eth_getCode", [chain.usdc, "latest"])
        size = (len(code) - 2) // 2 if isinstance(code, str) and code.startswith("0x") else 0
        if size == 0:
            return f"!chain id {chain_id}, but no contract code at USDC {chain.usdc}"
        head = int(await rpc.request_on(endpoint, "eth_blockNumber", []), 16)
        return f"chain id {chain_id}, USDC {chain.usdc} has {size} bytes of code, head {head}"
    finally:
        await rpc.close()


async def _solana_endpoint(chain: config_mod.ChainConfig, url: str) -> str:
    from verifier.chains import open_adapter

    adapter = await open_adapter(dataclasses.replace(chain, rpc_urls=(url,)))
    try:
        await adapter.startup_check()
        slot = (await adapter.view()).head
    finally:
        await adapter.close()
    return f"healthy, USDC mint {chain.usdc} present with 6 decimals, finalized slot {slot}"
