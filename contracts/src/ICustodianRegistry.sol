// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ICustodianRegistry
/// @notice The key custodian's receipt-signing address, and every address it had before: an
///         auditor checks a release receipt by recovering its signer and asking which custodian
///         address was valid at the receipt's block. The platform operator (the owner) registers
///         the first address and rotates it; each change is an event with the block it takes
///         effect from, so the whole history is public and append-only.
/// @dev An address is valid from its rotation's block (inclusive) until the next rotation's
///      block (exclusive). Two rotations in one block: the later one holds for that block (the
///      earlier one is never valid anywhere and stays in the history as a record).
interface ICustodianRegistry {
    /// @notice One entry of the custodian's history.
    /// @param custodian The receipt-signing address.
    /// @param validFrom The first block at which it signs for the platform.
    struct Rotation {
        address custodian;
        uint64 validFrom;
    }

    /// @notice Emitted when the custodian's receipt address is registered or rotated.
    /// @param previous The address valid until now (zero for the first registration).
    /// @param custodian The new receipt-signing address.
    /// @param validFrom The block from which it is valid (the block of this change).
    event CustodianRotated(address indexed previous, address indexed custodian, uint64 validFrom);

    /// @notice Raised when rotating to the zero address.
    error ZeroCustodian();

    /// @notice Raised when rotating to the address already valid.
    /// @param custodian The current address.
    error CustodianUnchanged(address custodian);

    /// @notice Raised when asking for the custodian at a block before the first registration.
    /// @param blockNumber The block asked about.
    error NoCustodianAt(uint256 blockNumber);

    /// @notice Registers the custodian's first receipt address or replaces it, from this block
    ///         on (owner only). Receipts signed by the old address stay valid for the blocks it
    ///         was valid at.
    /// @param custodian The new receipt-signing address (not zero, not the current one).
    function rotate(address custodian) external;

    /// @notice The receipt-signing address valid now.
    /// @return The current custodian address (zero before the first registration).
    function current() external view returns (address);

    /// @notice The receipt-signing address valid at a block.
    /// @param blockNumber Any block at or after the first registration (else NoCustodianAt).
    /// @return The custodian address valid at that block.
    function custodianAt(uint256 blockNumber) external view returns (address);

    /// @notice How many rotations (the first registration included) the history holds.
    /// @return The number of entries.
    function rotationCount() external view returns (uint256);

    /// @notice One entry of the history, oldest first.
    /// @param index 0 .. rotationCount() - 1.
    /// @return The address and the block it became valid at.
    function rotationAt(uint256 index) external view returns (Rotation memory);
}
