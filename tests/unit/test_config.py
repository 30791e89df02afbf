"""Configuration is parsed once; a bad value names its variable."""

from datetime import timedelta

import pytest

from verifier import config, money
from verifier.errors import ConfigError

GOOD = {
    "X402_CHAINS": "base,ethereum",
    "X402_BASE_RPC_URLS": "http://a:8545, http://b:8545",
    "X402_BASE_PAYMENT_ADDRESS": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    "X402_ETHEREUM_RPC_URLS": "http://c:8545",
    "X402_ETHEREUM_PAYMENT_ADDRESS": "0x2222222222222222222222222222222222222222",
}


def test_defaults_and_canonical_forms():
    cfg = config.load(GOOD)
    base = cfg.chains["base"]
    assert base.rpc_urls == ("http://a:8545", "http://b:8545")
    assert base.payment_addresses == ("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",)
    assert base.chain_id == 8453 and base.confirmations == 10 and base.finality == "depth"
    assert cfg.chains["ethereum"].chain_id == 1 and cfg.chains["ethereum"].confirmations == 12
    assert cfg.policy.price_per_request == 1_000 and cfg.policy.min_payment == 100_000
    assert cfg.access_ttl == timedelta(hours=24)
    assert cfg.policy.claim_proof == "signature"


def test_the_exact_minimum_defaults_to_the_price_per_request():
    assert config.load(GOOD).policy.exact_min_payment == 1_000
    assert config.load(dict(GOOD, X402_PRICE_PER_REQUEST_USDC="0.05")).policy.exact_min_payment == 50_000
    chosen = dict(GOOD, X402_PRICE_PER_REQUEST_USDC="0.05", X402_EXACT_MIN_PAYMENT_USDC="0.01")
    assert config.load(chosen).policy.exact_min_payment == 10_000


@pytest.mark.parametrize("key,value,named", [
    ("X402_CHAINS", "base,dogecoin", "X402_CHAINS"),
    ("X402_BASE_RPC_URLS", "", "X402_BASE_RPC_URLS"),
    ("X402_BASE_RPC_URLS", "ftp://x", "X402_BASE_RPC_URLS"),
    ("X402_BASE_PAYMENT_ADDRESS", "0x123", "X402_BASE_PAYMENT_ADDRESS"),
    ("X402_BASE_PAYMENT_ADDRESS", "0x833589FCD6eDb6E08f4c7C32D4f71b54bdA02913",
     "X402_BASE_PAYMENT_ADDRESS"),  # mixed case with a wrong checksum
    ("X402_BASE_PAYMENT_ADDRESS", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
     "X402_BASE_PAYMENT_ADDRESS"),  # a Solana address on an EVM chain
    ("X402_PRICE_PER_REQUEST_USDC", "0.0000001", "X402_PRICE_PER_REQUEST_USDC"),
    ("X402_PRICE_PER_REQUEST_USDC", "0", "X402_PRICE_PER_REQUEST_USDC"),
    ("X402_MIN_PAYMENT_USDC", "-1", "X402_MIN_PAYMENT_USDC"),
    # a minimum payment would buy 0 requests
    ("X402_PRICE_PER_REQUEST_USDC", "0.2", "X402_PRICE_PER_REQUEST_USDC"),
    ("X402_EXACT_MIN_PAYMENT_USDC", "0", "X402_EXACT_MIN_PAYMENT_USDC"),
    ("X402_EXACT_MIN_PAYMENT_USDC", "0.0000001", "X402_EXACT_MIN_PAYMENT_USDC"),
    ("X402_BASE_CONFIRMATIONS", "ten", "X402_BASE_CONFIRMATIONS"),
    ("X402_BASE_FINALITY", "eventually", "X402_BASE_FINALITY"),
    ("X402_CLAIM_PROOF", "maybe", "X402_CLAIM_PROOF"),
    ("X402_POLL_INTERVAL", "-2", "X402_POLL_INTERVAL"),
    ("X402_WORKERS", "0", "X402_WORKERS"),
    ("X402_METRICS_ADDR", "localhost", "X402_METRICS_ADDR"),
])
def test_a_bad_value_names_its_variable(key, value, named):
    env = dict(GOOD, **{key: value})
    with pytest.raises(ConfigError) as err:
        config.load(env)
    assert str(err.value).startswith(named + ":")
    assert "\n" not in str(err.value)


