"""For clients (the payer's side): make a token, keep it, and sign a claim over its hash.

    token, token_hash = make_token()
    proof = sign_claim_evm(private_key, "base", tx_hash, token_hash)      # or
    proof = sign_claim_solana(keypair, signature, token_hash)
    send (chain, tx_hash, token_hash, proof) to the API; once it says issued, the token is a
    bearer token for the paid requests

The token never leaves the client before it is used: the API and the daemon see only its
SHA-256, which is what the payer signs. Imports only the standard library at import time;
eth_account (EVM) or solders (Solana) are imported by the function that signs with them.
The message format is in README.md ("Claim proofs"), for clients in other languages.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from verifier.rules import claim_message as _message

EVM_CHAINS = ("base", "ethereum")
_EVM_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")
_SOLANA_TX = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{64,88}$")
_TOKEN_HASH = re.compile(r"^[0-9a-f]{64}$")


def make_token() -> tuple[str, str]:
    """A fresh bearer token (256 random bits, URL-safe) and its SHA-256, 64 lowercase hex."""
    token = "x402_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """SHA-256 of the token's UTF-8 bytes, lowercase hex: what the database stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def claim_message(chain: str, tx_hash: str, token_sha256: str) -> str:
    """The ASCII text a payer signs: ``x402-claim:v1:{chain}:{tx_hash}:{token_hash}``, with the
    transaction id in the daemon's canonical form (EVM: lowercase 0x-hex; Solana: base58 as
    is). Raises ValueError for input the daemon would refuse anyway."""
    if chain in EVM_CHAINS:
        if not _EVM_TX.match(tx_hash):
            raise ValueError(f"{tx_hash!r} is not an EVM transaction hash (0x and 64 hex)")
        tx_hash = tx_hash.lower()
    elif chain == "solana":
        if not _SOLANA_TX.match(tx_hash):
            raise ValueError(f"{tx_hash!r} is not a base58 Solana transaction signature")
    else:
        raise ValueError(f"unsupported chain {chain!r}")
    if not _TOKEN_HASH.match(token_sha256):
        raise ValueError("the token hash is 64 lowercase hex digits (SHA-256)")
    return _message(chain, tx_hash, token_sha256)


def sign_claim_evm(key: Any, chain: str, tx_hash: str, token_sha256: str) -> str:
    """EIP-191 ``personal_sign`` of the claim message by an EOA: 65 bytes, 0x-hex.

    ``key`` is a private key (hex or bytes) or an eth_account LocalAccount. A contract wallet
    signs the same message with its own wallet software instead (EIP-1271, ERC-6492)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    if chain not in EVM_CHAINS:
        raise ValueError(f"{chain!r} is not an EVM chain")
    signable = encode_defunct(text=claim_message(chain, tx_hash, token_sha256))
    signed = Account.sign_message(signable, getattr(key, "key", key))
    return "0x" + bytes(signed.signature).hex()


def sign_claim_solana(keypair: Any, signature: str, token_sha256: str) -> str:
    """ed25519 signature of the claim message's bytes by the paying wallet, base58.

    ``keypair`` is a solders Keypair (or anything whose ``sign_message(bytes)`` returns a
    solders Signature, as wallet adapters' signMessage does)."""
    message = claim_message("solana", signature, token_sha256).encode("ascii")
    return str(keypair.sign_message(message))
