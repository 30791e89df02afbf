"""Solana x402 configuration and the fee payer's key file (same rules as the EVM settler key)."""

from __future__ import annotations

import json
import os

import pytest
from solders.keypair import Keypair

from verifier import config
from verifier.errors import ConfigError
from verifier.x402 import svm
from verifier.x402.svm_settler import load_keypair

PAYEE = str(Keypair().pubkey())
SOLANA = {"X402_CHAINS": "solana", "X402_SOLANA_RPC_URLS": "http://127.0.0.1:8899",
          "X402_SOLANA_PAYMENT_ADDRESS": PAYEE,
          "X402_SOLANA_SETTLER_KEY_FILE": "/run/credentials/x402/fee-payer.json"}
VAR = "X402_SOLANA_SETTLER_KEY_FILE"


def test_solana_settles_with_a_key_file_on_mainnet_by_default():
    cfg = config.load({**SOLANA, "X402_FACILITATOR_ADDR": "127.0.0.1:8402"}).chains["solana"]
    assert cfg.settler_key_file is not None and cfg.x402_network == svm.MAINNET
    assert cfg.settler_max_compute_price == 5_000_000
    cfg = config.load({**SOLANA, "X402_SOLANA_NETWORK": svm.DEVNET,
                       "X402_SOLANA_SETTLER_MAX_COMPUTE_PRICE": "1000"}).chains["solana"]
    assert cfg.x402_network == svm.DEVNET and cfg.settler_max_compute_price == 1000
    with pytest.raises(ConfigError, match="X402_SOLANA_NETWORK"):
        config.load({**SOLANA, "X402_SOLANA_NETWORK": "eip155:8453"})


@pytest.mark.parametrize("form", ["json", "base58"])
def test_keypair_json_or_base58(tmp_path, form):
    key = Keypair()
    path = tmp_path / "fee-payer"
    path.write_text(json.dumps(list(bytes(key))) if form == "json" else str(key))
    os.chmod(path, 0o600)
    loaded = load_keypair(path, VAR)
    assert loaded.address == str(key.pubkey())
    assert str(key) not in repr(loaded) and str(bytes(key)[0:8]) not in str(loaded)


def test_a_keypair_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "fee-payer"
    path.write_text(str(Keypair()))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="group or others"):
        load_keypair(path, VAR)


@pytest.mark.parametrize("text", ["[1, 2, 3]", "[" + ",".join(["300"] * 64) + "]", "nope",
                                  "0x" + "11" * 32])
def test_a_bad_keypair_file_names_the_variable_not_the_key(tmp_path, text):
    path = tmp_path / "fee-payer"
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as caught:
        load_keypair(path, VAR)
    assert VAR in str(caught.value) and text not in str(caught.value)


async def test_doctor_shows_the_fee_payer_address_and_balance_never_the_key(
        svm_setup, database_url):
    import asyncio

    from verifier import doctor

    env = {**svm_setup.env(), "DATABASE_URL": database_url}
    checks = await asyncio.to_thread(lambda: list(doctor.diagnose(env)))
    payer = next(c for c in checks if c.name == "settler solana")
    assert payer.ok, payer
    assert str(svm_setup.fee_payer.pubkey()) in payer.detail and "5.000000000 SOL" in payer.detail
    secret = svm_setup.key_file.read_text().strip()
    assert all(secret not in c.detail and str(svm_setup.fee_payer) not in c.detail
               for c in checks)
