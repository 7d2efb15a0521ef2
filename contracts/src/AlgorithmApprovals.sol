// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAlgorithmApprovals} from "./IAlgorithmApprovals.sol";
import {IUsageAgreements} from "./IUsageAgreements.sol";

/// @title AlgorithmApprovals
/// @notice Providers' approvals of algorithm measurements per offer (documented on
///         IAlgorithmApprovals).
/// @dev Kept out of UsageAgreements: approvals change after an offer is published (an offer's
///      terms never do), and UsageAgreements' recording path need not pay for them. Who may
///      approve is read from the offer itself, so there is no second list of providers to keep
///      in step.
contract AlgorithmApprovals is IAlgorithmApprovals {
    /// @inheritdoc IAlgorithmApprovals
    uint8 public constant TEE_SANDBOX = 1;
    /// @inheritdoc IAlgorithmApprovals
    uint8 public constant TEE_NITRO = 2;
    /// @inheritdoc IAlgorithmApprovals
    uint8 public constant TEE_SGX = 4;
    /// @inheritdoc IAlgorithmApprovals
    uint8 public constant TEE_TDX = 8;
    /// @inheritdoc IAlgorithmApprovals
    uint8 public constant TEE_SEV_SNP = 16;
    uint8 private constant _ALL_TEE_TYPES = 31;

    /// @notice The offers whose provider may approve.
    IUsageAgreements public immutable agreements;

    mapping(uint256 offerId => mapping(bytes32 measurement => uint8 teeTypes)) private _approved;

    /// @param agreements_ The UsageAgreements contract whose offers approvals belong to.
    constructor(IUsageAgreements agreements_) {
        agreements = agreements_;
    }

    /// @inheritdoc IAlgorithmApprovals
    function approve(uint256 offerId, bytes32 measurement, uint8 teeTypes, bytes32 bundleHash) external {
        _onlyProvider(offerId);
        if (measurement == bytes32(0)) revert ZeroMeasurement();
        if (teeTypes == 0 || teeTypes & ~_ALL_TEE_TYPES != 0) revert InvalidTeeTypes(teeTypes);
        _approved[offerId][measurement] = teeTypes;
        emit AlgorithmApproved(offerId, measurement, msg.sender, teeTypes, bundleHash);
    }

    /// @inheritdoc IAlgorithmApprovals
    function revoke(uint256 offerId, bytes32 measurement) external {
        _onlyProvider(offerId);
        if (_approved[offerId][measurement] == 0) revert AlgorithmNotApproved(offerId, measurement);
        delete _approved[offerId][measurement];
        emit AlgorithmRevoked(offerId, measurement);
    }

    /// @inheritdoc IAlgorithmApprovals
    function approvedTeeTypes(uint256 offerId, bytes32 measurement) external view returns (uint8) {
        return _approved[offerId][measurement];
    }

    /// @inheritdoc IAlgorithmApprovals
    function isApproved(uint256 offerId, bytes32 measurement, uint8 teeType) external view returns (bool) {
        return teeType != 0 && _approved[offerId][measurement] & teeType == teeType;
    }

    /// @dev Reverts unless the caller published the offer (an unknown offer has no provider).
    function _onlyProvider(uint256 offerId) private view {
        if (agreements.getOffer(offerId).provider != msg.sender) revert NotApprovingProvider(offerId, msg.sender);
    }
}
