// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title DevToken
/// @notice A mintable ERC-20 for development chains (anvil): demo users pay with it.
contract DevToken is ERC20, AccessControl {
    /// @notice The role allowed to mint.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @param admin Holder of DEFAULT_ADMIN_ROLE and MINTER_ROLE.
    constructor(address admin) ERC20("Redlake Dev Euro", "rEUR") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Mints `amount` to `to` (minter only).
    /// @param to The account credited.
    /// @param amount Amount in the token's smallest unit (18 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
