// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title DatasetRegistry
/// @notice Who provides each dataset, and the hashes of its metadata and content. Only the
///         provider changes an entry: directly, or through an operator relaying the provider's
///         EIP-712 signature (for providers whose key the platform holds in custody).
contract DatasetRegistry is AccessControl, EIP712 {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 private constant _CHANGE_TYPEHASH = keccak256(
        "DatasetChange(bytes32 datasetId,uint8 action,bytes32 metadataHash,bytes32 contentHash,uint256 nonce,uint256 deadline)"
    );

    uint8 public constant ACTION_REGISTER = 0;
    uint8 public constant ACTION_UPDATE = 1;
    uint8 public constant ACTION_RETIRE = 2;

    struct Dataset {
        address provider;
        bool active;
        bytes32 metadataHash;
        bytes32 contentHash;
    }

    mapping(bytes32 datasetId => Dataset) private _datasets;
    /// @notice Next signature nonce of each dataset. Per dataset, not per provider: changes to
    ///         one dataset are sequential anyway, and a refused change elsewhere cannot strand
    ///         signatures the platform already holds for other datasets.
    mapping(bytes32 datasetId => uint256) public nonces;

    event DatasetRegistered(bytes32 indexed datasetId, address indexed provider, bytes32 metadataHash, bytes32 contentHash);
    event DatasetUpdated(bytes32 indexed datasetId, bytes32 metadataHash, bytes32 contentHash);
    event DatasetRetired(bytes32 indexed datasetId);

    error DatasetExists(bytes32 datasetId);
    error DatasetUnknown(bytes32 datasetId);
    error DatasetInactive(bytes32 datasetId);
    error NotProvider(bytes32 datasetId, address caller);
    error EmptyHash(bytes32 datasetId);
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    error InvalidSignature(address recovered, address expected);

    constructor(address admin, address operator) EIP712("Redlake DatasetRegistry", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    /// @notice Registers a dataset with the caller as its provider.
    /// @param datasetId The platform's id for the dataset.
    /// @param metadataHash Hash of the dataset's metadata document.
    /// @param contentHash SHA-256 of the raw content the platform sealed at ingest.
    function register(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external {
        _register(datasetId, msg.sender, metadataHash, contentHash);
    }

    /// @notice Registers a dataset for `provider`, relaying the provider's signed consent.
    /// @dev Operator only; the signature covers the action, hashes, nonce and deadline.
    function registerFor(
        bytes32 datasetId,
        address provider,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(OPERATOR_ROLE) {
        _consumeSignature(provider, datasetId, ACTION_REGISTER, metadataHash, contentHash, deadline, signature);
        _register(datasetId, provider, metadataHash, contentHash);
    }

    /// @notice Replaces the metadata and content hashes of the caller's active dataset.
    function update(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external {
        _update(datasetId, msg.sender, metadataHash, contentHash);
    }

    /// @notice Updates a dataset for its provider, relaying the provider's signature.
    function updateFor(
        bytes32 datasetId,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(OPERATOR_ROLE) {
        address provider = _datasets[datasetId].provider;
        if (provider == address(0)) revert DatasetUnknown(datasetId);
        _consumeSignature(provider, datasetId, ACTION_UPDATE, metadataHash, contentHash, deadline, signature);
        _update(datasetId, provider, metadataHash, contentHash);
    }

    /// @notice Retires the caller's dataset: no new offers or agreements may use it.
    function retire(bytes32 datasetId) external {
        _retire(datasetId, msg.sender);
    }

    /// @notice Retires a dataset for its provider, relaying the provider's signature.
    function retireFor(bytes32 datasetId, uint256 deadline, bytes calldata signature) external onlyRole(OPERATOR_ROLE) {
        address provider = _datasets[datasetId].provider;
        if (provider == address(0)) revert DatasetUnknown(datasetId);
        _consumeSignature(provider, datasetId, ACTION_RETIRE, bytes32(0), bytes32(0), deadline, signature);
        _retire(datasetId, provider);
    }

    /// @notice The registry entry of a dataset (provider zero if unknown).
    function getDataset(bytes32 datasetId) external view returns (Dataset memory) {
        return _datasets[datasetId];
    }

    /// @notice The provider of an active dataset; reverts if it is unknown or retired.
    function activeProvider(bytes32 datasetId) external view returns (address) {
        Dataset storage dataset = _datasets[datasetId];
        if (dataset.provider == address(0)) revert DatasetUnknown(datasetId);
        if (!dataset.active) revert DatasetInactive(datasetId);
        return dataset.provider;
    }

    /// @notice The EIP-712 domain separator signatures are made under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _register(bytes32 datasetId, address provider, bytes32 metadataHash, bytes32 contentHash) private {
        if (_datasets[datasetId].provider != address(0)) revert DatasetExists(datasetId);
        if (metadataHash == bytes32(0) || contentHash == bytes32(0)) revert EmptyHash(datasetId);
        _datasets[datasetId] = Dataset(provider, true, metadataHash, contentHash);
        emit DatasetRegistered(datasetId, provider, metadataHash, contentHash);
    }

    function _update(bytes32 datasetId, address caller, bytes32 metadataHash, bytes32 contentHash) private {
        Dataset storage dataset = _owned(datasetId, caller);
        if (!dataset.active) revert DatasetInactive(datasetId);
        if (metadataHash == bytes32(0) || contentHash == bytes32(0)) revert EmptyHash(datasetId);
        dataset.metadataHash = metadataHash;
        dataset.contentHash = contentHash;
        emit DatasetUpdated(datasetId, metadataHash, contentHash);
    }

    function _retire(bytes32 datasetId, address caller) private {
        Dataset storage dataset = _owned(datasetId, caller);
        if (!dataset.active) revert DatasetInactive(datasetId);
        dataset.active = false;
        emit DatasetRetired(datasetId);
    }

    function _owned(bytes32 datasetId, address caller) private view returns (Dataset storage dataset) {
        dataset = _datasets[datasetId];
        if (dataset.provider == address(0)) revert DatasetUnknown(datasetId);
        if (dataset.provider != caller) revert NotProvider(datasetId, caller);
    }

    function _consumeSignature(
        address provider,
        bytes32 datasetId,
        uint8 action,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) private {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        uint256 nonce = nonces[datasetId]++;
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(_CHANGE_TYPEHASH, datasetId, action, metadataHash, contentHash, nonce, deadline))
        );
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != provider) revert InvalidSignature(recovered, provider);
    }
}
