// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A wallet whose signatures are long, as passkey (WebAuthn) smart wallets' are: 65 bytes of
/// the owner's ECDSA signature over keccak256(hash, keccak256(clientData)), followed by the
/// client data itself (hundreds of bytes). Any change to either part is refused.
contract LongSigWallet {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;
    uint256 public constant MIN_CLIENT_DATA = 256;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length < 65 + MIN_CLIENT_DATA) {
            return INVALID;
        }
        bytes32 digest = keccak256(abi.encodePacked(hash, keccak256(signature[65:])));
        uint8 v = uint8(signature[64]);
        if (v < 27) {
            v += 27;
        }
        address signer = ecrecover(digest, v, bytes32(signature[0:32]), bytes32(signature[32:64]));
        return (signer != address(0) && signer == owner) ? MAGIC_VALUE : INVALID;
    }

    function execute(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "not owner");
        (bool ok, bytes memory result) = target.call(data);
        require(ok, "call failed");
        return result;
    }
}
