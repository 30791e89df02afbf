"""Configuration: read once at start from the environment (and optionally a TOML file).

Every setting has the ``X402_`` prefix except ``DATABASE_URL``. A bad value raises ConfigError
with one line naming the variable; nothing else in the program reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from verifier import redact
from verifier.addresses import canonical_evm_address, canonical_solana_address
from verifier.errors import ConfigError
from verifier.money import base_units_to_usdc, usdc_to_base_units
from verifier.rules import Policy

Finality = Literal["depth", "safe", "finalized"]
ChainKind = Literal["evm", "solana"]


@dataclass(frozen=True)
class ChainDefaults:
    kind: ChainKind
    usdc: str
    chain_id: int | None
    confirmations: int


CHAIN_DEFAULTS: dict[str, ChainDefaults] = {
    "base": ChainDefaults("evm", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", 8453, 10),
    "ethereum": ChainDefaults("evm", "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 1, 12),
    "solana": ChainDefaults("solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", None, 0),
}
SUPPORTED_CHAINS = tuple(CHAIN_DEFAULTS)


@dataclass(frozen=True)
class ChainConfig:
    name: str
    kind: ChainKind
    rpc_urls: tuple[str, ...]
    payment_addresses: tuple[str, ...]
    usdc: str
    chain_id: int | None
    confirmations: int
    finality: Finality
    start_block: int | None
    token_accounts: tuple[str, ...] = ()
    reorg_window: int = 64
    max_lag_blocks: int = 50
    rpc_concurrency: int = 8
    rpc_timeout: float = 10.0
    max_log_range: int = 2000
    # x402 facilitator (verifier.x402): the settler's key file; None: this chain is not settled.
    settler_key_file: Path | None = None
    settler_max_fee_gwei: float | None = None
    settler_min_balance_wei: int = 0
    settler_gas_limit: int = 150_000
    # Solana's x402 network id (CAIP-2, X402_SOLANA_NETWORK) and the bound on the compute unit
    # price the fee payer pays (X402_SOLANA_SETTLER_MAX_COMPUTE_PRICE, microlamports).
    x402_network: str | None = None
    settler_max_compute_price: int = 5_000_000


@dataclass(frozen=True)
class Config:
    database_url: str | None
    chains: dict[str, ChainConfig]
    policy: Policy = field(default_factory=lambda: Policy(price_per_request=1_000,
                                                          min_payment=100_000))
    access_ttl: timedelta = timedelta(hours=24)
    poll_interval: float = 2.0
    workers: int = 4
    metrics_addr: tuple[str, int] | None = ("127.0.0.1", 9402)
    cleanup_cron: str = "0 * * * *"
    analytics_cron: str = "5 * * * *"
    analytics_backfill_hours: int = 168
    usage_retention_days: int = 90
    claim_retention_days: int = 30
    claim_lookups_per_second: float = 20.0
    embedded_dir: Path = field(default_factory=lambda: Path("var"))
    log_format: Literal["auto", "json", "console"] = "auto"
    source: str | None = None  # the X402_CONFIG_FILE it was read from, if any
    # x402 facilitator: None = off. The token is read from its file when the daemon starts.
    facilitator_addr: tuple[str, int] | None = None
    facilitator_token_file: Path | None = None
    facilitator_max_amount: int = 1_000_000_000
    settle_timeout: float = 20.0


def load(env: Mapping[str, str], *, chains: bool = True) -> Config:
    """Parses and validates the whole configuration: the environment over X402_CONFIG_FILE.

    ``chains=False`` is for commands that touch only the database (migrate, jobs, the database
    part of doctor): X402_CHAINS and every X402_<CHAIN>_* variable are then not read, so a
    migration can run before the RPC endpoints are known. Every other setting is validated the
    same way in both cases.
    """
    file_values, source = _file_values(env)
    values = dict(file_values)
    values.update(env)
    r = _Reader(values)
    chain_cfgs: dict[str, ChainConfig] = {}
    if chains:
        chain_names = r.list("X402_CHAINS", default="base")
        for name in chain_names:
            if name not in CHAIN_DEFAULTS:
                raise ConfigError(
                    f"X402_CHAINS: unknown chain {name!r} (supported: {', '.join(SUPPORTED_CHAINS)})"
                )
        if len(set(chain_names)) != len(chain_names):
            raise ConfigError("X402_CHAINS: a chain is listed twice")
        chain_cfgs = {name: _chain(r, name) for name in chain_names}
    policy = _policy(r)
    return Config(
        database_url=r.get("DATABASE_URL") or None,
        chains=chain_cfgs,
        policy=policy,
        access_ttl=timedelta(hours=r.number("X402_ACCESS_TTL_HOURS", "24", minimum=0.001)),
        poll_interval=r.number("X402_POLL_INTERVAL", "2", minimum=0.01),
        workers=r.integer("X402_WORKERS", "4", minimum=1, maximum=256),
        metrics_addr=_metrics_addr(r),
        cleanup_cron=r.cron("X402_CLEANUP_CRON", "0 * * * *"),
        analytics_cron=r.cron("X402_ANALYTICS_CRON", "5 * * * *"),
        analytics_backfill_hours=r.integer("X402_ANALYTICS_BACKFILL_HOURS", "168", minimum=0),
        usage_retention_days=r.integer("X402_USAGE_RETENTION_DAYS", "90", minimum=1),
        claim_retention_days=r.integer("X402_CLAIM_RETENTION_DAYS", "30", minimum=1),
        claim_lookups_per_second=r.number("X402_CLAIM_LOOKUPS_PER_SECOND", "20", minimum=0.1),
        embedded_dir=Path(r.get("X402_EMBEDDED_DIR") or "var"),
        log_format=r.choice("X402_LOG_FORMAT", ("auto", "json", "console"), "auto"),  # type: ignore[arg-type]
        source=source,
        **_facilitator(r, policy.price_per_request, chain_cfgs),
    )


def database_location(env: Mapping[str, str]) -> tuple[str | None, Path]:
    """(DATABASE_URL, X402_EMBEDDED_DIR) alone, for `doctor` to check the database even when
    another setting is wrong (load() names that one)."""
    file_values, _ = _file_values(env)
    r = _Reader({**file_values, **env})
    return r.get("DATABASE_URL") or None, Path(r.get("X402_EMBEDDED_DIR") or "var")


def _policy(r: _Reader) -> Policy:
    """The payment rules (rules.Policy), built once here: nothing else restates them."""
    price = r.usdc("X402_PRICE_PER_REQUEST_USDC", "0.001")
    if price <= 0:
        raise ConfigError("X402_PRICE_PER_REQUEST_USDC: must be more than 0")
    minimum = r.usdc("X402_MIN_PAYMENT_USDC", "0.10")
    if price > minimum:
        # A payment of the minimum would verify and buy floor(minimum / price) = 0 requests.
        raise ConfigError(
            f"X402_PRICE_PER_REQUEST_USDC: {base_units_to_usdc(price)} is above "
            f"X402_MIN_PAYMENT_USDC {base_units_to_usdc(minimum)}: a minimum payment would "
            "verify for 0 requests")
    return Policy(
        price_per_request=price,
        min_payment=minimum,
        exact_min_payment=_exact_min_payment(r, price),
        claim_proof=r.choice("X402_CLAIM_PROOF", ("signature", "none"), "signature"),  # type: ignore[arg-type]
        claim_ttl=timedelta(seconds=r.number("X402_CLAIM_TTL_SECONDS", "1800", minimum=1)),
        not_found_grace=timedelta(
            seconds=r.number("X402_CLAIM_NOT_FOUND_GRACE_SECONDS", "60", minimum=0)),
    )


def _facilitator(r: _Reader, price: int, chains: dict[str, ChainConfig]) -> dict:
    addr = _addr(r, "X402_FACILITATOR_ADDR", "off")
    token_raw = r.get("X402_FACILITATOR_TOKEN_FILE")
    token_file = Path(token_raw) if token_raw else None
    if addr is not None and token_file is None and not _loopback(addr[0]):
        raise ConfigError(f"X402_FACILITATOR_ADDR: {addr[0]} is not a loopback address; set "
                          "X402_FACILITATOR_TOKEN_FILE (a bearer token) to serve it there")
    # Without chains (migrate, jobs) there is nothing to settle with, and nothing to check.
    if addr is not None and chains and not any(c.settler_key_file for c in chains.values()):
        raise ConfigError("X402_FACILITATOR_ADDR: no chain has X402_<CHAIN>_SETTLER_KEY_FILE")
    return {
        "facilitator_addr": addr,
        "facilitator_token_file": token_file,
        "facilitator_max_amount": r.usdc("X402_FACILITATOR_MAX_AMOUNT_USDC", "1000"),
        "settle_timeout": r.number("X402_FACILITATOR_SETTLE_TIMEOUT", "20", minimum=0.1),
    }


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exact_min_payment(r: _Reader, price: int) -> int:
    """X402_EXACT_MIN_PAYMENT_USDC: what an x402 "exact" (EIP-3009) payment must reach to be
    verified; by default the price of one request, as that scheme pays per request."""
    if r.get("X402_EXACT_MIN_PAYMENT_USDC") in (None, ""):
        return price
    minimum = r.usdc("X402_EXACT_MIN_PAYMENT_USDC", "0")
    if minimum <= 0:
        raise ConfigError("X402_EXACT_MIN_PAYMENT_USDC: must be more than 0")
    return minimum


def _chain(r: _Reader, name: str) -> ChainConfig:
    d = CHAIN_DEFAULTS[name]
    p = f"X402_{name.upper()}_"
    urls = tuple(r.list(p + "RPC_URLS"))
    if not urls:
        raise ConfigError(f"{p}RPC_URLS: required for chain {name} (comma-separated URLs)")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{p}RPC_URLS: {redact.origin(url)!r} is not an http(s) URL")
    redact.remember(urls)
    canon = canonical_evm_address if d.kind == "evm" else canonical_solana_address
    payees = tuple(r.convert(p + "PAYMENT_ADDRESS", a, canon) for a in r.list(p + "PAYMENT_ADDRESS"))
    if not payees:
        raise ConfigError(f"{p}PAYMENT_ADDRESS: required for chain {name}")
    usdc_key = p + ("USDC_ADDRESS" if d.kind == "evm" else "USDC_MINT")
    usdc = r.convert(usdc_key, r.get(usdc_key) or d.usdc, canon)
    chain_id = r.integer(p + "CHAIN_ID", str(d.chain_id), minimum=1) if d.kind == "evm" else None
    finality = r.choice(p + "FINALITY", ("depth", "safe", "finalized"),
                        "depth" if d.kind == "evm" else "finalized")
    if d.kind == "solana" and finality != "finalized":
        raise ConfigError(f"{p}FINALITY: Solana payments are verified at 'finalized' only")
    start = r.get(p + "START_BLOCK")
    accounts = tuple(r.convert(p + "TOKEN_ACCOUNTS", a, canonical_solana_address)
                     for a in r.list(p + "TOKEN_ACCOUNTS")) if d.kind == "solana" else ()
    return ChainConfig(
        name=name,
        kind=d.kind,
        rpc_urls=urls,
        payment_addresses=payees,
        usdc=usdc,
        chain_id=chain_id,
        confirmations=r.integer(p + "CONFIRMATIONS", str(d.confirmations), minimum=0),
        finality=finality,  # type: ignore[arg-type]
        start_block=r.integer(p + "START_BLOCK", start, minimum=0) if start else None,
        token_accounts=accounts,
        reorg_window=r.integer(p + "REORG_WINDOW", "64", minimum=1),
        max_lag_blocks=r.integer(p + "MAX_LAG_BLOCKS", "50", minimum=1),
        rpc_concurrency=r.integer(p + "RPC_CONCURRENCY", "8", minimum=1, maximum=1024),
        rpc_timeout=r.number(p + "RPC_TIMEOUT", "10", minimum=0.1),
        max_log_range=r.integer(p + "MAX_LOG_RANGE", "2000", minimum=1),
        **_settler(r, p, d.kind),
    )


def _settler(r: _Reader, p: str, kind: ChainKind) -> dict:
    key = r.get(p + "SETTLER_KEY_FILE")
    if kind == "solana":
        network = r.get(p + "NETWORK") or "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
        if not network.startswith("solana:") or len(network) > 64:
            raise ConfigError(f"{p}NETWORK: {network!r} is not a CAIP-2 Solana network id "
                              "(solana:<genesis hash prefix>)")
        return {
            "settler_key_file": Path(key) if key else None,
            "x402_network": network,
            "settler_max_compute_price": r.integer(p + "SETTLER_MAX_COMPUTE_PRICE", "5000000",
                                                   minimum=0),
        }
    max_fee = r.get(p + "SETTLER_MAX_FEE_GWEI")
    min_eth = r.get(p + "SETTLER_MIN_BALANCE_ETH") or "0"
    try:
        min_wei = int(Decimal(min_eth) * 10**18)
    except InvalidOperation:
        raise ConfigError(f"{p}SETTLER_MIN_BALANCE_ETH: {min_eth!r} is not a number") from None
    return {
        "settler_key_file": Path(key) if key else None,
        "settler_max_fee_gwei": r.number(p + "SETTLER_MAX_FEE_GWEI", max_fee, minimum=0.000001)
        if max_fee else None,
        "settler_min_balance_wei": max(0, min_wei),
        "settler_gas_limit": r.integer(p + "SETTLER_GAS_LIMIT", "150000", minimum=21000),
    }


def _metrics_addr(r: _Reader) -> tuple[str, int] | None:
    return _addr(r, "X402_METRICS_ADDR", "127.0.0.1:9402")


def _addr(r: _Reader, key: str, default: str) -> tuple[str, int] | None:
    raw = r.get(key) or default
    if raw.lower() in ("off", "none", ""):
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: {raw!r} is not host:port (or 'off')")
    return host.strip("[]") or "127.0.0.1", int(port)


def _file_values(env: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    path = env.get("X402_CONFIG_FILE")
    if not path:
        return {}, None
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise ConfigError(f"X402_CONFIG_FILE: cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"X402_CONFIG_FILE: {path} is not valid TOML: {exc}") from exc
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[key.upper()] = str(value)
    if mode & 0o077 and _holds_secret(out):
        # Loud, but not fatal: the operator may be mid-migration; doctor repeats it.
        warnings.warn(
            f"X402_CONFIG_FILE: {path} holds a password or key and is readable by "
            f"{'group and others' if mode & 0o007 else 'its group'} (mode {mode & 0o777:o}); "
            f"run: chmod 600 {path}", ConfigFileExposed, stacklevel=3)
    return out, path


class ConfigFileExposed(UserWarning):
    """The configuration file holds a secret and others can read it."""


def _holds_secret(values: Mapping[str, str]) -> bool:
    """A password in DATABASE_URL, or credentials in an RPC URL."""
    for key, value in values.items():
        if key == "DATABASE_URL" or key.endswith("_RPC_URLS"):
            for url in value.split(","):
                if _url_has_credentials(url.strip()):
                    return True
        if "PASSWORD" in key or key.endswith(("_KEY", "_TOKEN", "_SECRET")):
            return True
    return False


def _url_has_credentials(url: str) -> bool:
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.password:
        return True
    return any(k.lower() in ("password", "apikey", "api_key", "key", "token")
               for k, _ in parse_qsl(parts.query))


class _Reader:
    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def get(self, key: str) -> str:
        return self._values.get(key, "").strip()

    def list(self, key: str, default: str = "") -> list[str]:
        raw = self.get(key) or default
        return [part.strip() for part in raw.split(",") if part.strip()]

    def convert(self, key: str, raw: str, fn: Callable[[str], str]) -> str:
        try:
            return fn(raw)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from exc

    def integer(self, key: str, default: str | None, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        raw = self.get(key) or (default or "")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{key}: {raw!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{key}: {value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{key}: {value} is above the maximum {maximum}")
        return value

    def number(self, key: str, default: str, *, minimum: float) -> float:
        raw = self.get(key) or default
        try:
            value = float(Decimal(raw))
        except InvalidOperation:
            raise ConfigError(f"{key}: {raw!r} is not a number") from None
        if not value >= minimum:
            raise ConfigError(f"{key}: {raw} is below the minimum {minimum}")
        return value

    def usdc(self, key: str, default: str) -> int:
        raw = self.get(key) or default
        try:
            return usdc_to_base_units(raw)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        raw = (self.get(key) or default).lower()
        if raw not in allowed:
            raise ConfigError(f"{key}: {raw!r} is not one of {', '.join(allowed)}")
        return raw

    def cron(self, key: str, default: str) -> str:
        """A 5-field crontab expression (UTC), or 'off' (systemd timers run the job instead)."""
        raw = self.get(key) or default
        if raw.lower() == "off":
            return "off"
        if len(raw.split()) != 5:
            raise ConfigError(f"{key}: {raw!r} is not a 5-field cron expression")
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(raw, timezone="UTC")
        except ValueError as exc:
            raise ConfigError(f"{key}: {raw!r} is not a valid cron expression ({exc})") from None
        return raw
