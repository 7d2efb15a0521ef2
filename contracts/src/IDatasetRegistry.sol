// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRedlakeErrors} from "./IRedlakeErrors.sol";

/// @title IDatasetRegistry
/// @notice Who provides each dataset, and the hashes of its metadata and content. Only the
///         provider changes an entry: directly, or through an operator relaying the provider's
///         EIP-712 signature (for providers whose key the platform holds in custody).
///         A dataset id is bound to its provider: its first 16 bytes are the first 16 bytes of
///         the provider's address (the platform puts the dataset's UUID in the last 16), so
///         nobody can register, and thereby block, an id that belongs to another provider.
/// @dev The external surface of DatasetRegistry and its documentation, which the implementation
///      inherits (NatSpec inheritdoc). A relayed change is signed as
///      DatasetChange(bytes32 datasetId,uint8 action,bytes32 metadataHash,bytes32 contentHash,uint256 nonce,uint256 deadline)
///      under the domain ("Redlake DatasetRegistry", "1", chainId, the registry), with the
///      dataset's next nonce (`nonces(datasetId)`) and zero hashes for a retirement.
interface IDatasetRegistry is IRedlakeErrors {
    /// @notice A dataset's registry entry.
    /// @param provider Who registered it and alone may change it (zero if never registered).
    /// @param active False once retired: no new offers or agreements may use it.
    /// @param metadataHash Hash of the dataset's metadata document.
    /// @param contentHash SHA-256 of the raw content the platform sealed at ingest.
    struct Dataset {
        address provider;
        bool active;
        bytes32 metadataHash;
        bytes32 contentHash;
    }

    /// @notice Emitted when a dataset is registered (directly or relayed).
    /// @param datasetId The platform's id for the dataset.
    /// @param provider Its provider.
    /// @param metadataHash Hash of its metadata document.
    /// @param contentHash SHA-256 of its raw content.
    event DatasetRegistered(bytes32 indexed datasetId, address indexed provider, bytes32 metadataHash, bytes32 contentHash);

    /// @notice Emitted when a dataset's hashes are replaced.
    /// @param datasetId The dataset.
    /// @param metadataHash The new hash of its metadata document.
    /// @param contentHash The new SHA-256 of its raw content.
    event DatasetUpdated(bytes32 indexed datasetId, bytes32 metadataHash, bytes32 contentHash);

    /// @notice Emitted when a dataset is retired.
    /// @param datasetId The dataset.
    event DatasetRetired(bytes32 indexed datasetId);

    /// @notice Raised when registering a dataset id that is already registered (active or not).
    /// @param datasetId The dataset.
    error DatasetExists(bytes32 datasetId);

    /// @notice Raised when changing, or asking for the active provider of, a dataset id that was
    ///         never registered.
    /// @param datasetId The dataset.
    error DatasetUnknown(bytes32 datasetId);

    /// @notice Raised when registering or updating a dataset with a zero metadata or content hash.
    /// @param datasetId The dataset.
    error ZeroHash(bytes32 datasetId);

    /// @notice The role allowed to relay providers' signed changes (the platform's relayer).
    /// @return The role id, keccak256("OPERATOR_ROLE").
    function OPERATOR_ROLE() external view returns (bytes32);

    /// @notice The `action` of a signed registration.
    /// @return 0.
    function ACTION_REGISTER() external view returns (uint8);

    /// @notice The `action` of a signed update.
    /// @return 1.
    function ACTION_UPDATE() external view returns (uint8);

    /// @notice The `action` of a signed retirement.
    /// @return 2.
    function ACTION_RETIRE() external view returns (uint8);

    /// @notice The nonce the next signed change of a dataset must carry. Per dataset, not per
    ///         provider: changes to one dataset are sequential anyway, and a refused change
    ///         elsewhere cannot strand signatures the platform already holds for other datasets.
    /// @param datasetId The dataset (registered or not: a registration's nonce is 0).
    /// @return The next nonce.
    function nonces(bytes32 datasetId) external view returns (uint256);

    /// @notice Registers a dataset with the caller as its provider.
    /// @param datasetId The platform's id for the dataset; not registered before, and bound to
    ///        the caller (its first 16 bytes are the caller address's first 16 bytes, else
    ///        NotDatasetProvider).
    /// @param metadataHash Hash of the dataset's metadata document (not zero).
    /// @param contentHash SHA-256 of the raw content the platform sealed at ingest (not zero).
    function register(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external;

    /// @notice Registers a dataset for `provider`, relaying the provider's signed consent
    ///         (operator only).
    /// @param datasetId The platform's id for the dataset; not registered before, and bound to
    ///        `provider` (its first 16 bytes are the provider address's first 16 bytes, else
    ///        NotDatasetProvider).
    /// @param provider The dataset's provider, who signed the registration.
    /// @param metadataHash Hash of the dataset's metadata document (not zero).
    /// @param contentHash SHA-256 of the raw content (not zero).
    /// @param deadline Last timestamp at which the signature may be used.
    /// @param signature The provider's DatasetChange signature with action ACTION_REGISTER.
    function registerFor(
        bytes32 datasetId,
        address provider,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Replaces the metadata and content hashes of the caller's active dataset.
    /// @param datasetId The dataset, registered to the caller and active.
    /// @param metadataHash The new hash of its metadata document (not zero).
    /// @param contentHash The new SHA-256 of its raw content (not zero).
    function update(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external;

    /// @notice Replaces an active dataset's hashes for its provider, relaying the provider's
    ///         signature (operator only).
    /// @param datasetId The dataset, registered and active.
    /// @param metadataHash The new hash of its metadata document (not zero).
    /// @param contentHash The new SHA-256 of its raw content (not zero).
    /// @param deadline Last timestamp at which the signature may be used.
    /// @param signature The provider's DatasetChange signature with action ACTION_UPDATE.
    function updateFor(
        bytes32 datasetId,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Retires the caller's dataset: no new offers or agreements may use it. Agreements
    ///         already made run to their end.
    /// @param datasetId The dataset, registered to the caller and active.
    function retire(bytes32 datasetId) external;

    /// @notice Retires a dataset for its provider, relaying the provider's signature (operator
    ///         only).
    /// @param datasetId The dataset, registered and active.
    /// @param deadline Last timestamp at which the signature may be used.
    /// @param signature The provider's DatasetChange signature with action ACTION_RETIRE and zero
    ///        hashes.
    function retireFor(bytes32 datasetId, uint256 deadline, bytes calldata signature) external;

    /// @notice A dataset's registry entry.
    /// @param datasetId The dataset.
    /// @return The entry; its provider is zero if the dataset was never registered.
    function getDataset(bytes32 datasetId) external view returns (Dataset memory);

    /// @notice The provider of an active dataset; reverts if it is unknown or retired.
    /// @param datasetId The dataset.
    /// @return The dataset's provider.
    function activeProvider(bytes32 datasetId) external view returns (address);

    /// @notice Whether a dataset id is bound to a provider: its first 16 bytes equal the first
    ///         16 bytes of the provider's address. Only such ids can be registered for it.
    /// @param datasetId The dataset id.
    /// @param provider The address it should belong to.
    /// @return True if `provider` may register `datasetId`.
    function isBoundTo(bytes32 datasetId, address provider) external pure returns (bool);

    /// @notice The EIP-712 domain separator providers sign changes under.
    /// @return The domain separator of this chain and registry.
    function domainSeparator() external view returns (bytes32);
}
