// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {DatasetRegistry} from "./DatasetRegistry.sol";

/// @title IUsageAgreements
/// @notice The external surface of UsageAgreements: its types, events, errors and functions.
///         Documentation of each function is on the implementation (UsageAgreements.sol).
/// @dev Tests and other contracts compile against this interface only, so the implementation
///      alone goes through the (slower) IR pipeline.
interface IUsageAgreements {
    /// @notice The lifecycle of a job: None -> Recorded -> Settled | Refunded.
    enum JobStatus {
        None,
        Recorded,
        Settled,
        Refunded
    }

    /// @notice An offer's terms, as published. Only `active` ever changes.
    struct Offer {
        address provider;
        uint32 maxCalls;
        uint64 duration;
        bool active;
        uint96 pricePerCall;
        uint64 privacyBudget;
        bytes32 datasetId;
        bytes32 policyHash;
    }

    /// @notice An agreement as an off-chain reader wants it, with escrow and pending computed.
    struct Agreement {
        address consumer;
        address provider;
        uint256 offerId;
        uint32 callsBought;
        uint32 callsUsed;
        uint32 callsSettled;
        uint32 callsReclaimed;
        uint96 pricePerCall;
        uint256 escrow;
        uint256 pending;
        uint64 budgetUsed;
        uint64 privacyBudget;
        uint64 expiry;
        bool suspended;
    }

    event OfferPublished(
        uint256 indexed offerId,
        bytes32 indexed datasetId,
        address indexed provider,
        bytes32 policyHash,
        bytes32[] purposes,
        bytes32[] operations,
        uint32 maxCalls,
        uint96 pricePerCall,
        uint64 duration,
        uint64 privacyBudget
    );
    event OfferRevoked(uint256 indexed offerId);
    event AgreementCreated(
        uint256 indexed agreementId, uint256 indexed offerId, address indexed consumer, uint32 calls, uint256 amount, uint64 expiry
    );
    event AgreementSuspended(uint256 indexed agreementId);
    event AgreementResumed(uint256 indexed agreementId);
    event UsageRecorded(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 purpose, bytes32 operation, uint64 epsilon);
    event JobSettled(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 resultHash, bytes32 attestationHash);
    event BatchSettled(uint256 indexed batchId, bytes32 root, bytes32[] jobIds);
    event UsageRefunded(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 reason, uint64 epsilon, uint256 price);
    event Withdrawn(address indexed provider, uint256 amount);
    event EscrowReclaimed(uint256 indexed agreementId, address indexed consumer, uint32 calls, uint256 amount);

    error DatasetNotActive(bytes32 datasetId);
    error NotDatasetProvider(bytes32 datasetId, address caller);
    error InvalidOfferTerms(uint32 maxCalls, uint64 duration, uint256 purposes, uint256 operations);
    error OfferUnknown(uint256 offerId);
    error OfferInactive(uint256 offerId);
    error NotOfferProvider(uint256 offerId, address caller);
    error CallsOutOfRange(uint256 offerId, uint32 requested, uint32 maxCalls);
    error AgreementUnknown(uint256 agreementId);
    error NotAgreementProvider(uint256 agreementId, address caller);
    error NotAgreementConsumer(uint256 agreementId, address caller);
    error AgreementIsSuspended(uint256 agreementId);
    error AgreementNotSuspended(uint256 agreementId);
    error AgreementExpired(uint256 agreementId, uint64 expiry, uint256 nowTimestamp);
    error AgreementNotExpired(uint256 agreementId, uint64 expiry, uint256 nowTimestamp);
    error JobIdMismatch(bytes32 jobId, uint256 agreementId);
    error PurposeNotAllowed(uint256 agreementId, bytes32 purpose);
    error OperationNotAllowed(uint256 agreementId, bytes32 operation);
    error CallsExhausted(uint256 agreementId, uint32 used, uint32 bought);
    error BudgetExhausted(uint256 agreementId, uint64 used, uint64 requested, uint64 budget);
    error EpsilonTooLarge(uint64 epsilon, uint64 max);
    error JobAlreadyRecorded(bytes32 jobId, JobStatus status);
    error JobNotRecorded(bytes32 jobId, JobStatus status);
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    error InvalidSignature(address recovered, address expected);
    error NothingToWithdraw(address account);
    error NothingToReclaim(uint256 agreementId);
    error EmptyBatch();
    error ZeroRoot();

    // offers
    function publishOffer(
        bytes32 datasetId,
        bytes32 policyHash,
        bytes32[] calldata purposes,
        bytes32[] calldata operations,
        uint32 maxCalls,
        uint96 pricePerCall,
        uint64 duration,
        uint64 privacyBudget
    ) external returns (uint256 offerId);
    function revokeOffer(uint256 offerId) external;

    // agreements
    function acceptOffer(uint256 offerId, uint32 calls) external returns (uint256 agreementId);
    function suspendAgreement(uint256 agreementId) external;
    function resumeAgreement(uint256 agreementId) external;

    // usage
    function recordUsage(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        uint64 epsilon,
        uint256 deadline,
        bytes calldata consumerSignature
    ) external;
    function settle(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external;
    function settleBatch(bytes32 root, bytes32[] calldata jobIds) external returns (uint256 batchId);
    function refund(bytes32 jobId, bytes32 reason) external;

    // money
    function withdraw() external returns (uint256 amount);
    function reclaim(uint256 agreementId) external returns (uint256 amount);

    // admin
    function pause() external;
    function unpause() external;

    // views
    function OPERATOR_ROLE() external view returns (bytes32);
    function USAGE_TYPEHASH() external view returns (bytes32);
    function MAX_JOB_EPSILON() external view returns (uint64);
    function MAX_DURATION() external view returns (uint64);
    function token() external view returns (IERC20);
    function registry() external view returns (DatasetRegistry);
    function offerCount() external view returns (uint48);
    function agreementCount() external view returns (uint64);
    function batchCount() external view returns (uint64);
    function totalDeposited() external view returns (uint128);
    function totalPaidOut() external view returns (uint128);
    function purposeAllowed(uint256 offerId, bytes32 purpose) external view returns (bool);
    function operationAllowed(uint256 offerId, bytes32 operation) external view returns (bool);
    function withdrawable(address provider) external view returns (uint256);
    function batchRoot(uint256 batchId) external view returns (bytes32);
    function getOffer(uint256 offerId) external view returns (Offer memory);
    function getAgreement(uint256 agreementId) external view returns (Agreement memory);
    function getUsage(bytes32 jobId) external view returns (uint256 agreementId, JobStatus status, uint64 epsilon);
    function jobStatus(bytes32 jobId) external view returns (JobStatus);
    function nonceUsed(uint256 agreementId, uint256 nonce) external view returns (bool);
    function jobIdOf(uint256 agreementId, uint256 nonce) external pure returns (bytes32);
    function splitJobId(bytes32 jobId) external pure returns (uint256 agreementId, uint256 nonce);
    function receiptLeaf(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external pure returns (bytes32);
    function verifyReceipt(uint256 batchId, bytes32 leaf, bytes32[] calldata proof) external view returns (bool);
    function domainSeparator() external view returns (bytes32);
}
