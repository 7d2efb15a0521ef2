// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IAlgorithmApprovals
/// @notice Which algorithms a provider lets run on a dataset through an offer, and in which
///         kinds of trusted execution environment. An algorithm is named by its measurement: the
///         SHA-256 over its bundle and the sandbox profile it runs in, so a changed algorithm or
///         a changed sandbox is a new measurement that needs its own approval. An offer with no
///         approval denies every algorithm. The key custodian releases a dataset's key to an
///         enclave only for a measurement approved here, for the enclave's TEE type.
/// @dev TEE types are bits of a mask (TEE_SANDBOX, TEE_NITRO, TEE_SGX, TEE_TDX, TEE_SEV_SNP). The
///      sandbox bit is how a provider explicitly allows the SIMULATED sandbox backend, which
///      proves nothing a hardware TEE proves: the platform refuses sandbox evidence for an
///      approval without it.
interface IAlgorithmApprovals {
    /// @notice Emitted when a provider approves a measurement for an offer, or changes the TEE
    ///         types it may run in.
    /// @param offerId The offer (in UsageAgreements).
    /// @param measurement The algorithm's measurement.
    /// @param provider The offer's provider, who approved it.
    /// @param teeTypes The TEE types it may run in (a mask of TEE_* bits).
    /// @param bundleHash SHA-256 of the algorithm bundle alone, so the code a provider reviewed
    ///        can be found and compared off chain.
    event AlgorithmApproved(
        uint256 indexed offerId, bytes32 indexed measurement, address indexed provider, uint8 teeTypes, bytes32 bundleHash
    );

    /// @notice Emitted when a provider revokes an approval: no key is released for it any more.
    /// @param offerId The offer.
    /// @param measurement The measurement no longer approved.
    event AlgorithmRevoked(uint256 indexed offerId, bytes32 indexed measurement);

    /// @notice Raised when someone other than the offer's provider approves or revokes.
    /// @param offerId The offer.
    /// @param caller The address that is not its provider.
    error NotApprovingProvider(uint256 offerId, address caller);

    /// @notice Raised when approving with no TEE type or a bit no TEE type has.
    /// @param teeTypes The mask given.
    error InvalidTeeTypes(uint8 teeTypes);

    /// @notice Raised when approving a zero measurement.
    error ZeroMeasurement();

    /// @notice Raised when revoking a measurement that is not approved for the offer.
    /// @param offerId The offer.
    /// @param measurement The measurement.
    error AlgorithmNotApproved(uint256 offerId, bytes32 measurement);

    /// @notice Approves `measurement` for `offerId` in the TEE types of `teeTypes` (the offer's
    ///         provider only); approving again replaces the mask.
    /// @param offerId The offer, published by the caller.
    /// @param measurement The algorithm's measurement.
    /// @param teeTypes A non-empty mask of TEE_* bits.
    /// @param bundleHash SHA-256 of the bundle the provider reviewed.
    function approve(uint256 offerId, bytes32 measurement, uint8 teeTypes, bytes32 bundleHash) external;

    /// @notice Revokes an approval (the offer's provider only).
    /// @param offerId The offer, published by the caller.
    /// @param measurement A measurement approved for it.
    function revoke(uint256 offerId, bytes32 measurement) external;

    /// @notice The TEE types `measurement` may run in for `offerId` (0: not approved).
    /// @param offerId The offer.
    /// @param measurement The measurement.
    /// @return teeTypes A mask of TEE_* bits.
    function approvedTeeTypes(uint256 offerId, bytes32 measurement) external view returns (uint8 teeTypes);

    /// @notice True if `measurement` may run for `offerId` in the TEE type `teeType` (one bit).
    /// @param offerId The offer.
    /// @param measurement The measurement.
    /// @param teeType One TEE_* bit.
    /// @return approved Whether the key custodian may release a key for it.
    function isApproved(uint256 offerId, bytes32 measurement, uint8 teeType) external view returns (bool approved);

    /// @notice The SIMULATED sandbox backend (bubblewrap, seccomp, cgroups; no hardware proof).
    function TEE_SANDBOX() external view returns (uint8);

    /// @notice AWS Nitro Enclaves.
    function TEE_NITRO() external view returns (uint8);

    /// @notice Intel SGX (DCAP).
    function TEE_SGX() external view returns (uint8);

    /// @notice Intel TDX (DCAP).
    function TEE_TDX() external view returns (uint8);

    /// @notice AMD SEV-SNP.
    function TEE_SEV_SNP() external view returns (uint8);
}