def test_solana_addresses_stay_case_sensitive():
    env = {
        "X402_CHAINS": "solana",
        "X402_SOLANA_RPC_URLS": "http://s:8899",
        "X402_SOLANA_PAYMENT_ADDRESS": "9fE6zKgca6K2EEa3yjbcq7zGMusUNqSQeWQNL2YDZ2Yi",
    }
    cfg = config.load(env)
    assert cfg.chains["solana"].payment_addresses == ("9fE6zKgca6K2EEa3yjbcq7zGMusUNqSQeWQNL2YDZ2Yi",)
    env["X402_SOLANA_PAYMENT_ADDRESS"] = "9fe6zkgca6k2eea3yjbcq7zgmusunqsqewqnl2ydz2yi"
    with pytest.raises(ConfigError, match="X402_SOLANA_PAYMENT_ADDRESS"):
        config.load(env)


@pytest.mark.parametrize("text,units", [("0.001", 1_000), ("1", 1_000_000), ("0.10", 100_000),
                                        ("123456789.123456", 123_456_789_123_456)])
def test_usdc_amounts_are_exact(text, units):
    assert money.usdc_to_base_units(text) == units
    assert money.usdc_decimal_to_base_units(money.base_units_to_usdc(units)) == units


def test_price_equal_to_the_minimum_payment_is_allowed():
    cfg = config.load(dict(GOOD, X402_PRICE_PER_REQUEST_USDC="0.10"))
    assert cfg.policy.price_per_request == cfg.policy.min_payment == 100_000


def test_database_only_commands_need_no_chains():
    env = {"DATABASE_URL": "postgresql://x@/db", "X402_CHAINS": "dogecoin"}
    cfg = config.load(env, chains=False)
    assert cfg.chains == {} and cfg.database_url == "postgresql://x@/db"
    with pytest.raises(ConfigError, match=r"^X402_CHAINS:"):
        config.load(env)
    # every other setting is validated the same way
    with pytest.raises(ConfigError, match=r"^X402_WORKERS:"):
        config.load(dict(env, X402_WORKERS="0"), chains=False)


def test_the_file_is_read_under_the_environment(tmp_path):
    path = tmp_path / "x402.toml"
    path.write_text('x402_workers = 7\nx402_poll_interval = "5"\n', encoding="utf-8")
    path.chmod(0o600)
    cfg = config.load(dict(GOOD, X402_CONFIG_FILE=str(path), X402_POLL_INTERVAL="3"))
    assert cfg.workers == 7 and cfg.poll_interval == 3.0 and cfg.source == str(path)


@pytest.mark.parametrize("body", [
    'database_url = "postgresql://app:hunter2@db/x402"\n',
    'x402_base_rpc_urls = ["https://u:pw@rpc.example/"]\n',
    'x402_base_rpc_urls = "https://rpc.example/?apikey=abc"\n',
])
def test_a_readable_file_holding_a_secret_is_warned_about(tmp_path, body):
    path = tmp_path / "x402.toml"
    path.write_text(body, encoding="utf-8")
    path.chmod(0o644)
    with pytest.warns(config.ConfigFileExposed, match="chmod 600"):
        config.load(dict(GOOD, X402_CONFIG_FILE=str(path)), chains=False)
    path.chmod(0o600)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.load(dict(GOOD, X402_CONFIG_FILE=str(path)), chains=False)


def test_a_readable_file_without_secrets_is_not_warned_about(tmp_path):
    import warnings

    path = tmp_path / "x402.toml"
    path.write_text('database_url = "postgresql:///x402"\nx402_workers = 2\n', encoding="utf-8")
    path.chmod(0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.load(dict(GOOD, X402_CONFIG_FILE=str(path))).workers == 2
