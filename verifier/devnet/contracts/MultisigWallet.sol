// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A Safe-like multisig: `threshold` of its owners must sign. EIP-1271 accepts a signature that
/// is `threshold` 65-byte ECDSA signatures of the hash, concatenated in ascending order of
/// their signers' addresses (as a Safe orders them), each by a distinct owner.
contract MultisigWallet {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;

    mapping(address => bool) public isOwner;
    uint256 public immutable threshold;

    constructor(address[] memory owners, uint256 threshold_) {
        require(threshold_ > 0 && threshold_ <= owners.length, "bad threshold");
        for (uint256 i = 0; i < owners.length; ++i) {
            isOwner[owners[i]] = true;
        }
        threshold = threshold_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signatures) external view returns (bytes4) {
        if (signatures.length < threshold * 65) {
            return INVALID;
        }
        address last = address(0);
        for (uint256 i = 0; i < threshold; ++i) {
            bytes calldata one = signatures[i * 65:(i + 1) * 65];
            uint8 v = uint8(one[64]);
            if (v < 27) {
                v += 27;
            }
            address signer = ecrecover(hash, v, bytes32(one[0:32]), bytes32(one[32:64]));
            if (signer <= last || !isOwner[signer]) {
                return INVALID;
            }
            last = signer;
        }
        return MAGIC_VALUE;
    }

    function execute(address target, bytes calldata data) external returns (bytes memory) {
        require(isOwner[msg.sender], "not owner");
        (bool ok, bytes memory result) = target.call(data);
        require(ok, "call failed");
        return result;
    }
}
