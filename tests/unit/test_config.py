"""Configuration is parsed once; a bad value names its variable."""

from datetime import timedelta

import pytest

from verifier import config
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
    assert cfg.price_per_request == 1_000 and cfg.min_payment == 100_000
    assert cfg.access_ttl == timedelta(hours=24)
    assert cfg.claim_proof == "signature"


def test_the_exact_minimum_defaults_to_the_price_per_request():
    assert config.load(GOOD).exact_min_payment == 1_000
    assert config.load(dict(GOOD, X402_PRICE_PER_REQUEST_USDC="0.05")).exact_min_payment == 50_000
    chosen = dict(GOOD, X402_PRICE_PER_REQUEST_USDC="0.05", X402_EXACT_MIN_PAYMENT_USDC="0.01")
    assert config.load(chosen).exact_min_payment == 10_000


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
    assert config.usdc_to_base_units(text) == units
    assert config.usdc_decimal_to_base_units(config.base_units_to_usdc(units)) == units
