// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

import {ICustodianRegistry} from "./ICustodianRegistry.sol";

/// @title CustodianRegistry
/// @notice The key custodian's receipt-signing addresses over time (documented on
///         ICustodianRegistry).
contract CustodianRegistry is ICustodianRegistry, Ownable2Step {
    Rotation[] private _rotations;

    /// @param owner The platform operator, who alone registers and rotates the custodian.
    constructor(address owner) Ownable(owner) {}

    /// @inheritdoc ICustodianRegistry
    function rotate(address custodian) external onlyOwner {
        if (custodian == address(0)) revert ZeroCustodian();
        address previous = current();
        if (custodian == previous) revert CustodianUnchanged(custodian);
        _rotations.push(Rotation(custodian, uint64(block.number)));
        emit CustodianRotated(previous, custodian, uint64(block.number));
    }

    /// @inheritdoc ICustodianRegistry
    function current() public view returns (address) {
        uint256 count = _rotations.length;
        return count == 0 ? address(0) : _rotations[count - 1].custodian;
    }

    /// @inheritdoc ICustodianRegistry
    function custodianAt(uint256 blockNumber) external view returns (address) {
        // The last rotation whose validFrom <= blockNumber: binary search over the history,
        // which is sorted by block (rotations only append, at the current block).
        uint256 low = 0;
        uint256 high = _rotations.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (_rotations[mid].validFrom > blockNumber) high = mid;
            else low = mid + 1;
        }
        if (low == 0) revert NoCustodianAt(blockNumber);
        return _rotations[low - 1].custodian;
    }

    /// @inheritdoc ICustodianRegistry
    function rotationCount() external view returns (uint256) {
        return _rotations.length;
    }

    /// @inheritdoc ICustodianRegistry
    function rotationAt(uint256 index) external view returns (Rotation memory) {
        return _rotations[index];
    }
}
