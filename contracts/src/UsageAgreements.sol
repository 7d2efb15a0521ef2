// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IDatasetRegistry} from "./IDatasetRegistry.sol";
import {IUsageAgreements} from "./IUsageAgreements.sol";
import {JobCells} from "./JobCells.sol";

/// @title UsageAgreements
/// @notice Offers, agreements with escrow, each dataset's privacy budget, and the record of every
///         use (documented on IUsageAgreements).
/// @dev Money. An agreement's price is fixed at acceptance, so its money is counted in calls:
///        escrow  = (callsBought - callsUsed - callsReclaimed) * price
///        pending = (callsUsed - callsSettled) * price        (recorded, neither settled nor refunded)
///        paid to the provider's withdrawable balance = callsSettled * price
///        returned to the consumer = callsReclaimed * price
///      so `escrow + pending + withdrawable + totalPaidOut == totalDeposited` holds by construction,
///      and recording, settling and refunding write counters, never amounts. A metered offer's
///      "price" here is a call's maximum (price plus the charge for maxCpuMillis): settleMetered
///      splits one call's maximum between the provider's and the consumer's withdrawable
///      balances, so the sum still holds.
///
///      Jobs. A job id is `(agreementId << 128) | nonce`: the nonce is the consumer's, scoped to
///      the agreement (which has exactly one consumer) and unordered (any unused one is valid, so
///      a refused use never strands signatures signed after it). A job's record is a 32-bit cell
///      (status and privacy loss, see JobCells), eight to a storage word: a platform that numbers
///      nonces 0, 1, 2, ... pays for a fresh storage word once every eight jobs.
///
///      Privacy. Each dataset's budget is one storage slot (limit, used, two flags), reached from
///      a job through its agreement's offer. A use that spends 0 touches neither, so answers
///      without noise cost no more than before the budget existed.
contract UsageAgreements is IUsageAgreements, AccessControl, Pausable, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @dev Storage layout: slot 0 holds every counter recordUsage reads and writes (and the
    ///      metered flag settling checks beside callsSettled); slot 1 what recordUsage only reads;
    ///      slot 2 what settling needs (who is paid, how much).
    struct AgreementState {
        uint32 callsBought;
        uint32 callsUsed;
        uint32 callsSettled;
        uint32 callsReclaimed;
        bool metered;
        address consumer;
        uint40 expiry;
        bool suspended;
        uint48 offerId;
        address provider;
        uint96 pricePerCall;
    }

    /// @dev A dataset's privacy state in one slot (64 + 64 + 8 + 8 bits): recordUsage reads and
    ///      writes it once. Invariant: used <= limit (setDatasetPrivacyLimit never lowers the
    ///      limit below used; recordUsage never raises used above it).
    struct DatasetPrivacy {
        uint64 limit;
        uint64 used;
        bool nonPersonal;
        bool hasOffers;
    }

    /// @inheritdoc IUsageAgreements
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @inheritdoc IUsageAgreements
    bytes32 public constant USAGE_TYPEHASH = keccak256(
        "Usage(uint256 agreementId,bytes32 jobId,bytes32 purpose,bytes32 operation,bytes32 paramsHash,uint64 privacyLoss,uint256 nonce,uint256 deadline)"
    );
    /// @inheritdoc IUsageAgreements
    uint64 public constant MAX_JOB_PRIVACY_LOSS = uint64(JobCells.LOSS_MASK);
    /// @inheritdoc IUsageAgreements
    uint64 public constant MAX_DURATION = 10 * 365 days;

    /// @inheritdoc IUsageAgreements
    IERC20 public immutable token;
    /// @inheritdoc IUsageAgreements
    IDatasetRegistry public immutable registry;

    /// @inheritdoc IUsageAgreements
    uint48 public offerCount;
    /// @inheritdoc IUsageAgreements
    uint64 public agreementCount;
    /// @inheritdoc IUsageAgreements
    uint64 public batchCount;
    /// @inheritdoc IUsageAgreements
    uint128 public totalDeposited;
    /// @inheritdoc IUsageAgreements
    uint128 public totalPaidOut;

    mapping(uint256 offerId => Offer) private _offers;
    /// @inheritdoc IUsageAgreements
    /// @dev A mapping, so recordUsage checks a purpose in O(1).
    mapping(uint256 offerId => mapping(bytes32 purpose => bool)) public purposeAllowed;
    /// @inheritdoc IUsageAgreements
    /// @dev A mapping, so recordUsage checks an operation in O(1).
    mapping(uint256 offerId => mapping(bytes32 operation => bool)) public operationAllowed;
    mapping(uint256 agreementId => AgreementState) private _agreements;
    mapping(bytes32 datasetId => DatasetPrivacy) private _privacy;
    /// @dev Job cells, eight per word, keyed by `uint256(jobId) >> 3`.
    mapping(uint256 cellWord => uint256) private _jobCells;
    /// @inheritdoc IUsageAgreements
    mapping(address provider => uint256) public withdrawable;
    /// @inheritdoc IUsageAgreements
    mapping(uint256 batchId => bytes32) public batchRoot;

    /// @param token_ The ERC-20 agreements are paid in: a plain token (no fee on transfer, no
    ///        rebasing), since escrow is counted in calls times price, not in balances.
    /// @param registry_ The dataset registry offers are checked against.
    /// @param admin Holder of DEFAULT_ADMIN_ROLE (grants roles, pauses).
    /// @param operator Holder of OPERATOR_ROLE (the platform's relayer).
    constructor(IERC20 token_, IDatasetRegistry registry_, address admin, address operator)
        EIP712("Redlake UsageAgreements", "1")
    {
        token = token_;
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    // ------------------------------------------------------------------------------ offers

    /// @inheritdoc IUsageAgreements
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
    ) external whenNotPaused returns (uint256 offerId) {
        IDatasetRegistry.Dataset memory dataset = registry.getDataset(datasetId);
        if (!dataset.active) revert DatasetInactive(datasetId);
        if (dataset.provider != msg.sender) revert NotDatasetProvider(datasetId, msg.sender);
        if (maxCalls == 0 || duration == 0 || duration > MAX_DURATION || purposes.length == 0 || operations.length == 0) {
            revert InvalidOfferTerms(maxCalls, duration, purposes.length, operations.length);
        }
        DatasetPrivacy storage privacy = _privacy[datasetId];
        if (consumerLimit == 0 && !privacy.nonPersonal) revert ConsumerLimitRequired(datasetId);
        if (maxCpuMillis == 0 ? computeRate != 0 : _callMaximum(pricePerCall, computeRate, maxCpuMillis) > type(uint96).max) {
            revert InvalidMetering(computeRate, maxCpuMillis);
        }
        if (!privacy.hasOffers) privacy.hasOffers = true;
        offerId = ++offerCount;
        _offers[offerId] = Offer({
            provider: msg.sender,
            maxCalls: maxCalls,
            duration: duration,
            active: true,
            pricePerCall: pricePerCall,
            consumerLimit: consumerLimit,
            maxCpuMillis: maxCpuMillis,
            datasetId: datasetId,
            policyHash: policyHash,
            computeRate: computeRate
        });
        for (uint256 i; i < purposes.length; ++i) {
            purposeAllowed[offerId][purposes[i]] = true;
        }
        for (uint256 i; i < operations.length; ++i) {
            operationAllowed[offerId][operations[i]] = true;
        }
        emit OfferPublished(
            offerId, datasetId, msg.sender, policyHash, purposes, operations, maxCalls, pricePerCall, duration, consumerLimit
        );
        if (maxCpuMillis != 0) emit OfferMetered(offerId, computeRate, maxCpuMillis);
    }

    /// @inheritdoc IUsageAgreements
    function revokeOffer(uint256 offerId) external {
        Offer storage offer = _offer(offerId);
        if (offer.provider != msg.sender) revert NotOfferProvider(offerId, msg.sender);
        if (!offer.active) revert OfferInactive(offerId);
        offer.active = false;
        emit OfferRevoked(offerId);
    }

    // --------------------------------------------------------------------- dataset privacy

    /// @inheritdoc IUsageAgreements
    function setDatasetPrivacyLimit(bytes32 datasetId, uint64 limit) external {
        _onlyDatasetProvider(datasetId);
        DatasetPrivacy storage privacy = _privacy[datasetId];
        uint64 used = privacy.used;
        if (limit < used) revert DatasetLimitBelowUsed(datasetId, limit, used);
        privacy.limit = limit;
        emit DatasetPrivacyLimitSet(datasetId, limit);
    }

    /// @inheritdoc IUsageAgreements
    function declareNonPersonal(bytes32 datasetId) external {
        _onlyDatasetProvider(datasetId);
        DatasetPrivacy storage privacy = _privacy[datasetId];
        if (privacy.hasOffers) revert DatasetHasOffers(datasetId);
        if (privacy.nonPersonal) revert DatasetAlreadyNonPersonal(datasetId);
        privacy.nonPersonal = true;
        emit DatasetDeclaredNonPersonal(datasetId);
    }

    // -------------------------------------------------------------------------- agreements

    /// @inheritdoc IUsageAgreements
    function acceptOffer(uint256 offerId, uint32 calls) external whenNotPaused nonReentrant returns (uint256 agreementId) {
        Offer storage offer = _offer(offerId);
        if (!offer.active) revert OfferInactive(offerId);
        uint32 maxCalls = offer.maxCalls;
        if (calls == 0 || calls > maxCalls) revert CallsOutOfRange(offerId, calls, maxCalls);
        if (!registry.getDataset(offer.datasetId).active) revert DatasetInactive(offer.datasetId);
        uint32 maxCpuMillis = offer.maxCpuMillis;
        // Checked at publication to fit in 96 bits.
        uint96 price = uint96(_callMaximum(offer.pricePerCall, offer.computeRate, maxCpuMillis));
        uint256 amount = uint256(price) * calls;
        uint64 expiry = uint64(block.timestamp) + offer.duration;
        agreementId = ++agreementCount;
        _agreements[agreementId] = AgreementState({
            callsBought: calls,
            callsUsed: 0,
            callsSettled: 0,
            callsReclaimed: 0,
            metered: maxCpuMillis != 0,
            consumer: msg.sender,
            expiry: uint40(expiry),
            suspended: false,
            offerId: uint48(offerId),
            provider: offer.provider,
            pricePerCall: price
        });
        totalDeposited += uint128(amount);
        emit AgreementCreated(agreementId, offerId, msg.sender, calls, amount, expiry);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IUsageAgreements
    function suspendAgreement(uint256 agreementId) external {
        AgreementState storage agreement = _providedBy(agreementId, msg.sender);
        if (agreement.suspended) revert AgreementIsSuspended(agreementId);
        agreement.suspended = true;
        emit AgreementSuspended(agreementId);
    }

    /// @inheritdoc IUsageAgreements
    function resumeAgreement(uint256 agreementId) external {
        AgreementState storage agreement = _providedBy(agreementId, msg.sender);
        if (!agreement.suspended) revert AgreementNotSuspended(agreementId);
        agreement.suspended = false;
        emit AgreementResumed(agreementId);
    }

    // ------------------------------------------------------------------------------- usage

    /// @inheritdoc IUsageAgreements
    function recordUsage(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss,
        uint256 deadline,
        bytes calldata consumerSignature
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        if (uint256(jobId) >> 128 != agreementId) revert JobIdMismatch(jobId, agreementId);
        if (privacyLoss > MAX_JOB_PRIVACY_LOSS) revert PrivacyLossTooLarge(privacyLoss, MAX_JOB_PRIVACY_LOSS);
        (address consumer, uint256 offerId) = _spend(agreementId, purpose, operation);
        if (privacyLoss != 0) _spendPrivacy(_offers[offerId].datasetId, privacyLoss);
        _recordJob(jobId, privacyLoss);
        bytes32 digest = _usageDigest(agreementId, jobId, purpose, operation, paramsHash, privacyLoss, deadline);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, consumerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != consumer) revert InvalidSignature(signer, consumer);
        emit UsageRecorded(jobId, agreementId, purpose, operation, paramsHash, privacyLoss);
    }

    /// @inheritdoc IUsageAgreements
    function settle(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        _closeJob(jobId, JobCells.SETTLED);
        uint256 agreementId = uint256(jobId) >> 128;
        AgreementState storage agreement = _agreements[agreementId];
        if (agreement.metered) revert MeteringRequired(jobId);
        agreement.callsSettled += 1;
        withdrawable[agreement.provider] += agreement.pricePerCall;
        emit JobSettled(jobId, agreementId, resultHash, attestationHash);
    }

    /// @inheritdoc IUsageAgreements
    function settleMetered(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash, Metering calldata metering)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        _closeJob(jobId, JobCells.SETTLED);
        uint256 agreementId = uint256(jobId) >> 128;
        AgreementState storage agreement = _agreements[agreementId];
        if (!agreement.metered) revert NotMetered(jobId);
        agreement.callsSettled += 1;
        Offer storage offer = _offers[agreement.offerId];
        uint32 maxCpuMillis = offer.maxCpuMillis;
        uint64 cpuMillis = metering.cpuMillis;
        uint256 charged =
            _callMaximum(offer.pricePerCall, offer.computeRate, cpuMillis < maxCpuMillis ? uint32(cpuMillis) : maxCpuMillis);
        uint256 returned = agreement.pricePerCall - charged;
        withdrawable[agreement.provider] += charged;
        if (returned != 0) withdrawable[agreement.consumer] += returned;
        emit JobSettled(jobId, agreementId, resultHash, attestationHash);
        emit ComputeMetered(jobId, agreementId, cpuMillis, metering.peakMemoryBytes, metering.bytesRead, charged, returned);
    }

    /// @inheritdoc IUsageAgreements
    function settleBatch(bytes32 root, bytes32[] calldata jobIds)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        returns (uint256 batchId)
    {
        if (jobIds.length == 0) revert EmptyBatch();
        if (root == bytes32(0)) revert ZeroRoot();
        _settleAll(jobIds);
        batchId = ++batchCount;
        batchRoot[batchId] = root;
        emit BatchSettled(batchId, root, jobIds);
    }

    /// @inheritdoc IUsageAgreements
    function refund(bytes32 jobId, bytes32 reason) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        uint64 privacyLoss = _closeJob(jobId, JobCells.REFUNDED);
        uint256 agreementId = uint256(jobId) >> 128;
        AgreementState storage agreement = _agreements[agreementId];
        agreement.callsUsed -= 1;
        if (privacyLoss != 0) _privacy[_offers[agreement.offerId].datasetId].used -= privacyLoss;
        emit UsageRefunded(jobId, agreementId, reason, privacyLoss, agreement.pricePerCall);
    }

    // ------------------------------------------------------------------------------- money

    /// @inheritdoc IUsageAgreements
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        totalPaidOut += uint128(amount);
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IUsageAgreements
    function reclaim(uint256 agreementId) external nonReentrant returns (uint256 amount) {
        AgreementState storage agreement = _agreements[agreementId];
        address consumer = agreement.consumer;
        if (consumer == address(0)) revert AgreementUnknown(agreementId);
        if (consumer != msg.sender) revert NotAgreementConsumer(agreementId, msg.sender);
        if (block.timestamp < agreement.expiry) revert AgreementNotExpired(agreementId, agreement.expiry, block.timestamp);
        uint32 calls = agreement.callsBought - agreement.callsUsed - agreement.callsReclaimed;
        if (calls == 0) revert NothingToReclaim(agreementId);
        agreement.callsReclaimed += calls;
        amount = uint256(agreement.pricePerCall) * calls;
        totalPaidOut += uint128(amount);
        emit EscrowReclaimed(agreementId, consumer, calls, amount);
        token.safeTransfer(consumer, amount);
    }

    // ------------------------------------------------------------------------------- admin

    /// @inheritdoc IUsageAgreements
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc IUsageAgreements
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------------------- views

    /// @inheritdoc IUsageAgreements
    function getOffer(uint256 offerId) external view returns (Offer memory) {
        return _offers[offerId];
    }

    /// @inheritdoc IUsageAgreements
    function getAgreement(uint256 agreementId) external view returns (Agreement memory details) {
        AgreementState storage a = _agreements[agreementId];
        details = Agreement({
            consumer: a.consumer,
            provider: a.provider,
            offerId: a.offerId,
            callsBought: a.callsBought,
            callsUsed: a.callsUsed,
            callsSettled: a.callsSettled,
            callsReclaimed: a.callsReclaimed,
            pricePerCall: a.pricePerCall,
            escrow: uint256(a.pricePerCall) * (a.callsBought - a.callsUsed - a.callsReclaimed),
            pending: uint256(a.pricePerCall) * (a.callsUsed - a.callsSettled),
            expiry: a.expiry,
            suspended: a.suspended,
            metered: a.metered
        });
    }

    /// @inheritdoc IUsageAgreements
    function getUsage(bytes32 jobId) external view returns (uint256 agreementId, JobStatus status, uint64 privacyLoss) {
        uint256 word = _jobCells[JobCells.wordKey(jobId)];
        return (uint256(jobId) >> 128, JobStatus(JobCells.status(word, jobId)), JobCells.privacyLoss(word, jobId));
    }

    /// @inheritdoc IUsageAgreements
    function getDatasetPrivacy(bytes32 datasetId)
        external
        view
        returns (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers)
    {
        DatasetPrivacy storage privacy = _privacy[datasetId];
        return (privacy.limit, privacy.used, privacy.nonPersonal, privacy.hasOffers);
    }

    /// @inheritdoc IUsageAgreements
    function jobStatus(bytes32 jobId) external view returns (JobStatus) {
        return JobStatus(JobCells.status(_jobCells[JobCells.wordKey(jobId)], jobId));
    }

    /// @inheritdoc IUsageAgreements
    function nonceUsed(uint256 agreementId, uint256 nonce) external view returns (bool) {
        bytes32 jobId = jobIdOf(agreementId, nonce);
        return JobCells.status(_jobCells[JobCells.wordKey(jobId)], jobId) != 0;
    }

    /// @inheritdoc IUsageAgreements
    function jobIdOf(uint256 agreementId, uint256 nonce) public pure returns (bytes32) {
        return bytes32((agreementId << 128) | uint128(nonce));
    }

    /// @inheritdoc IUsageAgreements
    function splitJobId(bytes32 jobId) external pure returns (uint256 agreementId, uint256 nonce) {
        return (uint256(jobId) >> 128, uint256(uint128(uint256(jobId))));
    }

    /// @inheritdoc IUsageAgreements
    function receiptLeaf(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) public pure returns (bytes32) {
        return keccak256(abi.encode(jobId, resultHash, attestationHash));
    }

    /// @inheritdoc IUsageAgreements
    function verifyReceipt(uint256 batchId, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        bytes32 root = batchRoot[batchId];
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @inheritdoc IUsageAgreements
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------------------- internal

    /// @dev A call's price plus the charge for `cpuMillis` at `computeRate` per CPU-second, in 256
    ///      bits (rounded down, in the consumer's favour).
    function _callMaximum(uint96 pricePerCall, uint96 computeRate, uint32 cpuMillis) private pure returns (uint256) {
        return uint256(pricePerCall) + uint256(computeRate) * cpuMillis / 1000;
    }

    function _offer(uint256 offerId) private view returns (Offer storage offer) {
        offer = _offers[offerId];
        if (offer.provider == address(0)) revert OfferUnknown(offerId);
    }

    function _providedBy(uint256 agreementId, address caller) private view returns (AgreementState storage agreement) {
        agreement = _agreements[agreementId];
        if (agreement.consumer == address(0)) revert AgreementUnknown(agreementId);
        if (agreement.provider != caller) revert NotAgreementProvider(agreementId, caller);
    }

    /// @dev Reverts unless the caller is the dataset's provider in the registry (an unknown
    ///      dataset has none).
    function _onlyDatasetProvider(bytes32 datasetId) private view {
        if (registry.getDataset(datasetId).provider != msg.sender) revert NotDatasetProvider(datasetId, msg.sender);
    }

    /// @dev Checks that the agreement allows one more use with this purpose and operation, counts
    ///      the call, and returns the consumer who must have signed and the agreement's offer.
    function _spend(uint256 agreementId, bytes32 purpose, bytes32 operation)
        private
        returns (address consumer, uint256 offerId)
    {
        AgreementState storage agreement = _agreements[agreementId];
        consumer = agreement.consumer;
        if (consumer == address(0)) revert AgreementUnknown(agreementId);
        if (agreement.suspended) revert AgreementIsSuspended(agreementId);
        if (block.timestamp >= agreement.expiry) revert AgreementExpired(agreementId, agreement.expiry, block.timestamp);
        uint32 used = agreement.callsUsed;
        if (used >= agreement.callsBought) revert CallsExhausted(agreementId, used, agreement.callsBought);
        offerId = agreement.offerId;
        if (!purposeAllowed[offerId][purpose]) revert PurposeNotAllowed(agreementId, purpose);
        if (!operationAllowed[offerId][operation]) revert OperationNotAllowed(agreementId, operation);
        agreement.callsUsed = used + 1;
    }

    /// @dev Spends `loss` (> 0) from the dataset's budget; the sum is taken in 256 bits, so a
    ///      spent loss near 2^64 is refused by name, not by an overflow panic.
    function _spendPrivacy(bytes32 datasetId, uint64 loss) private {
        DatasetPrivacy storage privacy = _privacy[datasetId];
        uint64 used = privacy.used;
        uint64 limit = privacy.limit;
        if (uint256(used) + loss > limit) revert DatasetBudgetExhausted(datasetId, used, loss, limit);
        privacy.used = used + loss;
    }

    /// @dev Marks a job never seen before as recorded with its privacy loss.
    function _recordJob(bytes32 jobId, uint64 privacyLoss) private {
        uint256 key = JobCells.wordKey(jobId);
        uint256 word = _jobCells[key];
        uint256 status = JobCells.status(word, jobId);
        if (status != JobCells.NONE) revert JobAlreadyRecorded(jobId, JobStatus(status));
        _jobCells[key] = JobCells.record(word, jobId, privacyLoss);
    }

    /// @dev The EIP-712 digest of a Usage message; its nonce is the low 128 bits of the job id.
    function _usageDigest(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        bytes32 paramsHash,
        uint64 privacyLoss,
        uint256 deadline
    ) private view returns (bytes32) {
        uint256 nonce = uint128(uint256(jobId));
        return _hashTypedDataV4(
            keccak256(
                abi.encode(USAGE_TYPEHASH, agreementId, jobId, purpose, operation, paramsHash, privacyLoss, nonce, deadline)
            )
        );
    }

    /// @dev Moves a recorded job to `to` (settled or refunded) and returns the privacy loss it
    ///      spent.
    function _closeJob(bytes32 jobId, uint256 to) private returns (uint64) {
        uint256 key = JobCells.wordKey(jobId);
        uint256 word = _jobCells[key];
        uint256 status = JobCells.status(word, jobId);
        if (status != JobCells.RECORDED) revert JobNotRecorded(jobId, JobStatus(status));
        _jobCells[key] = JobCells.close(word, jobId, to);
        return JobCells.privacyLoss(word, jobId);
    }

    /// @dev Settles every job of a batch, writing each storage word of cells once per run of
    ///      jobs sharing it, each agreement's counter once per run of its jobs, and each
    ///      provider's balance once per run of jobs it is paid for.
    function _settleAll(bytes32[] calldata jobIds) private {
        uint256 key = type(uint256).max; // no job id maps here: its agreement would exceed 2^125
        uint256 word;
        uint256 agreementId;
        uint32 runCalls;
        address payee;
        uint256 payeeAmount;
        for (uint256 i; i < jobIds.length; ++i) {
            bytes32 jobId = jobIds[i];
            if (JobCells.wordKey(jobId) != key) {
                if (i != 0) _jobCells[key] = word;
                key = JobCells.wordKey(jobId);
                word = _jobCells[key];
                if (uint256(jobId) >> 128 != agreementId) {
                    if (runCalls != 0) (payee, payeeAmount) = _settleRun(agreementId, runCalls, payee, payeeAmount);
                    agreementId = uint256(jobId) >> 128;
                    if (_agreements[agreementId].metered) revert MeteringRequired(jobId);
                    runCalls = 0;
                }
            }
            if (JobCells.status(word, jobId) != JobCells.RECORDED) {
                revert JobNotRecorded(jobId, JobStatus(JobCells.status(word, jobId)));
            }
            word = JobCells.close(word, jobId, JobCells.SETTLED);
            ++runCalls;
        }
        _jobCells[key] = word;
        (payee, payeeAmount) = _settleRun(agreementId, runCalls, payee, payeeAmount);
        withdrawable[payee] += payeeAmount;
    }

    /// @dev Counts `calls` settled jobs of an agreement and adds their price to the running payee
    ///      total, writing the previous payee's total when the payee changes.
    function _settleRun(uint256 agreementId, uint32 calls, address payee, uint256 payeeAmount)
        private
        returns (address, uint256)
    {
        AgreementState storage agreement = _agreements[agreementId];
        agreement.callsSettled += calls;
        address provider = agreement.provider;
        uint256 amount = uint256(agreement.pricePerCall) * calls;
        if (provider == payee) return (payee, payeeAmount + amount);
        if (payeeAmount != 0) withdrawable[payee] += payeeAmount;
        return (provider, amount);
    }
}
