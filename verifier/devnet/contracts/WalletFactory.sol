// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./Wallet1271.sol";

/// Deploys Wallet1271 contracts with CREATE2, so a wallet's address is known (and can be paid
/// from, or signed for with ERC-6492) before it is deployed.
contract WalletFactory {
    function deploy(address owner, bytes32 salt) external returns (address wallet) {
        wallet = address(new Wallet1271{salt: salt}(owner));
    }

    function addressOf(address owner, bytes32 salt) external view returns (address) {
        bytes32 code = keccak256(abi.encodePacked(type(Wallet1271).creationCode, abi.encode(owner)));
        return address(uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, code)))));
    }
}
