"""EVM payer proofs, with no I/O: reading a proof, EIP-191 recovery, and the call data of the
EIP-1271 and ERC-6492 checks that verifier.chains.evm sends with eth_call.

A proof is 0x-hex (any length; 130 digits without 0x are read as hex too) or standard base64
(RFC 4648, padded). A payer with code decides itself whether a signature is valid (EIP-1271
``isValidSignature``), whatever its length: a Safe's n x 65 bytes, a passkey wallet's hundreds.
A signature ending with the ERC-6492 suffix wraps (factory, factory call data, signature) for a
wallet not deployed yet: it is checked by an eth_call without ``to`` whose data is the creation
code of verifier/chains/Erc6492Validator.sol, which deploys the wallet inside the simulated call
and asks it.
"""

from __future__ import annotations

import base64
import binascii
import re

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct

ERC1271_SELECTOR = "0x1626ba7e"
ERC6492_SUFFIX = bytes.fromhex("64926492" * 8)
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
_BARE_SIGNATURE = re.compile(r"^[0-9a-fA-F]{130}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

VALIDATOR_CREATION_CODE = (
    "0x"
    "608060405234801561000f575f5ffd5b5060405161044238038061044283398101604081905261002e916103"
    "39565b5f61003a848484610045565b9050805f526001601ff35b5f61004f82610163565b610079575f846001"
    "600160a01b03163b118015610072575061007284848461019f565b905061015c565b8151601f19810183525f"
    "90819081906100979086016020870161038e565b919450925090506001600160a01b0387163b158015908190"
    "6100bf57506100bf88888461019f565b156100d157600194505050505061015c565b5f846001600160a01b03"
    "16846040516100ea91906103ef565b5f604051808303815f865af19150503d805f8114610123576040519150"
    "601f19603f3d011682016040523d82523d5f602084013e610128565b606091505b5050905080801561014257"
    "505f896001600160a01b03163b115b8015610154575061015489898561019f565b955050505050505b939250"
    "5050565b5f60208251101561017557505f919050565b50805101517f64926492649264926492649264926492"
    "649264926492649264926492649264921490565b5f5f5f856001600160a01b0316631626ba7e60e01b868660"
    "40516024016101c7929190610405565b60408051601f198184030181529181526020820180516001600160e0"
    "1b03166001600160e01b031990941693909317909252905161020591906103ef565b5f60405180830381855a"
    "fa9150503d805f811461023d576040519150601f19603f3d011682016040523d82523d5f602084013e610242"
    "565b606091505b5091509150811580610255575060208151105b15610264575f9250505061015c565b602001"
    "516001600160e01b031916630b135d3f60e11b149150509392505050565b6001600160a01b03811681146102"
    "99575f5ffd5b50565b634e487b7160e01b5f52604160045260245ffd5b5f82601f8301126102bf575f5ffd5b"
    "81516001600160401b038111156102d8576102d861029c565b604051601f8201601f19908116603f01168101"
    "6001600160401b03811182821017156103065761030661029c565b6040528181528382016020018510156103"
    "1d575f5ffd5b8160208501602083015e5f918101602001919091529392505050565b5f5f5f60608486031215"
    "61034b575f5ffd5b835161035681610285565b6020850151604086015191945092506001600160401b038111"
    "15610378575f5ffd5b610384868287016102b0565b9150509250925092565b5f5f5f606084860312156103a0"
    "575f5ffd5b83516103ab81610285565b60208501519093506001600160401b038111156103c6575f5ffd5b61"
    "03d2868287016102b0565b604086015190935090506001600160401b03811115610378575f5ffd5b5f825180"
    "60208501845e5f920191825250919050565b828152604060208201525f825180604084015280602085016060"
    "85015e5f606082850101526060601f19601f830116840101915050939250505056fe"
)


def decode_proof(proof: str | None) -> bytes | None:
    """The proof's bytes, or None when it is missing or in no format read here."""
    if not proof:
        return None
    if _HEX.match(proof):
        return bytes.fromhex(proof[2:])
    if _BARE_SIGNATURE.match(proof):
        return bytes.fromhex(proof)
    if len(proof) % 4 or not _BASE64.match(proof):
        return None
    try:
        return base64.b64decode(proof, validate=True) or None
    except binascii.Error:
        return None


def digest(message: str) -> bytes:
    """The EIP-191 (personal_sign) hash of ``message``: what a wallet's isValidSignature gets."""
    return bytes(defunct_hash_message(text=message))


def signed_by(signature: bytes, message: str, address: str) -> bool:
    """True when ``signature`` is 65 bytes of ECDSA over ``message`` (EIP-191) by ``address``."""
    if len(signature) != 65:
        return False
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:  # eth_keys raises several types for a bad signature
        return False
    return str(signer).lower() == address


def is_erc6492(signature: bytes) -> bool:
    return len(signature) > len(ERC6492_SUFFIX) and signature.endswith(ERC6492_SUFFIX)


def erc1271_call(hash_: bytes, signature: bytes) -> str:
    """Call data of ``isValidSignature(bytes32, bytes)``."""
    return ERC1271_SELECTOR + abi_encode(["bytes32", "bytes"], [hash_, signature]).hex()


def erc1271_approves(answer: str) -> bool:
    """isValidSignature's answer: the magic value left-aligned in a 32-byte word."""
    return len(answer) >= 66 and answer.lower().startswith(ERC1271_SELECTOR)


def validator_call(signer: str, hash_: bytes, signature: bytes) -> str:
    """Data of the deploy-less eth_call that runs Erc6492Validator's constructor."""
    args = abi_encode(["address", "bytes32", "bytes"], [signer, hash_, signature])
    return VALIDATOR_CREATION_CODE + args.hex()


def validator_verdict(answer: str) -> bool | None:
    """The validator's one byte: True, False, or None for an answer it can never give."""
    return {"0x01": True, "0x00": False}.get(answer.lower())
