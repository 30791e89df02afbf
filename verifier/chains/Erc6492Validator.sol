// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// ERC-6492 off-chain signature validation. Never deployed: its creation code, followed by the
/// ABI-encoded constructor arguments, is the data of an eth_call without `to`, and what the
/// constructor returns is the call's answer: one byte, 0x01 when `signer` approves `signature`
/// for `hash` (EIP-1271), else 0x00. A signature ending with the 6492 suffix is unwrapped
/// (factory, factory call data, inner signature); when `signer` has no code yet, the factory
/// call deploys it first, inside the simulated call only. When a deployed signer refuses, the
/// factory call is made once and the signer asked again (the 6492 "prepare" step).
/// The compiled creation code is VALIDATOR_CREATION_CODE in verifier/chains/evm_signatures.py
/// (tests/evm/test_contract_wallets.py checks that it is this source, compiled).
contract Erc6492Validator {
    bytes32 private constant SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;
    bytes4 private constant MAGIC = 0x1626ba7e;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = _valid(signer, hash, signature);
        assembly {
            mstore(0, valid)
            return(31, 1)
        }
    }

    function _valid(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        if (!_wrapped(signature)) {
            return signer.code.length > 0 && _approves(signer, hash, signature);
        }
        (address factory, bytes memory factoryCall, bytes memory inner) =
            abi.decode(_unwrapped(signature), (address, bytes, bytes));
        bool deployed = signer.code.length > 0;
        if (deployed && _approves(signer, hash, inner)) {
            return true;
        }
        (bool ok,) = factory.call(factoryCall);
        return ok && signer.code.length > 0 && _approves(signer, hash, inner);
    }

    function _approves(address signer, bytes32 hash, bytes memory signature) private view returns (bool) {
        (bool ok, bytes memory answer) =
            signer.staticcall(abi.encodeWithSelector(MAGIC, hash, signature));
        if (!ok || answer.length < 32) {
            return false;
        }
        bytes32 word;
        assembly {
            word := mload(add(answer, 32))
        }
        return bytes4(word) == MAGIC;
    }

    function _wrapped(bytes memory signature) private pure returns (bool) {
        if (signature.length < 32) {
            return false;
        }
        bytes32 tail;
        assembly {
            tail := mload(add(signature, mload(signature)))
        }
        return tail == SUFFIX;
    }

    function _unwrapped(bytes memory signature) private pure returns (bytes memory) {
        assembly {
            mstore(signature, sub(mload(signature), 32)) // the suffix cut off, in place
        }
        return signature;
    }
}
