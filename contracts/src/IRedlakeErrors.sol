// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IRedlakeErrors
/// @notice The errors both Redlake contracts raise, declared once so each has one name and one
///         selector wherever it comes from. IDatasetRegistry and IUsageAgreements inherit them
///         (the way OpenZeppelin's IERC20Errors is inherited by its token).
/// @dev Naming: an error names its subject, then what is wrong with it (`DatasetInactive`,
///      `OfferUnknown`, `CallsExhausted`); a caller lacking a role on a thing is
///      `Not<Thing><Role>` (`NotDatasetProvider`, `NotOfferProvider`, `NotAgreementConsumer`),
///      one error per kind of id, so the name says what its id parameter is.
interface IRedlakeErrors {
    /// @notice Raised when a dataset must be active and is not: retired in the registry, or (read
    ///         by UsageAgreements, which sees an unknown dataset as an inactive entry) never
    ///         registered.
    /// @param datasetId The dataset.
    error DatasetInactive(bytes32 datasetId);

    /// @notice Raised when the caller is not the dataset's registered provider, or when a
    ///         registration names a provider the dataset id is not bound to (a front-run of
    ///         another provider's id).
    /// @param datasetId The dataset.
    /// @param caller The address that is not its provider.
    error NotDatasetProvider(bytes32 datasetId, address caller);

    /// @notice Raised when a relayed EIP-712 signature is used after its deadline.
    /// @param deadline The last timestamp at which the signature could be used.
    /// @param nowTimestamp The current block's timestamp.
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);

    /// @notice Raised when a relayed EIP-712 signature is malformed or not made by the address
    ///         that had to sign (also when it was made for another nonce, i.e. replayed).
    /// @param recovered The address recovered from the signature (zero if none could be).
    /// @param expected The address that had to sign: the provider or the consumer.
    error InvalidSignature(address recovered, address expected);
}
