// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IDatasetRegistry} from "./IDatasetRegistry.sol";
import {IRedlakeErrors} from "./IRedlakeErrors.sol";

/// @title IUsageAgreements
/// @notice Offers of a dataset's use, agreements that hold their price in escrow, each dataset's
///         privacy budget, and the record of every use. A use is first recorded (one call
///         counted, its privacy loss spent from the dataset's budget, its price moved from escrow
///         to pending), then either settled (the price becomes the provider's, the result and
///         attestation hashes go on chain) or refunded (call and price go back to the agreement,
///         the privacy loss back to the dataset). Nothing is settled without a record, nothing
///         twice.
/// @dev The external surface of UsageAgreements and its documentation, which the implementation
///      inherits (NatSpec inheritdoc). Tests and other contracts compile against this interface
///      only, so the implementation alone goes through the (slower) IR pipeline. The file is
///      long because it is the contract's whole documentation; it holds no logic.
///
///      Job ids: `jobId = (agreementId << 128) | nonce`. The nonce is the consumer's, scoped to
///      the agreement (which has exactly one consumer) and unordered: any unused nonce is valid,
///      and a job id is recorded at most once, so a consumer's signature is usable at most once.
///      Amounts are in the payment token's smallest unit.
///
///      Privacy. Privacy loss is zero-concentrated DP (zCDP) rho in fixed point, 1e9 = 1.0 rho
///      ("nano-rho"), uint64; zCDP losses add up under composition, so a dataset's budget is a sum.
///      The budget belongs to the dataset, not to an agreement: every use of a dataset, through
///      any offer and any agreement, spends from the one `limit` its provider sets, so accepting
///      an offer again mints no fresh budget. A use that spends 0 (a cached answer, an answer
///      from non-personal data) needs no limit. A dataset its provider declares non-personal
///      (only before its first offer, irreversibly) may be offered without a per-consumer limit.
///      Operator actions (record, settle, refund) need OPERATOR_ROLE; pause and unpause need
///      DEFAULT_ADMIN_ROLE (OpenZeppelin AccessControl, whose errors they raise).
interface IUsageAgreements is IRedlakeErrors {
    /// @notice The lifecycle of a job: None -> Recorded -> Settled | Refunded.
    enum JobStatus {
        None,
        Recorded,
        Settled,
        Refunded
    }

    /// @notice An offer's terms, as published. Only `active` ever changes.
    /// @param provider The dataset's provider, who published the offer (zero if unknown).
    /// @param maxCalls Most calls one agreement may buy.
    /// @param duration Seconds an agreement lasts from acceptance.
    /// @param active False once revoked: no new agreements.
    /// @param pricePerCall Price of one call.
    /// @param consumerLimit Most privacy loss (nano-rho) one consumer may spend on the dataset
    ///        through this offer's agreements; the platform enforces it off chain, the chain keeps
    ///        it. Zero only on a non-personal dataset.
    /// @param maxCpuMillis Most CPU-milliseconds of metered compute one call may be charged for;
    ///        zero for an offer without metering.
    /// @param datasetId The dataset offered.
    /// @param policyHash Hash of the ODRL policy document the platform evaluates off chain.
    /// @param computeRate Price of one CPU-second of metered compute (zero when unmetered).
    struct Offer {
        address provider;
        uint32 maxCalls;
        uint64 duration;
        bool active;
        uint96 pricePerCall;
        uint64 consumerLimit;
        uint32 maxCpuMillis;
        bytes32 datasetId;
        bytes32 policyHash;
        uint96 computeRate;
    }

    /// @notice What a metered job used, as the enclave's launcher measured it (cgroup accounting).
    /// @param cpuMillis CPU time, in milliseconds; the charge is computed from it.
    /// @param peakMemoryBytes Peak memory, recorded for auditors (not charged).
    /// @param bytesRead Bytes of input read, recorded for auditors (not charged).
    struct Metering {
        uint64 cpuMillis;
        uint64 peakMemoryBytes;
        uint64 bytesRead;
    }

