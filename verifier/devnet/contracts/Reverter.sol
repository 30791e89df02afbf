// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./IERC20.sol";

/// Pays a recipient (pulling from the approved caller) and then reverts, so the transfer
/// happened during execution but the mined transaction has status 0 and no logs.
contract Reverter {
    error PaidThenReverted(address to, uint256 amount);

    function payThenRevert(address token, address to, uint256 amount) external {
        require(IERC20(token).transferFrom(msg.sender, to, amount), "transfer failed");
        revert PaidThenReverted(to, amount);
    }
}
