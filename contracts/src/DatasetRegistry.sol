// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {IDatasetRegistry} from "./IDatasetRegistry.sol";

/// @title DatasetRegistry
/// @notice Who provides each dataset, and the hashes of its metadata and content (documented on
///         IDatasetRegistry).
contract DatasetRegistry is IDatasetRegistry, AccessControl, EIP712 {
    /// @inheritdoc IDatasetRegistry
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 private constant _CHANGE_TYPEHASH = keccak256(
        "DatasetChange(bytes32 datasetId,uint8 action,bytes32 metadataHash,bytes32 contentHash,uint256 nonce,uint256 deadline)"
    );

    /// @inheritdoc IDatasetRegistry
    uint8 public constant ACTION_REGISTER = 0;
    /// @inheritdoc IDatasetRegistry
    uint8 public constant ACTION_UPDATE = 1;
    /// @inheritdoc IDatasetRegistry
    uint8 public constant ACTION_RETIRE = 2;

    mapping(bytes32 datasetId => Dataset) private _datasets;
    /// @inheritdoc IDatasetRegistry
    mapping(bytes32 datasetId => uint256) public nonces;

    /// @param admin Holder of DEFAULT_ADMIN_ROLE (grants and revokes the operator role).
    /// @param operator Holder of OPERATOR_ROLE (the platform's relayer).
    constructor(address admin, address operator) EIP712("Redlake DatasetRegistry", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    /// @inheritdoc IDatasetRegistry
    function register(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external {
        _requireBound(datasetId, msg.sender);
        _register(datasetId, msg.sender, metadataHash, contentHash);
    }

    /// @inheritdoc IDatasetRegistry
    function registerFor(
        bytes32 datasetId,
        address provider,
        bytes32 metadataHash,
        bytes32 contentHash,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(OPERATOR_ROLE) {
        // Checked before the signature: a relayed front-run fails on the id, whoever signed it.
        _requireBound(datasetId, provider);
        _consumeSignature(provider, datasetId, ACTION_REGISTER, metadataHash, contentHash, deadline, signature);
        _register(datasetId, provider, metadataHash, contentHash);
    }

    /// @inheritdoc IDatasetRegistry
    function update(bytes32 datasetId, bytes32 metadataHash, bytes32 contentHash) external {
        _update(datasetId, msg.sender, metadataHash, contentHash);
    }

    /// @inheritdoc IDatasetRegistry
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

    /// @inheritdoc IDatasetRegistry
    function retire(bytes32 datasetId) external {
        _retire(datasetId, msg.sender);
    }

    /// @inheritdoc IDatasetRegistry
    function retireFor(bytes32 datasetId, uint256 deadline, bytes calldata signature) external onlyRole(OPERATOR_ROLE) {
        address provider = _datasets[datasetId].provider;
        if (provider == address(0)) revert DatasetUnknown(datasetId);
        _consumeSignature(provider, datasetId, ACTION_RETIRE, bytes32(0), bytes32(0), deadline, signature);
        _retire(datasetId, provider);
    }

    /// @inheritdoc IDatasetRegistry
    function getDataset(bytes32 datasetId) external view returns (Dataset memory) {
        return _datasets[datasetId];
    }

    /// @inheritdoc IDatasetRegistry
    function activeProvider(bytes32 datasetId) external view returns (address) {
        Dataset storage dataset = _datasets[datasetId];
        if (dataset.provider == address(0)) revert DatasetUnknown(datasetId);
        if (!dataset.active) revert DatasetInactive(datasetId);
        return dataset.provider;
    }

    /// @inheritdoc IDatasetRegistry
    function isBoundTo(bytes32 datasetId, address provider) public pure returns (bool) {
        return bytes16(datasetId) == bytes16(bytes20(provider));
    }

    /// @inheritdoc IDatasetRegistry
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _requireBound(bytes32 datasetId, address provider) private pure {
        if (!isBoundTo(datasetId, provider)) revert NotDatasetProvider(datasetId, provider);
    }

    function _register(bytes32 datasetId, address provider, bytes32 metadataHash, bytes32 contentHash) private {
        if (_datasets[datasetId].provider != address(0)) revert DatasetExists(datasetId);
        if (metadataHash == bytes32(0) || contentHash == bytes32(0)) revert ZeroHash(datasetId);
        _datasets[datasetId] = Dataset(provider, true, metadataHash, contentHash);
        emit DatasetRegistered(datasetId, provider, metadataHash, contentHash);
    }

    function _update(bytes32 datasetId, address caller, bytes32 metadataHash, bytes32 contentHash) private {
        Dataset storage dataset = _owned(datasetId, caller);
        if (!dataset.active) revert DatasetInactive(datasetId);
        if (metadataHash == bytes32(0) || contentHash == bytes32(0)) revert ZeroHash(datasetId);
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
        if (dataset.provider != caller) revert NotDatasetProvider(datasetId, caller);
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
