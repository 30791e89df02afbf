// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./IERC20.sol";

/// Pays several recipients in one transaction, pulling the tokens from the caller (who
/// approves this contract first). The recipient sees a Transfer log emitted during a call
/// to a contract, not a top-level token transfer; one payee may appear more than once.
contract Batcher {
    function payMany(address token, address[] calldata to, uint256[] calldata amounts) external {
        require(to.length == amounts.length, "length mismatch");
        for (uint256 i = 0; i < to.length; ++i) {
            require(IERC20(token).transferFrom(msg.sender, to[i], amounts[i]), "transfer failed");
        }
    }
}
