// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./IERC20.sol";

/// Payments made through a contract that is no wallet (it has no EIP-1271):
///   pullMany  anyone calls it; each sender's approved amount goes straight to `to`, so one
///             transaction carries Transfer logs from several senders;
///   forward   the caller's tokens come in, then this contract pays `to`: the payee's Transfer
///             log names the router, and only the transaction's `from` is the caller.
contract Router {
    function pullMany(address token, address[] calldata from, address to,
                      uint256[] calldata amounts) external {
        require(from.length == amounts.length, "length mismatch");
        for (uint256 i = 0; i < from.length; ++i) {
            require(IERC20(token).transferFrom(from[i], to, amounts[i]), "transfer failed");
        }
    }

    function forward(address token, address to, uint256 amount) external {
        require(IERC20(token).transferFrom(msg.sender, address(this), amount), "pull failed");
        require(IERC20(token).transfer(to, amount), "pay failed");
    }
}