    /// @notice An agreement as an off-chain reader wants it, with escrow and pending computed.
    /// @param consumer Who accepted the offer, signs each use and may reclaim (zero if unknown).
    /// @param provider Who is paid for settled uses.
    /// @param offerId The offer accepted.
    /// @param callsBought Calls paid for at acceptance.
    /// @param callsUsed Calls recorded and not refunded (settled or pending).
    /// @param callsSettled Calls settled: their price went to the provider.
    /// @param callsReclaimed Unused calls whose price went back to the consumer after expiry.
    /// @param pricePerCall Most one call may cost, fixed at acceptance: the offer's price plus,
    ///        on a metered offer, the charge for its maxCpuMillis. A metered call's unused part
    ///        goes back to the consumer at settlement.
    /// @param escrow (callsBought - callsUsed - callsReclaimed) * pricePerCall.
    /// @param pending (callsUsed - callsSettled) * pricePerCall: recorded, not yet settled.
    /// @param expiry Timestamp from which no use is recorded and escrow may be reclaimed.
    /// @param suspended True while the provider has suspended it.
    /// @param metered True if its offer is metered: its jobs settle only through settleMetered.
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
        uint64 expiry;
        bool suspended;
        bool metered;
    }

    // ------------------------------------------------------------------------------ events

    /// @notice Emitted when a provider publishes an offer.
    /// @param offerId The new offer.
    /// @param datasetId The dataset offered.
    /// @param provider Its provider.
    /// @param policyHash Hash of the ODRL policy document.
    /// @param purposes The purposes allowed.
    /// @param operations The operations allowed.
    /// @param maxCalls Most calls one agreement may buy.
    /// @param pricePerCall Price of one call.
    /// @param duration Seconds an agreement lasts.
    /// @param consumerLimit Most privacy loss (nano-rho) one consumer may spend through the offer.
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
        uint64 consumerLimit
    );

    /// @notice Emitted after OfferPublished when the offer is metered.
    /// @param offerId The offer.
    /// @param computeRate Price of one CPU-second.
    /// @param maxCpuMillis Most CPU-milliseconds one call may be charged for.
    event OfferMetered(uint256 indexed offerId, uint96 computeRate, uint32 maxCpuMillis);

    /// @notice Emitted when a provider revokes an offer.
    /// @param offerId The offer.
    event OfferRevoked(uint256 indexed offerId);

    /// @notice Emitted when a consumer accepts an offer and its price goes into escrow.
    /// @param agreementId The new agreement.
    /// @param offerId The offer accepted.
    /// @param consumer Who accepted it.
    /// @param calls Calls bought.
    /// @param amount Escrowed: calls * pricePerCall.
    /// @param expiry Timestamp the agreement expires at.
    event AgreementCreated(
        uint256 indexed agreementId, uint256 indexed offerId, address indexed consumer, uint32 calls, uint256 amount, uint64 expiry
    );

    /// @notice Emitted when a provider suspends an agreement.
    /// @param agreementId The agreement.
    event AgreementSuspended(uint256 indexed agreementId);

    /// @notice Emitted when a provider resumes a suspended agreement.
    /// @param agreementId The agreement.
    event AgreementResumed(uint256 indexed agreementId);

    /// @notice Emitted when a use is recorded (one call, its privacy loss spent from the dataset,
    ///         its price moved to pending).
    /// @dev The only place the parameters' hash is kept: an auditor and the key custodian read it
    ///      from this event (by the indexed job id), so it costs no storage.
    /// @param jobId The job.
    /// @param agreementId Its agreement.
    /// @param purpose The declared purpose.
    /// @param operation The computation.
    /// @param paramsHash Hash of the computation's parameters as the consumer signed them.
    /// @param privacyLoss Privacy loss spent from the dataset's budget (nano-rho).
    event UsageRecorded(
        bytes32 indexed jobId,
        uint256 indexed agreementId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss
    );

    /// @notice Emitted when one job is settled by `settle` (a batch emits BatchSettled instead).
    /// @param jobId The job.
    /// @param agreementId Its agreement.
    /// @param resultHash Hash of the result released to the consumer.
    /// @param attestationHash Hash of the attestation of the computation that produced it.
    event JobSettled(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 resultHash, bytes32 attestationHash);

    /// @notice Emitted with JobSettled by `settleMetered`: what the job used and what it cost.
    /// @param jobId The job.
    /// @param agreementId Its agreement.
    /// @param cpuMillis CPU time used (milliseconds).
    /// @param peakMemoryBytes Peak memory used.
    /// @param bytesRead Input bytes read.
    /// @param charged Paid to the provider: the price per call plus the compute charge.
    /// @param returned Credited back to the consumer: the call's maximum less `charged`.
    event ComputeMetered(
        bytes32 indexed jobId,
        uint256 indexed agreementId,
        uint64 cpuMillis,
        uint64 peakMemoryBytes,
        uint64 bytesRead,
        uint256 charged,
        uint256 returned
    );

    /// @notice Emitted when a batch of jobs is settled under one Merkle root of their receipts.
    /// @param batchId The new batch.
    /// @param root Merkle root over the jobs' receipt leaves.
    /// @param jobIds The jobs settled.
    event BatchSettled(uint256 indexed batchId, bytes32 root, bytes32[] jobIds);

    /// @notice Emitted when a recorded job is refunded (call and price back to the agreement,
    ///         privacy loss back to the dataset).
    /// @param jobId The job.
    /// @param agreementId Its agreement.
    /// @param reason Why, as a short code.
    /// @param privacyLoss Privacy loss given back to the dataset's budget (nano-rho).
    /// @param price Amount moved from pending back to escrow.
    event UsageRefunded(
        bytes32 indexed jobId, uint256 indexed agreementId, bytes32 reason, uint64 privacyLoss, uint256 price
    );

    /// @notice Emitted when a dataset's provider sets its privacy limit.
    /// @param datasetId The dataset.
    /// @param limit The new total privacy loss every use of the dataset may spend (nano-rho).
    event DatasetPrivacyLimitSet(bytes32 indexed datasetId, uint64 limit);

    /// @notice Emitted when a dataset's provider declares it non-personal (irreversible).
    /// @param datasetId The dataset.
    event DatasetDeclaredNonPersonal(bytes32 indexed datasetId);

    /// @notice Emitted when a provider withdraws settled earnings.
    /// @param provider The provider paid.
    /// @param amount Amount transferred.
    event Withdrawn(address indexed provider, uint256 amount);

    /// @notice Emitted when a consumer reclaims an expired agreement's unused escrow.
    /// @param agreementId The agreement.
    /// @param consumer The consumer paid.
    /// @param calls Unused calls reclaimed.
    /// @param amount Amount transferred: calls * pricePerCall.
    event EscrowReclaimed(uint256 indexed agreementId, address indexed consumer, uint32 calls, uint256 amount);

    // ------------------------------------------------------------------------------ errors
    // Shared with the registry (IRedlakeErrors): DatasetInactive, NotDatasetProvider,
    // SignatureExpired, InvalidSignature.

    /// @notice Raised by publishOffer when the terms are unusable: maxCalls zero, duration zero
    ///         or over MAX_DURATION, or no purpose or no operation allowed.
    /// @param maxCalls The maxCalls given.
    /// @param duration The duration given.
    /// @param purposes How many purposes were given.
    /// @param operations How many operations were given.
    error InvalidOfferTerms(uint32 maxCalls, uint64 duration, uint256 purposes, uint256 operations);

    /// @notice Raised by publishOffer when metering terms are unusable: a compute rate without
    ///         a CPU maximum, or a maximum charge per call (price plus compute) over 2^96 - 1.
    /// @param computeRate The rate given.
    /// @param maxCpuMillis The maximum given.
    error InvalidMetering(uint96 computeRate, uint32 maxCpuMillis);

    /// @notice Raised by settle and settleBatch for a job of a metered agreement, whose charge
    ///         depends on what it used: settle it with settleMetered.
    /// @param jobId The job.
    error MeteringRequired(bytes32 jobId);

    /// @notice Raised by settleMetered for a job of an agreement that is not metered.
    /// @param jobId The job.
    error NotMetered(bytes32 jobId);

    /// @notice Raised when an offer id was never published.
    /// @param offerId The offer.
    error OfferUnknown(uint256 offerId);

    /// @notice Raised when accepting or revoking an offer that is revoked.
    /// @param offerId The offer.
    error OfferInactive(uint256 offerId);

    /// @notice Raised when someone other than an offer's provider tries to revoke it.
    /// @param offerId The offer.
    /// @param caller The address that is not its provider.
    error NotOfferProvider(uint256 offerId, address caller);

    /// @notice Raised when accepting an offer for zero calls or more than its maxCalls.
    /// @param offerId The offer.
    /// @param requested The calls asked for.
    /// @param maxCalls The offer's maxCalls.
    error CallsOutOfRange(uint256 offerId, uint32 requested, uint32 maxCalls);

    /// @notice Raised when an agreement id was never created.
    /// @param agreementId The agreement.
    error AgreementUnknown(uint256 agreementId);

    /// @notice Raised when someone other than an agreement's provider tries to suspend or resume
    ///         it.
    /// @param agreementId The agreement.
    /// @param caller The address that is not its provider.
    error NotAgreementProvider(uint256 agreementId, address caller);

    /// @notice Raised when someone other than an agreement's consumer tries to reclaim its escrow.
    /// @param agreementId The agreement.
    /// @param caller The address that is not its consumer.
    error NotAgreementConsumer(uint256 agreementId, address caller);

    /// @notice Raised when recording a use of, or suspending, a suspended agreement. (Named
    ///         "Is" because AgreementSuspended is the event.)
    /// @param agreementId The agreement.
    error AgreementIsSuspended(uint256 agreementId);

    /// @notice Raised when resuming an agreement that is not suspended.
    /// @param agreementId The agreement.
    error AgreementNotSuspended(uint256 agreementId);

    /// @notice Raised when recording a use of an agreement at or after its expiry.
    /// @param agreementId The agreement.
    /// @param expiry Its expiry timestamp.
    /// @param nowTimestamp The current block's timestamp.
    error AgreementExpired(uint256 agreementId, uint64 expiry, uint256 nowTimestamp);

    /// @notice Raised when reclaiming the escrow of an agreement before its expiry.
    /// @param agreementId The agreement.
    /// @param expiry Its expiry timestamp.
    /// @param nowTimestamp The current block's timestamp.
    error AgreementNotExpired(uint256 agreementId, uint64 expiry, uint256 nowTimestamp);

    /// @notice Raised by recordUsage when the job id's high 128 bits are not the agreement id.
    /// @param jobId The job id given.
    /// @param agreementId The agreement id given.
    error JobIdMismatch(bytes32 jobId, uint256 agreementId);

    /// @notice Raised by recordUsage when the agreement's offer does not allow the purpose.
    /// @param agreementId The agreement.
    /// @param purpose The purpose declared.
    error PurposeNotAllowed(uint256 agreementId, bytes32 purpose);

    /// @notice Raised by recordUsage when the agreement's offer does not allow the operation.
    /// @param agreementId The agreement.
    /// @param operation The operation asked for.
    error OperationNotAllowed(uint256 agreementId, bytes32 operation);

    /// @notice Raised by recordUsage when every call bought is used (refunds give calls back).
    /// @param agreementId The agreement.
    /// @param used Calls used.
    /// @param bought Calls bought.
    error CallsExhausted(uint256 agreementId, uint32 used, uint32 bought);

    /// @notice Raised by recordUsage when the use's privacy loss would take the dataset's spent
    ///         loss over its limit (whichever offer or agreement the use comes through).
    /// @param datasetId The dataset.
    /// @param used Privacy loss already spent on the dataset (nano-rho).
    /// @param requested Privacy loss this use asks for.
    /// @param limit The dataset's privacy limit.
    error DatasetBudgetExhausted(bytes32 datasetId, uint64 used, uint64 requested, uint64 limit);

    /// @notice Raised by recordUsage when one job's privacy loss exceeds MAX_JOB_PRIVACY_LOSS.
    /// @param privacyLoss The privacy loss asked for (nano-rho).
    /// @param max MAX_JOB_PRIVACY_LOSS.
    error PrivacyLossTooLarge(uint64 privacyLoss, uint64 max);

    /// @notice Raised by setDatasetPrivacyLimit when the new limit is below what the dataset's
    ///         recorded, unrefunded uses already spent.
    /// @param datasetId The dataset.
    /// @param limit The limit asked for.
    /// @param used Privacy loss already spent on the dataset.
    error DatasetLimitBelowUsed(bytes32 datasetId, uint64 limit, uint64 used);

    /// @notice Raised by declareNonPersonal once the dataset has had an offer: consumers accepted
    ///         terms made for personal data, which a declaration must not change under them.
    /// @param datasetId The dataset.
    error DatasetHasOffers(bytes32 datasetId);

    /// @notice Raised by declareNonPersonal when the dataset is already declared non-personal.
    /// @param datasetId The dataset.
    error DatasetAlreadyNonPersonal(bytes32 datasetId);

    /// @notice Raised by publishOffer when the consumer limit is zero and the dataset is not
    ///         declared non-personal: personal data is offered only with a limit per consumer.
    /// @param datasetId The dataset.
    error ConsumerLimitRequired(bytes32 datasetId);

    /// @notice Raised by recordUsage when the job id was recorded before (whatever became of it).
    /// @param jobId The job.
    /// @param status Its status: Recorded, Settled or Refunded.
    error JobAlreadyRecorded(bytes32 jobId, JobStatus status);

    /// @notice Raised when settling or refunding a job that is not pending: never recorded,
    ///         already settled or already refunded.
    /// @param jobId The job.
    /// @param status Its status: None, Settled or Refunded.
    error JobNotRecorded(bytes32 jobId, JobStatus status);

    /// @notice Raised when withdrawing with no settled earnings.
    /// @param account The caller.
    error NothingToWithdraw(address account);

    /// @notice Raised when reclaiming an expired agreement with no unused calls left.
    /// @param agreementId The agreement.
    error NothingToReclaim(uint256 agreementId);

    /// @notice Raised by settleBatch when given no jobs.
    error EmptyBatch();

    /// @notice Raised by settleBatch when given a zero Merkle root.
    error ZeroRoot();

    // ------------------------------------------------------------------------------ offers

    /// @notice Publishes an offer for one of the caller's active datasets.
    /// @param datasetId The dataset, registered to the caller in the DatasetRegistry and active.
    /// @param policyHash Hash of the ODRL policy document the platform evaluates off chain.
    /// @param purposes Allowed purposes (ids); recordUsage refuses any other.
    /// @param operations Allowed operations (ids); recordUsage refuses any other.
    /// @param maxCalls Most calls one agreement may buy (at least 1).
    /// @param pricePerCall Price of one call in the token's smallest unit (0 for a free offer).
    /// @param duration Seconds an agreement lasts from acceptance (1 .. MAX_DURATION).
    /// @param consumerLimit Most privacy loss (nano-rho) one consumer may spend on the dataset
    ///        through this offer's agreements, enforced off chain by the platform and kept here for
    ///        auditors; greater than 0 unless the dataset is declared non-personal.
    /// @param computeRate Price of one CPU-second of metered compute (0 with maxCpuMillis 0).
    /// @param maxCpuMillis Most CPU-milliseconds one call may be charged for; non-zero makes the
    ///        offer metered (its jobs settle through settleMetered). Each call's escrow is its
    ///        price plus computeRate * maxCpuMillis / 1000.
    /// @return offerId The new offer's id (from 1).
    function publishOffer(
        bytes32 datasetId,
        bytes32 policyHash,
        bytes32[] calldata purposes,
        bytes32[] calldata operations,
        uint32 maxCalls,
        uint96 pricePerCall,
        uint64 duration,
        uint64 consumerLimit,
        uint96 computeRate,
        uint32 maxCpuMillis
    ) external returns (uint256 offerId);

    /// @notice Revokes (retires) an offer: no new agreements; existing ones run to their end.
    /// @param offerId The offer, published by the caller and still active.
    function revokeOffer(uint256 offerId) external;

    // --------------------------------------------------------------------- dataset privacy

    /// @notice Sets the total privacy loss every use of a dataset may spend, through any offer and
    ///         any agreement (its provider only). Raising it is always allowed; lowering it is
    ///         allowed down to what is already spent.
    /// @dev Works while paused and on a retired dataset: agreements already made run to their
    ///      end, and a provider may want to tighten their limit at any time.
    /// @param datasetId The dataset, registered to the caller in the DatasetRegistry.
    /// @param limit The new limit (nano-rho), at least the dataset's spent loss.
    function setDatasetPrivacyLimit(bytes32 datasetId, uint64 limit) external;

    /// @notice Declares a dataset non-personal (its provider only): it may then be offered
    ///         with a zero consumer limit (answers without noise, spending no privacy loss).
    ///         Irreversible, and only before the dataset's first offer.
    /// @param datasetId The dataset, registered to the caller, never offered, not yet declared.
    function declareNonPersonal(bytes32 datasetId) external;

    // -------------------------------------------------------------------------- agreements

    /// @notice Accepts an offer for `calls` calls, pulling calls * pricePerCall of the token from
    ///         the caller into escrow. The caller becomes the agreement's consumer.
    /// @dev The caller must have approved this contract for the amount. The offer must be active
    ///      and its dataset still active in the registry.
    /// @param offerId The offer accepted.
    /// @param calls Calls bought (1 .. the offer's maxCalls).
    /// @return agreementId The new agreement's id (from 1).
    function acceptOffer(uint256 offerId, uint32 calls) external returns (uint256 agreementId);

    /// @notice Suspends an agreement (its provider only): no usage is recorded until resumed.
    ///         Jobs already recorded can still be settled or refunded.
    /// @param agreementId The agreement, not already suspended.
    function suspendAgreement(uint256 agreementId) external;

    /// @notice Resumes a suspended agreement (its provider only).
    /// @param agreementId The agreement, currently suspended.
    function resumeAgreement(uint256 agreementId) external;

    // ------------------------------------------------------------------------------- usage

    /// @notice Records one use of an agreement, relayed by the operator with the consumer's
    ///         EIP-712 signature: one call is counted, `privacyLoss` is spent from the dataset's
    ///         privacy budget, and one price moves from escrow to pending, until the job is settled
    ///         or refunded.
    /// @dev The consumer signs
    ///      Usage(uint256 agreementId,bytes32 jobId,bytes32 purpose,bytes32 operation,bytes32 paramsHash,uint64 privacyLoss,uint256 nonce,uint256 deadline)
    ///      under the domain ("Redlake UsageAgreements", "1", chainId, this contract), where nonce
    ///      is the low 128 bits of jobId. A job id is recorded at most once, so a signature is
    ///      usable at most once. The parameters' hash binds the computation the consumer asked
    ///      for to the signature; it is emitted in UsageRecorded, not stored.
    /// @param agreementId The agreement used; must be the high 128 bits of jobId.
    /// @param jobId `(agreementId << 128) | nonce`, with a nonce not used before on this agreement.
    /// @param purpose The declared purpose; must be allowed by the offer.
    /// @param operation The computation; must be allowed by the offer.
    /// @param paramsHash Hash of the computation's parameters, as the consumer signed it (the
    ///        platform's is SHA-256 of their canonical JSON).
    /// @param privacyLoss Privacy loss this use spends (nano-rho, at most MAX_JOB_PRIVACY_LOSS);
    ///        the dataset's spent loss plus this must not exceed its limit. Zero (a cached answer,
    ///        a non-personal dataset) needs no limit.
    /// @param deadline Last timestamp at which the signature may be used.
    /// @param consumerSignature The consumer's 65-byte signature over the Usage struct.
    function recordUsage(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss,
        uint256 deadline,
        bytes calldata consumerSignature
    ) external;

    /// @notice Settles one recorded job: its price goes to the provider's withdrawable balance and
    ///         the hashes of its result and of the enclave's attestation go on chain (in the event).
    /// @param jobId A recorded job of an unmetered agreement, neither settled nor refunded.
    /// @param resultHash Hash of the result released to the consumer.
    /// @param attestationHash Hash of the attestation of the computation that produced it.
    function settle(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external;

    /// @notice Settles one recorded job of a metered agreement: the provider is paid the offer's
    ///         price plus computeRate * min(cpuMillis, maxCpuMillis) / 1000 (rounded down), the
    ///         rest of the call's maximum is credited to the consumer's withdrawable balance, and
    ///         what the job used goes on chain (ComputeMetered).
    /// @param jobId A recorded job of a metered agreement, neither settled nor refunded.
    /// @param resultHash Hash of the result released to the consumer.
    /// @param attestationHash Hash of the attestation (which commits to the same metering).
    /// @param metering What the job used.
    function settleMetered(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash, Metering calldata metering)
        external;

    /// @notice Settles many recorded jobs at once and stores the Merkle root of their receipts, so
    ///         an auditor can prove each receipt with verifyReceipt. The receipt leaf of a job is
    ///         receiptLeaf(jobId, resultHash, attestationHash) = keccak256(abi.encode(jobId,
    ///         resultHash, attestationHash)); the tree hashes sorted pairs (OpenZeppelin MerkleProof).
    /// @dev Cheapest when jobs are ordered by agreement and nonce: each run of jobs sharing a
    ///      storage word or an agreement is written once. Any order is correct.
    /// @param root Merkle root over the receipt leaves of exactly these jobs (not zero).
    /// @param jobIds Recorded jobs of unmetered agreements, each neither settled nor refunded,
    ///        none twice.
    /// @return batchId The batch's id (from 1), for verifyReceipt and batchRoot.
    function settleBatch(bytes32 root, bytes32[] calldata jobIds) external returns (uint256 batchId);

    /// @notice Refunds a recorded, unsettled job: its call and its price return to the agreement
    ///         (the price to escrow, reclaimable after expiry), its privacy loss to the dataset's
    ///         budget.
    /// @param jobId A recorded job, neither settled nor refunded.
    /// @param reason Why (a short code, e.g. "worker_lost", "cohort_too_small").
    function refund(bytes32 jobId, bytes32 reason) external;

    // ------------------------------------------------------------------------------- money

    /// @notice Pays the caller's withdrawable balance out (pull payment): a provider's settled
    ///         earnings, a consumer's unused part of metered calls.
    /// @return amount The amount transferred.
    function withdraw() external returns (uint256 amount);

    /// @notice Returns an expired agreement's unused escrow to its consumer. Jobs still pending
    ///         stay pending; if they are refunded later, their price can be reclaimed again.
    /// @param agreementId The caller's agreement, expired.
    /// @return amount The amount transferred.
    function reclaim(uint256 agreementId) external returns (uint256 amount);

    // ------------------------------------------------------------------------------- admin

    /// @notice Stops new offers, agreements and every operator action (admin only), e.g. while
    ///         the operator key is rotated. Withdrawals and reclaims stay open.
    function pause() external;

    /// @notice Lifts a pause (admin only).
    function unpause() external;

    // ------------------------------------------------------------------------------- views

    /// @notice The role allowed to record, settle and refund (the platform's relayer).
    /// @return The role id, keccak256("OPERATOR_ROLE").
    function OPERATOR_ROLE() external view returns (bytes32);

    /// @notice The EIP-712 type hash of the Usage message a consumer signs.
    /// @return keccak256 of the Usage type string (see recordUsage).
    function USAGE_TYPEHASH() external view returns (bytes32);

    /// @notice Largest privacy loss one job may spend: 2^30 - 1 nano-rho, about 1.0737 rho (the
    ///         30 bits of a job's cell; one answer costing more than 1 rho protects little).
    /// @return The limit, 1,073,741,823.
    function MAX_JOB_PRIVACY_LOSS() external view returns (uint64);

    /// @notice Longest agreement an offer may grant.
    /// @return 3,650 days, in seconds.
    function MAX_DURATION() external view returns (uint64);

    /// @notice The ERC-20 agreements are paid in: a plain token (no fee on transfer, no rebasing).
    /// @return The token.
    function token() external view returns (IERC20);

    /// @notice Where datasets and their providers are registered.
    /// @return The registry offers and acceptances are checked against.
    function registry() external view returns (IDatasetRegistry);

    /// @notice How many offers were published (the last offer's id).
    /// @return The count.
    function offerCount() external view returns (uint48);

    /// @notice How many agreements were created (the last agreement's id).
    /// @return The count.
    function agreementCount() external view returns (uint64);

    /// @notice How many batches were settled (the last batch's id).
    /// @return The count.
    function batchCount() external view returns (uint64);

    /// @notice Everything ever escrowed by acceptances.
    /// @return The total; it equals escrow + pending + withdrawable + totalPaidOut.
    function totalDeposited() external view returns (uint128);

    /// @notice Everything ever transferred out, by withdrawals and reclaims.
    /// @return The total.
    function totalPaidOut() external view returns (uint128);

    /// @notice Whether an offer allows a purpose.
    /// @param offerId The offer.
    /// @param purpose The purpose id.
    /// @return True if recordUsage accepts the purpose under the offer.
    function purposeAllowed(uint256 offerId, bytes32 purpose) external view returns (bool);

    /// @notice Whether an offer allows an operation.
    /// @param offerId The offer.
    /// @param operation The operation id.
    /// @return True if recordUsage accepts the operation under the offer.
    function operationAllowed(uint256 offerId, bytes32 operation) external view returns (bool);

    /// @notice What an account may withdraw: a provider's settled earnings, a consumer's unused
    ///         part of metered calls.
    /// @param provider The account.
    /// @return The amount.
    function withdrawable(address provider) external view returns (uint256);

    /// @notice The Merkle root of a settled batch's receipts.
    /// @param batchId The batch.
    /// @return The root (zero if no such batch).
    function batchRoot(uint256 batchId) external view returns (bytes32);

    /// @notice An offer's terms.
    /// @param offerId The offer.
    /// @return The terms; their provider is zero if the offer is unknown.
    function getOffer(uint256 offerId) external view returns (Offer memory);

    /// @notice An agreement's terms and state, with its escrow and pending amounts.
    /// @param agreementId The agreement.
    /// @return details The agreement; its consumer is zero if it is unknown.
    function getAgreement(uint256 agreementId) external view returns (Agreement memory details);

    /// @notice The usage record of a job: its agreement, status and the privacy loss it spent.
    /// @dev The parameters' hash is not stored: read it from the job's UsageRecorded event.
    /// @param jobId The job.
    /// @return agreementId The agreement the job id names (whether or not it was recorded).
    /// @return status None, Recorded (pending), Settled or Refunded.
    /// @return privacyLoss The privacy loss recorded, nano-rho (still reported after a refund,
    ///         which gave it back).
    function getUsage(bytes32 jobId) external view returns (uint256 agreementId, JobStatus status, uint64 privacyLoss);

    /// @notice A dataset's privacy state.
    /// @param datasetId The dataset.
    /// @return limit Total privacy loss its uses may spend (nano-rho; 0 until its provider sets it).
    /// @return used Privacy loss spent by its recorded, unrefunded jobs; never above limit.
    /// @return nonPersonal True once its provider declared it non-personal.
    /// @return hasOffers True once an offer of it was published.
    function getDatasetPrivacy(bytes32 datasetId)
        external
        view
        returns (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers);

    /// @notice A job's status.
    /// @param jobId The job.
    /// @return None, Recorded (pending), Settled or Refunded.
    function jobStatus(bytes32 jobId) external view returns (JobStatus);

    /// @notice Whether the consumer's nonce on an agreement is used (its job was recorded).
    /// @param agreementId The agreement.
    /// @param nonce The nonce (low 128 bits of the job id).
    /// @return True once the job was recorded, whatever became of it.
    function nonceUsed(uint256 agreementId, uint256 nonce) external view returns (bool);

    /// @notice The job id of an agreement's nonce: `(agreementId << 128) | nonce`.
    /// @param agreementId The agreement (below 2^128).
    /// @param nonce The consumer's nonce on it (below 2^128).
    /// @return The job id.
    function jobIdOf(uint256 agreementId, uint256 nonce) external pure returns (bytes32);

    /// @notice The agreement and nonce a job id packs.
    /// @param jobId The job.
    /// @return agreementId The high 128 bits.
    /// @return nonce The low 128 bits.
    function splitJobId(bytes32 jobId) external pure returns (uint256 agreementId, uint256 nonce);

    /// @notice The receipt leaf of a settled job: keccak256(abi.encode(jobId, resultHash,
    ///         attestationHash)). One hash: a 96-byte preimage cannot be mistaken for an inner node.
    /// @param jobId The job.
    /// @param resultHash Hash of the result released.
    /// @param attestationHash Hash of the attestation.
    /// @return The leaf.
    function receiptLeaf(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external pure returns (bytes32);

    /// @notice Whether a receipt leaf is included in a settled batch's Merkle root.
    /// @param batchId The batch (from settleBatch / BatchSettled).
    /// @param leaf receiptLeaf(jobId, resultHash, attestationHash).
    /// @param proof Sibling hashes from the leaf up to the root (sorted-pair tree).
    /// @return True if the proof leads from the leaf to the batch's root.
    function verifyReceipt(uint256 batchId, bytes32 leaf, bytes32[] calldata proof) external view returns (bool);

    /// @notice The EIP-712 domain separator usage signatures are made under.
    /// @return The domain separator of this chain and contract.
    function domainSeparator() external view returns (bytes32);
}
