"""Canonical forms of addresses and transaction ids, and their validation.

EVM: lowercase 0x-hex (a mixed-case address must carry a valid EIP-55 checksum). Solana: base58,
compared exactly (it is case-sensitive), decoding to 32 bytes (keys) or 64 bytes (signatures).
"""

from __future__ import annotations

import re

# eth_utils and solders are imported where they are used: the command line parses addresses in
# its configuration, and commands that never touch a chain must not pay for loading them.

_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_EVM_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]+$")


def canonical_evm_address(text: str) -> str:
    if not isinstance(text, str) or not _EVM_ADDRESS.match(text):
        raise ValueError(f"{text!r} is not an EVM address (0x and 40 hex digits)")
    body = text[2:]
    if body != body.lower() and body != body.upper() and not _is_checksum_address(text):
        raise ValueError(f"{text!r} has an invalid EIP-55 checksum")
    return text.lower()


def _is_checksum_address(text: str) -> bool:
    from eth_utils import is_checksum_address

    return bool(is_checksum_address(text))


def display_evm_address(address: str) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(address))


def canonical_solana_address(text: str) -> str:
    if not isinstance(text, str) or not 32 <= len(text) <= 44 or not _BASE58.match(text):
        raise ValueError(f"{text!r} is not a Solana address (base58, 32 bytes)")
    from solders.pubkey import Pubkey

    try:
        key = Pubkey.from_string(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a Solana address (base58, 32 bytes)") from None
    if str(key) != text:
        raise ValueError(f"{text!r} is not in canonical base58 form")
    return text


def canonical_evm_tx_hash(text: str) -> str:
    if not isinstance(text, str) or not _EVM_TX.match(text):
        raise ValueError("malformed_tx_hash")
    return text.lower()


def canonical_solana_signature(text: str) -> str:
    if not isinstance(text, str) or not 64 <= len(text) <= 88 or not _BASE58.match(text):
        raise ValueError("malformed_tx_hash")
    from solders.signature import Signature

    try:
        sig = Signature.from_string(text)
    except ValueError:
        raise ValueError("malformed_tx_hash") from None
    if str(sig) != text:
        raise ValueError("malformed_tx_hash")
    return text


def canonical_tx_id(chain: str, text: str) -> str:
    """The one parser of a transaction id: a Solana signature on ``solana``, an EVM transaction
    hash on every other chain. Raises ValueError("malformed_tx_hash")."""
    if chain == "solana":
        return canonical_solana_signature(text)
    return canonical_evm_tx_hash(text)
