"""Solana keys, with no I/O: the associated token account a payee is paid into, and the ed25519
proofs a payer signs a claim with."""

from __future__ import annotations

import base64
import re

from solders.pubkey import Pubkey
from solders.signature import Signature

from verifier.chains.solana_decode import UnreadableTransaction, b58decode

ATA_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
_HEX_SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")
_BASE64_SIGNATURE = re.compile(r"^[A-Za-z0-9+/]{85}[AQgw]==$")  # 64 bytes, canonical padding


def associated_token_address(owner: str, mint: str, token_program: str) -> str:
    """The owner's associated token account for ``mint`` (a PDA of the ATA program)."""
    seeds = [bytes(Pubkey.from_string(owner)), bytes(Pubkey.from_string(token_program)),
             bytes(Pubkey.from_string(mint))]
    return str(Pubkey.find_program_address(seeds, Pubkey.from_string(ATA_PROGRAM))[0])


def decode_proof(proof: str) -> bytes | None:
    """A 64-byte ed25519 signature written in base58 (as Solana wallets give it), in hex
    (128 digits, optional 0x) or in standard base64 (88 characters, ending ``==``, which base58
    never holds); None when it is none of them."""
    proof = proof.strip()
    if _HEX_SIGNATURE.match(proof):
        return bytes.fromhex(proof.removeprefix("0x"))
    if _BASE64_SIGNATURE.match(proof):
        return base64.b64decode(proof)
    try:
        raw = b58decode(proof)
    except UnreadableTransaction:
        return None
    return raw if len(raw) == 64 else None


def verify_ed25519(payer: str, message: bytes, proof: str) -> bool:
    """True when ``proof`` is the payer's ed25519 signature over ``message``."""
    raw = decode_proof(proof)
    if raw is None:
        return False
    try:
        key = Pubkey.from_string(payer)
    except ValueError:
        return False
    return Signature.from_bytes(raw).verify(key, message)
