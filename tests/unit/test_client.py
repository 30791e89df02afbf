"""verifier.client: README's test vectors, canonical messages, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from solders.keypair import Keypair
from solders.signature import Signature

from tests.readme_flow import README
from verifier import client
from verifier.chains import evm_signatures
from verifier.chains.solana_keys import verify_ed25519

TOKEN = "x402_README-example-token"
TOKEN_HASH = "942fb88ce7f5c25255eae0790278a2dc0d286362892284cffb69bd3173d79820"
EVM_TX = "0x" + "ab" * 32
EVM_KEY = "0x" + "11" * 32
EVM_PROOF = ("0x14f7eef4e3122c7fcd09da6bc75c9328e8634d0aa27444579636e0db8f7e465a163bbc98843392185"
             "eed2a16654f7883dc96f36363f8ca7d07eb04b3b0bfe1ba1c")
SOLANA_TX = str(Signature(bytes([0x22] * 64)))
SOLANA_KEYPAIR = Keypair.from_seed(bytes([0x11] * 32))
SOLANA_PROOF = ("4wo5vbPSbpjktZUnXzELJNEepyHwbn4Ga65a4mzo9C1AoVZ3x93VVMEuwJW5mNKjvJg2Lkf2tncPwd1ft"
                "pEiLE2R")


def test_the_readme_vectors():
    text = README.read_text()
    assert client.token_hash(TOKEN) == TOKEN_HASH
    message = client.claim_message("base", EVM_TX, TOKEN_HASH)
    assert message == f"x402-claim:v1:base:{EVM_TX}:{TOKEN_HASH}"
    assert client.sign_claim_evm(EVM_KEY, "base", EVM_TX, TOKEN_HASH) == EVM_PROOF
    assert client.sign_claim_solana(SOLANA_KEYPAIR, SOLANA_TX, TOKEN_HASH) == SOLANA_PROOF
    for value in (TOKEN, TOKEN_HASH, message, EVM_PROOF, SOLANA_TX, SOLANA_PROOF,
                  str(SOLANA_KEYPAIR.pubkey())):
        assert value in text


def test_proofs_made_by_the_helper_are_what_the_daemon_accepts():
    payer = "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
    message = client.claim_message("base", EVM_TX, TOKEN_HASH)
    signature = evm_signatures.decode_proof(EVM_PROOF)
    assert signature is not None and evm_signatures.signed_by(signature, message, payer)
    assert not evm_signatures.signed_by(
        signature, client.claim_message("ethereum", EVM_TX, TOKEN_HASH), payer)
    solana = client.claim_message("solana", SOLANA_TX, TOKEN_HASH).encode()
    assert verify_ed25519(str(SOLANA_KEYPAIR.pubkey()), solana, SOLANA_PROOF)


def test_the_message_is_canonical_or_refused():
    shouted = "0x" + "AB" * 32
    assert client.claim_message("base", shouted, TOKEN_HASH) == \
        client.claim_message("base", EVM_TX, TOKEN_HASH)
    assert client.sign_claim_evm(EVM_KEY, "base", shouted, TOKEN_HASH) == EVM_PROOF
    for chain, tx, token_hash in [("base", "0x1234", TOKEN_HASH), ("doge", EVM_TX, TOKEN_HASH),
                                  ("base", EVM_TX, TOKEN_HASH.upper()),
                                  ("solana", "0OIl" * 22, TOKEN_HASH)]:
        with pytest.raises(ValueError):
            client.claim_message(chain, tx, token_hash)
    with pytest.raises(ValueError):
        client.sign_claim_evm(EVM_KEY, "solana", SOLANA_TX, TOKEN_HASH)


def test_tokens_are_fresh_and_hashed():
    (one, one_hash), (two, _) = client.make_token(), client.make_token()
    assert one != two and one.startswith("x402_") and len(one) == 48
    assert one_hash == client.token_hash(one) and len(one_hash) == 64


def test_importing_the_client_pulls_in_no_chain_or_database_library():
    code = ("import sys, verifier.client; "
            "print(sorted(m for m in ('eth_account', 'solders', 'psycopg', 'web3') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=README.parent)
    assert done.stdout.strip() == "[]"
