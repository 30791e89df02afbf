"""The official SDK's EVM "exact" verification, run from the asyncio daemon.

The SDK's facilitator schemes (``x402.mechanisms.evm.exact.ExactEvmScheme`` for v2,
``...exact.v1.facilitator.ExactEvmSchemeV1`` for v1) are synchronous and read the chain through
a ``FacilitatorEvmSigner``. We reuse their ``verify`` whole (scheme/network/EIP-712 domain,
recipient, value, validity window, EIP-712 digest and EOA / EIP-1271 / ERC-6492 signature,
asset code, ``transferWithAuthorization`` simulation with ``eth_call`` and the mapping of its
revert to a reason code), so the same bad payload gets the reference's code in the reference's
order. It runs in a worker thread (``asyncio.to_thread``); its chain reads come back to the
event loop through ``ChainReader`` and go out over our own failover RPC client.

Settlement is NOT the SDK's: its ``settle`` broadcasts with a nonce from the node and keeps
pending settlements in memory. Ours (verifier.x402.settler) takes a durable ledger entry first
and allocates nonces in PostgreSQL, so ``ChainReader`` refuses every write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils.abi import collapse_if_tuple, function_abi_to_4byte_selector
from x402.mechanisms.evm.exact.facilitator import ExactEvmScheme
from x402.mechanisms.evm.exact.v1.facilitator import ExactEvmSchemeV1
from x402.schemas import PaymentPayload, PaymentRequirements, VerifyResponse
from x402.schemas.v1 import PaymentRequirementsV1

from verifier.addresses import display_evm_address
from verifier.errors import FinalRpcError
from verifier.rpc.client import RpcClient

from .wire import FacilitatorRequest

T = TypeVar("T")
READ_TIMEOUT = 30.0


class ContractReverted(Exception):
    """An eth_call reverted. Its text carries the node's message ("execution reverted: ..."),
    which the SDK maps to a reason code (parse_eip3009_transfer_error)."""


class WritesRefused(RuntimeError):
    pass


class ChainReader:
    """A read-only ``FacilitatorEvmSigner`` over our RPC client, callable from a worker thread."""

    def __init__(self, rpc: RpcClient, loop: asyncio.AbstractEventLoop, chain_id: int,
                 signers: Sequence[str]):
        self.rpc = rpc
        self.loop = loop
        self.chain_id = chain_id
        self.signers = [display_evm_address(s) for s in signers]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(READ_TIMEOUT)

    # -- reads --------------------------------------------------------------------------------

    def get_addresses(self) -> list[str]:
        return list(self.signers)

    def get_chain_id(self) -> int:
        return self.chain_id

    def get_code(self, address: str) -> bytes:
        code = self._run(self.rpc.request("eth_getCode", [address.lower(), "latest"]))
        return bytes.fromhex(str(code).removeprefix("0x"))

    def read_contract(self, address: str, abi: list[dict[str, Any]], function_name: str,
                      *args: Any) -> Any:
        fn = _function(abi, function_name, len(args))
        types = [collapse_if_tuple(dict(i)) for i in fn["inputs"]]
        selector = function_abi_to_4byte_selector(fn)  # type: ignore[arg-type]
        data = "0x" + (selector + abi_encode(types, list(args))).hex()
        try:
            result = self._run(self.rpc.request(
                "eth_call", [{"to": address.lower(), "data": data}, "latest"]))
        except FinalRpcError as exc:
            if "revert" in str(exc).lower():
                raise ContractReverted(str(exc)) from exc
            raise
        outputs = [collapse_if_tuple(dict(o)) for o in fn.get("outputs", [])]
        if not outputs:
            return None
        decoded = abi_decode(outputs, bytes.fromhex(str(result).removeprefix("0x")))
        return decoded[0] if len(decoded) == 1 else decoded

    def get_balance(self, address: str, token_address: str) -> int:
        abi = [{"type": "function", "name": "balanceOf", "stateMutability": "view",
                "inputs": [{"name": "a", "type": "address"}],
                "outputs": [{"name": "", "type": "uint256"}]}]
        return int(self.read_contract(token_address, abi, "balanceOf", address))

    def verify_typed_data(self, *args: Any, **kwargs: Any) -> bool:
        # Used by the SDK's Permit2 paths only, which this facilitator does not accept.
        raise WritesRefused("typed-data verification (Permit2) is not offered")

    # -- writes: never through the SDK ---------------------------------------------------------

    def write_contract(self, *args: Any, **kwargs: Any) -> str:
        raise WritesRefused("settlement goes through verifier.x402.settler")

    def send_transaction(self, *args: Any, **kwargs: Any) -> str:
        raise WritesRefused("settlement goes through verifier.x402.settler")

    def wait_for_transaction_receipt(self, *args: Any, **kwargs: Any) -> Any:
        raise WritesRefused("settlement goes through verifier.x402.settler")


def _function(abi: list[dict[str, Any]], name: str, arity: int) -> dict[str, Any]:
    for item in abi:
        if item.get("type", "function") == "function" and item.get("name") == name \
                and len(item.get("inputs", [])) == arity:
            return item
    raise ValueError(f"no function {name} with {arity} arguments in the ABI")


class SdkVerifier:
    """The SDK's v2 and v1 exact-EVM ``verify`` for one chain, awaited off the event loop."""

    def __init__(self, reader: ChainReader):
        self.reader = reader
        self.v2 = ExactEvmScheme(reader)  # type: ignore[arg-type]
        self.v1 = ExactEvmSchemeV1(reader)  # type: ignore[arg-type]

    async def verify(self, req: FacilitatorRequest) -> VerifyResponse:
        if isinstance(req.payload, PaymentPayload):
            assert isinstance(req.requirements, PaymentRequirements)
            return await asyncio.to_thread(self.v2.verify, req.payload, req.requirements)
        assert isinstance(req.requirements, PaymentRequirementsV1)
        return await asyncio.to_thread(self.v1.verify, req.payload, req.requirements)
