"""A synchronous helper over a local anvil node: USDC, payments of every shape, reorgs.

USDC is Circle's real FiatTokenV2_2 (verifier/devnet/usdc.py: minted by its minter role, EIP-3009
transferWithAuthorization); the look-alike is the hand-written TestUSDC (contracts/TestUSDC.sol:
same name, symbol and decimals, anyone mints), which install_test_usdc() can also put at the
canonical address for a test that wants it there.

Test and dev code only (tests, benchmarks, `make demo`); the daemon never imports it.

    with Anvil(chain_id=8453) as node:
        devnet = EvmDevnet(node.url)
        usdc = devnet.install_usdc(USDC_BASE)
        payer = devnet.accounts[1]
        devnet.mint(payer, 5_000_000)
        tx_hash = devnet.transfer(payer, PAYEE, 1_000_000)

Amounts are integers of base units (USDC has 6 decimals). Addresses are accepted in any case
or as eth_account accounts and returned lowercase; transaction hashes are 0x lowercase.
Senders need no private key: the node impersonates every sender (anvil_autoImpersonateAccount),
so any address with ETH can send. Accounts with keys exist for signing claims.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, cached_property
from typing import Any

import requests
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from verifier.devnet import solc, usdc
from verifier.devnet.anvil import DEFAULT_MNEMONIC, Anvil

USDC_BASE = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
USDC_ETHEREUM = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
CHAINS = {"base": (8453, USDC_BASE), "ethereum": (1, USDC_ETHEREUM)}
# The payee the daemon watches in the tests and the soak, and an address it does not.
PAYEE = "0x2222222222222222222222222222222222222222"
OTHER = "0x3333333333333333333333333333333333333333"
"""chain name -> (chain id, canonical USDC address), as DESIGN section 5."""
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC1271_INVALID = bytes.fromhex("ffffffff")

Sender = str | LocalAccount
"""An address (any case) or an eth_account account."""

_TRANSFER_GAS = 100_000
_MINT_GAS = 150_000
_AUTHORIZATION_GAS = 200_000
_ETHER = 10**18

Account.enable_unaudited_hdwallet_features()


class DevnetError(RuntimeError):
    """The node answered a call with an error, or a helper's postcondition failed."""


def address_of(who: Sender) -> str:
    """Canonical (lowercase) address of an address string or an account."""
    raw = who.address if isinstance(who, LocalAccount) else who
    return raw.lower()


def topic_address(who: Sender) -> str:
    """The 32-byte log topic for an address, as eth_getLogs filters and returns it."""
    return "0x" + "0" * 24 + address_of(who)[2:]


def eip191_hash(message: str) -> bytes:
    """The hash an EIP-191 signature over `message` signs: what isValidSignature receives.

    Spelled out from the standard (not taken from eth_account) so that a test comparing it
    with the daemon's hashing checks something.
    """
    data = message.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def sign_claim(private_key: str | bytes, message: str) -> str:
    """EIP-191 (personal_sign) signature of `message`, 0x-hex, 65 bytes."""
    signed = Account.sign_message(encode_defunct(text=message), private_key)
    return signed.signature.to_0x_hex()


@cache
def derive_accounts(count: int, mnemonic: str = DEFAULT_MNEMONIC) -> tuple[LocalAccount, ...]:
    """The accounts anvil funds at start (same mnemonic, path m/44'/60'/0'/0/i).

    Cached: HD derivation costs about 8 ms per account.
    """
    return tuple(
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        for index in range(count)
    )


def keyed_accounts(count: int, seed: str = "payer") -> list[LocalAccount]:
    """Deterministic accounts with private keys keccak(f"{seed}:{i}"); cheap to make."""
    return [Account.from_key(keccak(text=f"{seed}:{index}")) for index in range(count)]


def call_data(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    """ABI calldata for `signature` (e.g. "transfer(address,uint256)"), 0x-hex."""
    return "0x" + (keccak(text=signature)[:4] + encode(list(types), list(args))).hex()


@contextmanager
def local_devnet(chain: str = "base", **anvil_options: Any) -> Iterator[EvmDevnet]:
    """A new anvil with the chain's id, Circle's real USDC (FiatTokenV2_2) at its canonical
    address and a look-alike token (the hand-written TestUSDC) elsewhere.

        with local_devnet("ethereum") as devnet:
            devnet.url, devnet.usdc, devnet.lookalike
    """
    chain_id, token = CHAINS[chain]
    with Anvil(chain_id=chain_id, **anvil_options) as node:
        devnet = EvmDevnet(node.url)
        devnet.node = node
        devnet.install_usdc(token)
        devnet.deploy_lookalike()
        yield devnet


class EvmDevnet:
    def __init__(self, url: str, *, usdc: str | None = None, timeout: float = 30.0) -> None:
        self.url = url
        self.usdc = usdc.lower() if usdc else None
        """The token that mint/transfer/... use by default (set by install_usdc)."""
        self.lookalike: str | None = None
        """The last deploy_lookalike() address: same name and symbol as USDC, not USDC."""
        self.node: Anvil | None = None
        """The process behind `url`, when local_devnet started it."""
        self.timeout = timeout
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        self._session = requests.Session()
        self._ids = itertools.count(1)
        self._deployed: dict[str, str] = {}
        self._kinds: dict[str, bool] = {}
        self.rpc("anvil_autoImpersonateAccount", True)

    # --- raw JSON-RPC -------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        return self.batch([(method, list(params))])[0]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """One HTTP request carrying a JSON-RPC batch; results in call order.

        The node may run the calls of one batch concurrently, so put only independent calls
        (sends with explicit nonces, reads) in one batch.
        """
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
            for method, params in calls
        ]
        response = self._session.post(
            self.url,
            data=json.dumps(payload),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout,
        )
        response.raise_for_status()
        by_id = {answer["id"]: answer for answer in response.json()}
        results = []
        for request in payload:
            answer = by_id[request["id"]]
            if "error" in answer:
                raise DevnetError(f"{request['method']}{request['params']}: {answer['error']}")
            results.append(answer["result"])
        return results

    # --- chain --------------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return int(self.rpc("eth_chainId"), 16)

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def block(self, number: int | str = "latest", full: bool = False) -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        found: dict[str, Any] | None = self.rpc("eth_getBlockByNumber", tag, full)
        if found is None:
            raise DevnetError(f"no block {number}")
        return found

    def block_hash(self, number: int) -> str:
        return str(self.block(number)["hash"])

    def block_hashes(self, first: int, last: int) -> list[str]:
        """Hashes of blocks first..last inclusive, in one batch."""
        calls = [("eth_getBlockByNumber", [hex(n), False]) for n in range(first, last + 1)]
        return [block["hash"] for block in self.batch(calls)]

    def mine(self, blocks: int = 1) -> int:
        """Mine `blocks` blocks now (whatever the automine setting); returns the new head."""
        self.rpc("anvil_mine", hex(blocks))
        return self.head()

    def automine(self) -> bool:
        return bool(self.rpc("anvil_getAutomine"))

    def set_automine(self, enabled: bool) -> None:
        """Off: sent transactions wait in the pool until mine()."""
        self.rpc("evm_setAutomine", enabled)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        """Back to the snapshot (chain, state, head). A snapshot can be reverted to once."""
        if not self.rpc("evm_revert", snapshot_id):
            raise DevnetError(f"evm_revert({snapshot_id}) refused: unknown or used snapshot")

    def reorg(self, depth: int, include: Sequence[tuple[str | dict[str, Any], int]] = ()) -> None:
        """Replace the last `depth` blocks with new ones; the head keeps its number.

        Observed on anvil 1.7.1: blocks head-depth+1..head get new hashes (new timestamps/
        parents); every transaction that was in them is gone (receipt and transaction lookups
        return null, eth_getLogs no longer returns their logs, their state changes are undone,
        senders' nonces go back) and NOT returned to the pool. Blocks up to head-depth keep
        their hashes. Transactions waiting in the pool stay there, not mined by the reorg.

        `include` puts transactions into the new blocks: (tx, index) with index 0..depth-1
        counting from the first replaced block. tx is a signed raw transaction (0x-hex, e.g.
        from sign_transfer: the same transaction, same hash, re-included in a new block) or a
        request dict like eth_sendTransaction's (a new transaction; nonces are counted from
        the common ancestor). A request without "gas" gets 300,000: anvil would estimate it
        against the pre-reorg state, and a transfer to an account whose balance the reorg
        emptied then runs out of gas (observed: status 0, no log).
        """
        pairs = [[_with_gas(tx), index] for tx, index in include]
        self.rpc("anvil_reorg", depth, pairs)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.rpc("eth_getTransactionReceipt", tx_hash)
        return found

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.rpc("eth_getTransactionByHash", tx_hash)
        return found

    def transfer_logs(
        self,
        first: int = 0,
        last: int | str = "latest",
        *,
        token: str | None = None,
        to: Sender | None = None,
    ) -> list[dict[str, Any]]:
        """Transfer logs of the token (default: USDC) in a block range, optionally to `to`."""
        topics: list[Any] = [TRANSFER_TOPIC, None, topic_address(to) if to else None]
        last_tag = hex(last) if isinstance(last, int) else last
        query = {
            "address": self._token(token),
            "fromBlock": hex(first),
            "toBlock": last_tag,
            "topics": topics,
        }
        return list(self.rpc("eth_getLogs", query))

    # --- accounts -----------------------------------------------------------------------

    @cached_property
    def accounts(self) -> list[LocalAccount]:
        """anvil's funded dev accounts, with private keys (checked against eth_accounts)."""
        listed = [address.lower() for address in self.rpc("eth_accounts")]
        derived = list(derive_accounts(len(listed)))
        if [account.address.lower() for account in derived] != listed:
            raise DevnetError("eth_accounts are not the default mnemonic's; pass keys yourself")
        return derived

    def new_accounts(
        self, count: int, *, seed: str = "payer", eth: int = 100
    ) -> list[LocalAccount]:
        """`count` deterministic accounts with keys, each given `eth` ether for gas."""
        made = keyed_accounts(count, seed)
        self.fund([account.address for account in made], eth * _ETHER)
        return made

    def fund(self, addresses: Iterable[Sender], wei: int) -> None:
        self.batch([("anvil_setBalance", [address_of(a), hex(wei)]) for a in addresses])

    def eth_balance(self, who: Sender) -> int:
        return int(self.rpc("eth_getBalance", address_of(who), "latest"), 16)

    # --- contracts ----------------------------------------------------------------------

    def install_usdc(self, address: str = USDC_BASE) -> str:
        """Circle's real USDC (FiatTokenV2_2, verifier/devnet/usdc.py) at `address`, initialized;
        it becomes the default token. Mined in one block."""
        usdc.install(self, [address])
        self.usdc = address.lower()
        self._kinds.pop(self.usdc, None)
        return self.usdc

    def install_test_usdc(self, address: str = USDC_BASE) -> str:
        """The hand-written look-alike TestUSDC's runtime at `address` instead (empty storage, no
        block mined); it becomes the default. For tests that need USDC without EIP-3009."""
        self.rpc("anvil_setCode", address.lower(), solc.artifact("TestUSDC").runtime)
        self.usdc = address.lower()
        self._kinds.pop(self.usdc, None)
        return self.usdc

    def is_test_usdc(self, token: str | None = None) -> bool:
        """Is the token the hand-written TestUSDC (anyone mints), not the real FiatToken?"""
        address = self._token(token)
        if address not in self._kinds:
            self._kinds[address] = self.code(address) == solc.artifact("TestUSDC").runtime
        return self._kinds[address]

    def deploy(self, name: str, *args: Any, sender: Sender | None = None) -> str:
        """Deploy a contract from verifier/devnet/contracts; returns its address."""
        artifact = solc.artifact(name)
        constructor = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = constructor.constructor(*[_checksummed(a) for a in args]).data_in_transaction
        tx_hash = self.send({"from": self._sender(sender), "data": data})
        receipt = self._mined(tx_hash)
        return str(receipt["contractAddress"]).lower()

    def deploy_lookalike(self) -> str:
        """TestUSDC at a fresh address: same name, symbol and decimals, not USDC."""
        self.lookalike = self.deploy("TestUSDC")
        return self.lookalike

    def contract(self, name: str, address: str) -> Contract:
        """A web3 contract object, for reads (`.functions.x().call()`)."""
        abi = solc.artifact(name).abi
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abi)

    def token(self, address: str | None = None) -> Contract:
        """A web3 contract object for the token, with TestUSDC's or FiatTokenV2_2's ABI."""
        found = self._token(address)
        abi = solc.artifact("TestUSDC").abi if self.is_test_usdc(found) else usdc.fiat_token_abi()
        return self.w3.eth.contract(address=to_checksum_address(found), abi=abi)

    def code(self, address: str) -> str:
        return str(self.rpc("eth_getCode", address.lower(), "latest"))

    def helper(self, name: str) -> str:
        """A shared instance of a stateless helper contract (Batcher, Reverter, Router).

        Deployed on first use and redeployed if a revert or reorg removed it.
        """
        address = self._deployed.get(name)
        if address is None or self.code(address) in ("0x", ""):
            address = self._deployed[name] = self.deploy(name)
        return address

    # --- token operations ---------------------------------------------------------------

    def balance_of(self, owner: Sender, token: str | None = None) -> int:
        data = call_data("balanceOf(address)", ["address"], [address_of(owner)])
        return int(self.rpc("eth_call", {"to": self._token(token), "data": data}, "latest"), 16)

    def mint(self, to: Sender, amount: int, token: str | None = None) -> str:
        """Mint `amount` to `to`: on real USDC from its minter (usdc.roles()), on TestUSDC from
        anyone. Real USDC refuses an amount of 0 and amounts of 2**255 and more."""
        data = call_data("mint(address,uint256)", ["address", "uint256"], [address_of(to), amount])
        request = {"to": self._token(token), "data": data}
        if not self.is_test_usdc(token):
            request["from"] = usdc.roles().minter.address.lower()
        return self._mined_ok(self.send(request))

    def mint_many(
        self, grants: Sequence[tuple[Sender, int]], token: str | None = None, chunk: int = 250
    ) -> list[str]:
        """Mint to many holders: TestUSDC's mintMany, `chunk` holders per transaction; on real
        USDC (one mint per transaction), `chunk` mints per block. Hashes in mining order."""
        if not self.is_test_usdc(token):
            return self._mint_fiat_many(grants, self._token(token), chunk)
        hashes = []
        for start in range(0, len(grants), chunk):
            part = grants[start : start + chunk]
            data = call_data(
                "mintMany(address[],uint256[])",
                ["address[]", "uint256[]"],
                [[address_of(to) for to, _ in part], [amount for _, amount in part]],
            )
            hashes.append(self._mined_ok(self.send({"to": self._token(token), "data": data})))
        return hashes

    def _mint_fiat_many(
        self, grants: Sequence[tuple[Sender, int]], token: str, chunk: int
    ) -> list[str]:
        minter = usdc.roles().minter.address.lower()
        nonce = self._pending_nonces([minter])[minter]
        automine = self.automine()
        hashes: list[str] = []
        self.set_automine(False)
        try:
            for start in range(0, len(grants), chunk):
                calls = []
                for to, amount in grants[start : start + chunk]:
                    data = call_data("mint(address,uint256)", ["address", "uint256"],
                                     [address_of(to), amount])  # fmt: skip
                    request = {"from": minter, "to": token, "data": data, "nonce": hex(nonce),
                               "gas": hex(_MINT_GAS)}  # fmt: skip
                    calls.append(("eth_sendTransaction", [request]))
                    nonce += 1
                hashes += [str(h).lower() for h in self.batch(calls)]
                if automine:
                    self.rpc("evm_mine")
        finally:
            self.set_automine(automine)
        if automine:
            for tx_hash in hashes:
                self._mined_ok(tx_hash)
        return hashes

    # --- EIP-3009 (real USDC) ---------------------------------------------------------------

    def sign_authorization(
        self, payer: LocalAccount, auth: usdc.TransferAuthorization, token: str | None = None
    ) -> str:
        """The payer's EIP-712 signature of a TransferWithAuthorization for this chain's token."""
        return usdc.sign_authorization(payer.key, auth, chain_id=self.chain_id,
                                       token=self._token(token))  # fmt: skip

    def authorize_transfer(
        self,
        payer: LocalAccount,
        to: Sender,
        amount: int,
        *,
        token: str | None = None,
        **options: Any,
    ) -> tuple[usdc.TransferAuthorization, str]:
        """A new authorization (valid for an hour of chain time by default) and its signature.

        `options` go to TransferAuthorization.new (valid_for, valid_after, nonce).
        """
        now = int(self.block()["timestamp"], 16)
        auth = usdc.TransferAuthorization.new(payer.address, address_of(to), amount, now=now,
                                              **options)  # fmt: skip
        return auth, self.sign_authorization(payer, auth, token)

    def transfer_with_authorization(
        self,
        auth: usdc.TransferAuthorization,
        signature: str,
        *,
        sender: Sender | None = None,
        token: str | None = None,
    ) -> str:
        """Submit an authorization (as a facilitator would) from `sender` (default: the first
        dev account); the tx hash once mined. Raises DevnetError if it reverted."""
        data = usdc.transfer_with_authorization_data(auth, signature)
        request = {"from": self._sender(sender), "to": self._token(token), "data": data,
                   "gas": hex(_AUTHORIZATION_GAS)}  # fmt: skip
        return self._mined_ok(self.send(request))

    def pay_with_authorization(
        self,
        payer: LocalAccount,
        to: Sender,
        amount: int,
        *,
        sender: Sender | None = None,
        token: str | None = None,
    ) -> str:
        """Sign and submit a transferWithAuthorization in one go: an x402 "exact" settlement."""
        auth, signature = self.authorize_transfer(payer, to, amount, token=token)
        return self.transfer_with_authorization(auth, signature, sender=sender, token=token)

    def authorization_state(
        self, authorizer: Sender, nonce: bytes, token: str | None = None
    ) -> bool:
        """FiatToken's authorizationState(authorizer, nonce): has the nonce been used?"""
        data = call_data("authorizationState(address,bytes32)", ["address", "bytes32"],
                         [address_of(authorizer), nonce])  # fmt: skip
        answer = self.rpc("eth_call", {"to": self._token(token), "data": data}, "latest")
        return int(answer, 16) != 0

    def approve(self, owner: Sender, spender: str, amount: int, token: str | None = None) -> str:
        data = call_data("approve(address,uint256)", ["address", "uint256"], [spender, amount])
        return self._mined_ok(self.send({"from": address_of(owner), "to": self._token(token),
                                         "data": data}))  # fmt: skip

    def transfer(self, sender: Sender, to: Sender, amount: int, token: str | None = None) -> str:
        """A plain token transfer from `sender`; returns the tx hash once mined (automine).

        Raises DevnetError if it failed: anvil mines a failing transaction sent with
        eth_sendTransaction (with the block gas limit as its gas) instead of refusing it.
        """
        return self._mined_ok(self.send(self.transfer_request(sender, to, amount, token)))

    def transfer_request(
        self, sender: Sender, to: Sender, amount: int, token: str | None = None
    ) -> dict[str, Any]:
        """The eth_sendTransaction request of a transfer (for reorg(include=...) or batches)."""
        return {
            "from": address_of(sender),
            "to": self._token(token),
            "data": _transfer_data(address_of(to), amount),
        }

    def sign_transfer(
        self,
        account: LocalAccount,
        to: Sender,
        amount: int,
        *,
        token: str | None = None,
        nonce: int | None = None,
    ) -> str:
        """A transfer signed with the account's key, as raw 0x-hex (see send_raw, reorg)."""
        request = self.transfer_request(account, to, amount, token)
        if nonce is None:
            nonce = int(self.rpc("eth_getTransactionCount", account.address.lower(), "pending"), 16)
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(request["to"]),
            "data": request["data"],
            "gas": _TRANSFER_GAS,
            "maxFeePerGas": 100 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "value": 0,
        }
        return account.sign_transaction(tx).raw_transaction.to_0x_hex()

    def send_raw(self, raw: str, *, wait: bool = True) -> str:
        """eth_sendRawTransaction; like send(), waits for automine's receipt."""
        tx_hash = str(self.rpc("eth_sendRawTransaction", raw)).lower()
        if wait:
            self._wait_mined(tx_hash)
        return tx_hash

    def batch_pay(
        self, payer: Sender, payments: Sequence[tuple[Sender, int]], token: str | None = None
    ) -> str:
        """Pay several (to, amount) in one transaction through the Batcher contract."""
        batcher = self.helper("Batcher")
        self.approve(payer, batcher, sum(amount for _, amount in payments), token)
        data = call_data(
            "payMany(address,address[],uint256[])",
            ["address", "address[]", "uint256[]"],
            [self._token(token), [address_of(to) for to, _ in payments],
             [amount for _, amount in payments]],
        )  # fmt: skip
        return self._mined_ok(self.send({"from": address_of(payer), "to": batcher, "data": data}))

    def pull_many(
        self, caller: Sender, senders: Sequence[tuple[Sender, int]], to: Sender,
        token: str | None = None,
    ) -> str:
        """One transaction, sent by `caller`, moving each (sender, amount) straight to `to`
        through the Router (each sender approves it first)."""
        router = self.helper("Router")
        for sender, amount in senders:
            self.approve(sender, router, amount, token)
        data = call_data(
            "pullMany(address,address[],address,uint256[])",
            ["address", "address[]", "address", "uint256[]"],
            [self._token(token), [address_of(s) for s, _ in senders], address_of(to),
             [amount for _, amount in senders]],
        )  # fmt: skip
        return self._mined_ok(self.send({"from": address_of(caller), "to": router, "data": data}))

    def forward_pay(self, payer: Sender, to: Sender, amount: int, token: str | None = None) -> str:
        """`payer` pays `to` through the Router: the payee's Transfer log is from the router."""
        router = self.helper("Router")
        self.approve(payer, router, amount, token)
        data = call_data("forward(address,address,uint256)", ["address", "address", "uint256"],
                         [self._token(token), address_of(to), amount])  # fmt: skip
        return self._mined_ok(self.send({"from": address_of(payer), "to": router, "data": data}))

    def reverted_payment(
        self, payer: Sender, to: Sender, amount: int, token: str | None = None
    ) -> str:
        """A mined transaction (status 0) that transferred to `to` and then reverted."""
        reverter = self.helper("Reverter")
        self.approve(payer, reverter, amount, token)
        data = call_data(
            "payThenRevert(address,address,uint256)",
            ["address", "address", "uint256"],
            [self._token(token), address_of(to), amount],
        )
        # A reverting call cannot be estimated and anvil would then take the whole block gas
        # limit as the transaction's gas; a fixed limit keeps the transaction ordinary.
        request = {"from": address_of(payer), "to": reverter, "data": data, "gas": hex(300_000)}
        tx_hash = self.send(request)
        if self.automine() and self._mined(tx_hash)["status"] != "0x0":
            raise DevnetError(f"{tx_hash} was meant to revert and did not")
        return tx_hash

    def wallet_1271(self, owner: Sender) -> str:
        """A new Wallet1271 contract owned by `owner`; returns its address."""
        return self.deploy("Wallet1271", address_of(owner))

    def wallet_pay(
        self, wallet: str, owner: Sender, to: Sender, amount: int, token: str | None = None
    ) -> str:
        """The wallet contract pays `to` (the Transfer's from is the wallet), sent by its owner."""
        inner = self.transfer_request(wallet, to, amount, token)
        data = call_data("execute(address,bytes)", ["address", "bytes"],
                         [inner["to"], bytes.fromhex(inner["data"][2:])])  # fmt: skip
        request = {"from": address_of(owner), "to": wallet.lower(), "data": data}
        return self._mined_ok(self.send(request))

    def is_valid_signature(self, wallet: str, message: str, signature: str) -> bytes:
        """The wallet's EIP-1271 answer for an EIP-191 signature over `message` (4 bytes)."""
        data = call_data(
            "isValidSignature(bytes32,bytes)",
            ["bytes32", "bytes"],
            [eip191_hash(message), bytes.fromhex(signature.removeprefix("0x"))],
        )
        answer = self.rpc("eth_call", {"to": wallet.lower(), "data": data}, "latest")
        return bytes.fromhex(answer[2:])[:4]

    @staticmethod
    def sign_claim(private_key: str | bytes, message: str) -> str:
        return sign_claim(private_key, message)

    # --- bulk ---------------------------------------------------------------------------

    def bulk_transfers(
        self,
        transfers: Sequence[tuple[Sender, Sender, int]],
        *,
        per_block: int = 5,
        token: str | None = None,
        check: bool = True,
    ) -> list[str]:
        """Send (payer, to, amount) transfers, `per_block` of them in each new block.

        Automine is off meanwhile (restored after): each block's transfers go as one JSON-RPC
        batch of eth_sendTransaction with explicit nonces and gas, then one block is mined.
        With `check`, every transfer must have left its Transfer log (none failed).
        Payers need ETH (new_accounts) and USDC (mint_many).
        """
        token_address = self._token(token)
        first_block = self.head() + 1
        nonces = self._pending_nonces({address_of(payer) for payer, _, _ in transfers})
        was_automine = self.automine()
        self.set_automine(False)
        hashes: list[str] = []
        try:
            for start in range(0, len(transfers), per_block):
                calls = []
                for payer, to, amount in transfers[start : start + per_block]:
                    request = self.transfer_request(payer, to, amount, token_address)
                    request["nonce"] = hex(nonces[request["from"]])
                    request["gas"] = hex(_TRANSFER_GAS)
                    nonces[request["from"]] += 1
                    calls.append(("eth_sendTransaction", [request]))
                hashes += [str(h).lower() for h in self.batch(calls)]
                self.rpc("evm_mine")
        finally:
            self.set_automine(was_automine)
        if check:
            self._check_bulk(hashes, first_block, token_address)
        return hashes

    def _check_bulk(self, hashes: Sequence[str], first_block: int, token: str) -> None:
        logged: set[str] = set()
        last = self.head()
        for start in range(first_block, last + 1, 2_000):
            logs = self.transfer_logs(start, min(start + 1_999, last), token=token)
            logged.update(log["transactionHash"].lower() for log in logs)
        missing = [h for h in hashes if h not in logged]
        if missing:
            raise DevnetError(f"{len(missing)} of {len(hashes)} transfers left no log, e.g. "
                              f"{missing[0]} (out of USDC or ETH?)")  # fmt: skip

    def _pending_nonces(self, addresses: Iterable[str]) -> dict[str, int]:
        ordered = sorted(addresses)
        counts = self.batch([("eth_getTransactionCount", [a, "pending"]) for a in ordered])
        return {a: int(count, 16) for a, count in zip(ordered, counts, strict=True)}

    # --- internals ----------------------------------------------------------------------

    def send(self, request: dict[str, Any], *, wait: bool = True) -> str:
        """eth_sendTransaction (from defaults to the first dev account); the 0x tx hash.

        With `wait` and automine on, returns once the receipt is queryable: anvil answers
        eth_sendTransaction before its automine has sealed the block (measured: 17 of 500
        transfers had no receipt yet when the hash came back).
        """
        request = {"from": self._sender(None), **request}
        tx_hash = str(self.rpc("eth_sendTransaction", request)).lower()
        if wait:
            self._wait_mined(tx_hash)
        return tx_hash

    def _wait_mined(self, tx_hash: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The receipt once mined; None at once if automine is off and it is not mined."""
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.receipt(tx_hash)
            if receipt is not None:
                return receipt
            if not self.automine():
                return None
            if time.monotonic() > deadline:
                raise DevnetError(f"{tx_hash} not mined after {timeout} s with automine on")
            time.sleep(0.002)

    def _mined(self, tx_hash: str) -> dict[str, Any]:
        receipt = self._wait_mined(tx_hash)
        if receipt is None:
            raise DevnetError(f"{tx_hash} is not mined (automine off? call mine())")
        return receipt

    def _mined_ok(self, tx_hash: str) -> str:
        """With automine on, insist the transaction succeeded; with it off, just the hash."""
        receipt = self._wait_mined(tx_hash)
        if receipt is not None and receipt["status"] != "0x1":
            raise DevnetError(f"{tx_hash} failed (status {receipt['status']})")
        return tx_hash

    def _sender(self, sender: Sender | None) -> str:
        return address_of(sender) if sender is not None else self.accounts[0].address.lower()

    def _token(self, token: str | None) -> str:
        address = token or self.usdc
        if address is None:
            raise DevnetError("no token: call install_usdc() first or pass token=")
        return address.lower()


def _transfer_data(to: str, amount: int) -> str:
    """transfer(address,uint256) calldata, encoded by hand: eth_abi costs ~0.1 ms a call,
    a tenth of what the node needs to accept a bulk transfer."""
    if not 0 <= amount < 2**256:
        raise ValueError(f"amount out of uint256 range: {amount}")
    return "0xa9059cbb" + to[2:].rjust(64, "0") + format(amount, "064x")


def _with_gas(tx: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(tx, dict) and "gas" not in tx:
        return {**tx, "gas": hex(300_000)}
    return tx


def _checksummed(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value
