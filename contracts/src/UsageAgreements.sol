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

import {DatasetRegistry} from "./DatasetRegistry.sol";

/// @title UsageAgreements
/// @notice Offers of a dataset's use, agreements that escrow their price, and the record of every
///         use: recorded (call counted, price held as pending), then settled (price to the
///         provider, result hash on chain) or refunded (call and price back to the consumer).
/// @dev A job id packs its agreement and the consumer's nonce: `(agreementId << 128) | nonce`.
///      Nonces are unordered (any unused one), tracked in per-agreement bitmaps, so recording a
///      job costs a bit in a word most jobs share instead of a fresh storage slot. Money is
///      conserved: sum(escrow) + sum(openCalls * price) + sum(balances) + paidOut == deposited.
contract UsageAgreements is AccessControl, Pausable, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant USAGE_TYPEHASH = keccak256(
        "Usage(uint256 agreementId,bytes32 jobId,bytes32 purpose,bytes32 operation,uint64 epsilon,uint256 nonce,uint256 deadline)"
    );

    uint8 public constant JOB_NONE = 0;
    uint8 public constant JOB_RECORDED = 1;
    uint8 public constant JOB_SETTLED = 2;
    uint8 public constant JOB_REFUNDED = 3;

    struct Offer {
        address provider;
        uint32 maxCalls;
        uint64 duration;
        uint128 pricePerCall;
        uint64 privacyBudget;
        bool active;
        bytes32 datasetId;
        bytes32 policyHash;
    }

    struct Agreement {
        // slot 0
        address consumer;
        uint64 offerId;
        uint32 callsBought;
        // slot 1
        address provider;
        uint64 expiry;
        bool suspended;
        // slot 2: the state every use touches, in one word
        uint32 callsUsed;
        uint32 openCalls;
        uint64 budgetUsed;
        uint128 escrow;
        // slot 3
        uint128 pricePerCall;
        uint64 privacyBudget;
    }

    IERC20 public immutable token;
    DatasetRegistry public immutable registry;

    uint64 public offerCount;
    uint64 public agreementCount;
    uint64 public batchCount;
    uint256 public totalDeposited;
    uint256 public totalPaidOut;

    mapping(uint256 offerId => Offer) private _offers;
    mapping(uint256 offerId => mapping(bytes32 purpose => bool)) public purposeAllowed;
    mapping(uint256 offerId => mapping(bytes32 operation => bool)) public operationAllowed;
    mapping(uint256 agreementId => Agreement) private _agreements;
    mapping(uint256 agreementId => mapping(uint256 word => uint256)) private _recorded;
    mapping(uint256 agreementId => mapping(uint256 word => uint256)) private _closed;
    mapping(uint256 agreementId => mapping(uint256 word => uint256)) private _refunded;
    mapping(address provider => uint256) public balanceOf;
    mapping(uint256 batchId => bytes32 root) public batchRoot;

    event OfferPublished(
        uint256 indexed offerId,
        bytes32 indexed datasetId,
        address indexed provider,
        bytes32 policyHash,
        bytes32[] purposes,
        bytes32[] operations,
        uint32 maxCalls,
        uint128 pricePerCall,
        uint64 duration,
        uint64 privacyBudget
    );
    event OfferRevoked(uint256 indexed offerId);
    event AgreementCreated(
        uint256 indexed agreementId, uint256 indexed offerId, address indexed consumer, uint32 calls, uint128 escrow, uint64 expiry
    );
    event AgreementSuspended(uint256 indexed agreementId);
    event AgreementResumed(uint256 indexed agreementId);
    event UsageRecorded(
        bytes32 indexed jobId, uint256 indexed agreementId, bytes32 purpose, bytes32 operation, uint64 epsilon, uint128 price
    );
    event JobSettled(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 resultHash, bytes32 attestationHash);
    event BatchSettled(uint256 indexed batchId, bytes32 root, bytes32[] jobIds);
    event UsageRefunded(bytes32 indexed jobId, uint256 indexed agreementId, bytes32 reason, uint128 price);
    event Withdrawn(address indexed provider, uint256 amount);
    event EscrowReclaimed(uint256 indexed agreementId, address indexed consumer, uint256 amount);

    error OfferUnknown(uint256 offerId);
    error OfferInactive(uint256 offerId);
    error NotOfferProvider(uint256 offerId, address caller);
    error InvalidOffer(string field);
    error CallsOutOfRange(uint256 requested, uint256 maxCalls);
    error AgreementUnknown(uint256 agreementId);
    error NotAgreementProvider(uint256 agreementId, address caller);
    error NotAgreementConsumer(uint256 agreementId, address caller);
    error AgreementSuspendedError(uint256 agreementId);
    error AgreementExpired(uint256 agreementId, uint64 expiry);
    error AgreementNotExpired(uint256 agreementId, uint64 expiry);
    error PurposeNotAllowed(uint256 agreementId, bytes32 purpose);
    error OperationNotAllowed(uint256 agreementId, bytes32 operation);
    error CallsExhausted(uint256 agreementId, uint32 used, uint32 bought);
    error BudgetExhausted(uint256 agreementId, uint64 used, uint64 requested, uint64 budget);
    error JobAlreadyRecorded(bytes32 jobId);
    error JobNotOpen(bytes32 jobId, uint8 status);
    error SignatureExpired(uint256 deadline, uint256 nowTimestamp);
    error InvalidSignature(address recovered, address expected);
    error NothingToWithdraw(address account);
    error EmptyBatch();

    constructor(IERC20 token_, DatasetRegistry registry_, address admin, address operator)
        EIP712("Redlake UsageAgreements", "1")
    {
        token = token_;
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    // ---------------------------------------------------------------- offers

    /// @notice Publishes an offer for one of the caller's active datasets.
    /// @param datasetId The dataset, registered to the caller in the DatasetRegistry.
    /// @param policyHash Hash of the ODRL policy document the platform evaluates off chain.
    /// @param purposes Allowed purposes (ids); recordUsage refuses any other.
    /// @param operations Allowed operations (ids); recordUsage refuses any other.
    /// @param maxCalls Most calls one agreement may buy.
    /// @param pricePerCall Price of one call in the token's smallest unit.
    /// @param duration Seconds an agreement lasts from acceptance.
    /// @param privacyBudget Total epsilon an agreement may spend (fixed point, 1e6 = 1.0).
    /// @return offerId The new offer's id.
    function publishOffer(
        bytes32 datasetId,
        bytes32 policyHash,
        bytes32[] calldata purposes,
        bytes32[] calldata operations,
        uint32 maxCalls,
        uint128 pricePerCall,
        uint64 duration,
        uint64 privacyBudget
    ) external whenNotPaused returns (uint256 offerId) {
        address provider = registry.activeProvider(datasetId);
        if (provider != msg.sender) revert NotOfferProvider(0, msg.sender);
        if (maxCalls == 0) revert InvalidOffer("maxCalls");
        if (duration == 0) revert InvalidOffer("duration");
        if (purposes.length == 0) revert InvalidOffer("purposes");
        if (operations.length == 0) revert InvalidOffer("operations");
        offerId = ++offerCount;
        _offers[offerId] = Offer({
            provider: provider,
            maxCalls: maxCalls,
            duration: duration,
            pricePerCall: pricePerCall,
            privacyBudget: privacyBudget,
            active: true,
            datasetId: datasetId,
            policyHash: policyHash
        });
        for (uint256 i; i < purposes.length; ++i) {
            purposeAllowed[offerId][purposes[i]] = true;
        }
        for (uint256 i; i < operations.length; ++i) {
            operationAllowed[offerId][operations[i]] = true;
        }
        emit OfferPublished(
            offerId, datasetId, provider, policyHash, purposes, operations, maxCalls, pricePerCall, duration, privacyBudget
        );
    }

    /// @notice Revokes an offer: no new agreements; existing ones run to their end.
    function revokeOffer(uint256 offerId) external {
        Offer storage offer = _offer(offerId);
        if (offer.provider != msg.sender) revert NotOfferProvider(offerId, msg.sender);
        if (!offer.active) revert OfferInactive(offerId);
        offer.active = false;
        emit OfferRevoked(offerId);
    }

    /// @notice An offer's terms.
    function getOffer(uint256 offerId) external view returns (Offer memory) {
        return _offers[offerId];
    }

    // ------------------------------------------------------------ agreements

    /// @notice Accepts an offer for `calls` calls, moving calls * price of the token into escrow.
    /// @dev The caller must have approved this contract for the amount.
    /// @return agreementId The new agreement's id.
    function acceptOffer(uint256 offerId, uint32 calls) external whenNotPaused nonReentrant returns (uint256 agreementId) {
        Offer storage offer = _offer(offerId);
        if (!offer.active) revert OfferInactive(offerId);
        if (calls == 0 || calls > offer.maxCalls) revert CallsOutOfRange(calls, offer.maxCalls);
        registry.activeProvider(offer.datasetId); // reverts once the dataset is retired
        uint128 amount = offer.pricePerCall * calls;
        uint64 expiry = uint64(block.timestamp) + offer.duration;
        agreementId = ++agreementCount;
        Agreement storage agreement = _agreements[agreementId];
        agreement.consumer = msg.sender;
        agreement.offerId = uint64(offerId);
        agreement.callsBought = calls;
        agreement.provider = offer.provider;
        agreement.expiry = expiry;
        agreement.escrow = amount;
        agreement.pricePerCall = offer.pricePerCall;
        agreement.privacyBudget = offer.privacyBudget;
        totalDeposited += amount;
        emit AgreementCreated(agreementId, offerId, msg.sender, calls, amount, expiry);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Suspends an agreement (provider only): no new usage until resumed.
    function suspendAgreement(uint256 agreementId) external {
        Agreement storage agreement = _providedBy(agreementId, msg.sender);
        agreement.suspended = true;
        emit AgreementSuspended(agreementId);
    }

    /// @notice Resumes a suspended agreement (provider only).
    function resumeAgreement(uint256 agreementId) external {
        Agreement storage agreement = _providedBy(agreementId, msg.sender);
        agreement.suspended = false;
        emit AgreementResumed(agreementId);
    }

    /// @notice An agreement's terms and state.
    function getAgreement(uint256 agreementId) external view returns (Agreement memory) {
        return _agreements[agreementId];
    }

    // ----------------------------------------------------------------- usage

    /// @notice Records one use of an agreement, relayed by the operator with the consumer's
    ///         EIP-712 signature; the price moves from escrow to pending.
    /// @param agreementId The agreement used.
    /// @param jobId `(agreementId << 128) | nonce`, the nonce being any the consumer has not used.
    /// @param purpose The declared purpose; must be allowed by the offer.
    /// @param operation The computation; must be allowed by the offer.
    /// @param epsilon Privacy budget this use spends (fixed point, 1e6 = 1.0).
    /// @param deadline Last timestamp the signature is valid.
    /// @param signature The consumer's signature over Usage(...).
    function recordUsage(
        uint256 agreementId,
        bytes32 jobId,
        bytes32 purpose,
        bytes32 operation,
        uint64 epsilon,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        (uint256 jobAgreement, uint256 nonce) = splitJobId(jobId);
        if (jobAgreement != agreementId) revert AgreementUnknown(jobAgreement);
        Agreement storage agreement = _agreements[agreementId];
        address consumer = agreement.consumer;
        if (consumer == address(0)) revert AgreementUnknown(agreementId);
        if (agreement.suspended) revert AgreementSuspendedError(agreementId);
        if (block.timestamp >= agreement.expiry) revert AgreementExpired(agreementId, agreement.expiry);
        uint256 offerId = agreement.offerId;
        if (!purposeAllowed[offerId][purpose]) revert PurposeNotAllowed(agreementId, purpose);
        if (!operationAllowed[offerId][operation]) revert OperationNotAllowed(agreementId, operation);
        uint32 used = agreement.callsUsed;
        if (used >= agreement.callsBought) revert CallsExhausted(agreementId, used, agreement.callsBought);
        uint64 budgetUsed = agreement.budgetUsed;
        if (budgetUsed + epsilon > agreement.privacyBudget) {
            revert BudgetExhausted(agreementId, budgetUsed, epsilon, agreement.privacyBudget);
        }
        (uint256 word, uint256 bit) = (nonce >> 8, uint256(1) << (nonce & 0xff));
        uint256 recorded = _recorded[agreementId][word];
        if (recorded & bit != 0) revert JobAlreadyRecorded(jobId);

        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(USAGE_TYPEHASH, agreementId, jobId, purpose, operation, epsilon, nonce, deadline))
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || signer != consumer) revert InvalidSignature(signer, consumer);

        _recorded[agreementId][word] = recorded | bit;
        uint128 price = agreement.pricePerCall;
        agreement.callsUsed = used + 1;
        agreement.openCalls += 1;
        agreement.budgetUsed = budgetUsed + epsilon;
        agreement.escrow -= price;
        emit UsageRecorded(jobId, agreementId, purpose, operation, epsilon, price);
    }

    /// @notice Settles one recorded job: its price goes to the provider, its result hash on chain.
    function settle(bytes32 jobId, bytes32 resultHash, bytes32 attestationHash) external onlyRole(OPERATOR_ROLE) {
        (uint256 agreementId, uint256 nonce) = splitJobId(jobId);
        _close(agreementId, nonce, jobId);
        Agreement storage agreement = _agreements[agreementId];
        agreement.openCalls -= 1;
        balanceOf[agreement.provider] += agreement.pricePerCall;
        emit JobSettled(jobId, agreementId, resultHash, attestationHash);
    }

    /// @notice Settles many recorded jobs at once under a Merkle root of their receipts
    ///         (leaf = keccak256(bytes.concat(keccak256(abi.encode(jobId, resultHash, attestationHash))))).
    /// @dev Runs of jobs of the same agreement are accounted once, so order jobs by agreement.
    /// @return batchId The batch's id, for verifyReceipt.
    function settleBatch(bytes32 root, bytes32[] calldata jobIds) external onlyRole(OPERATOR_ROLE) returns (uint256 batchId) {
        uint256 count = jobIds.length;
        if (count == 0) revert EmptyBatch();
        uint256 runAgreement;
        uint32 runCount;
        uint256 runWord = type(uint256).max;
        uint256 runBits;
        for (uint256 i; i < count; ++i) {
            (uint256 agreementId, uint256 nonce) = splitJobId(jobIds[i]);
            uint256 word = nonce >> 8;
            if (agreementId != runAgreement || word != runWord) {
                if (runBits != 0) _closed[runAgreement][runWord] |= runBits;
                if (agreementId != runAgreement && runCount != 0) _creditRun(runAgreement, runCount);
                if (agreementId != runAgreement) runCount = 0;
                runAgreement = agreementId;
                runWord = word;
                runBits = 0;
            }
            uint256 bit = uint256(1) << (nonce & 0xff);
            if (_recorded[agreementId][word] & bit == 0 || (_closed[agreementId][word] | runBits) & bit != 0) {
                revert JobNotOpen(jobIds[i], jobStatus(jobIds[i]));
            }
            runBits |= bit;
            ++runCount;
        }
        _closed[runAgreement][runWord] |= runBits;
        _creditRun(runAgreement, runCount);
        batchId = ++batchCount;
        batchRoot[batchId] = root;
        emit BatchSettled(batchId, root, jobIds);
    }

    /// @notice Refunds a recorded, unsettled job: the call and its price return to the agreement.
    function refund(bytes32 jobId, bytes32 reason) external onlyRole(OPERATOR_ROLE) {
        (uint256 agreementId, uint256 nonce) = splitJobId(jobId);
        _close(agreementId, nonce, jobId);
        _refunded[agreementId][nonce >> 8] |= uint256(1) << (nonce & 0xff);
        Agreement storage agreement = _agreements[agreementId];
        uint128 price = agreement.pricePerCall;
        agreement.openCalls -= 1;
        agreement.callsUsed -= 1;
        agreement.escrow += price;
        emit UsageRefunded(jobId, agreementId, reason, price);
    }

    /// @notice Whether a receipt is included in a settled batch.
    function verifyReceipt(
        uint256 batchId,
        bytes32 jobId,
        bytes32 resultHash,
        bytes32 attestationHash,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(jobId, resultHash, attestationHash))));
        return batchRoot[batchId] != bytes32(0) && MerkleProof.verifyCalldata(proof, batchRoot[batchId], leaf);
    }

    /// @notice JOB_NONE, JOB_RECORDED (open), JOB_SETTLED or JOB_REFUNDED.
    function jobStatus(bytes32 jobId) public view returns (uint8) {
        (uint256 agreementId, uint256 nonce) = splitJobId(jobId);
        (uint256 word, uint256 bit) = (nonce >> 8, uint256(1) << (nonce & 0xff));
        if (_recorded[agreementId][word] & bit == 0) return JOB_NONE;
        if (_closed[agreementId][word] & bit == 0) return JOB_RECORDED;
        return _refunded[agreementId][word] & bit == 0 ? JOB_SETTLED : JOB_REFUNDED;
    }

    /// @notice The job id of an agreement's nonce.
    function jobIdOf(uint256 agreementId, uint256 nonce) public pure returns (bytes32) {
        return bytes32((agreementId << 128) | uint128(nonce));
    }

    /// @notice The agreement and nonce a job id packs.
    function splitJobId(bytes32 jobId) public pure returns (uint256 agreementId, uint256 nonce) {
        return (uint256(jobId) >> 128, uint256(uint128(uint256(jobId))));
    }

    // ----------------------------------------------------------------- money

    /// @notice Pays the caller's settled earnings out.
    function withdraw() external nonReentrant {
        uint256 amount = balanceOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        balanceOf[msg.sender] = 0;
        totalPaidOut += amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Returns an expired agreement's unused escrow to its consumer. Refunds that arrive
    ///         later add to escrow and can be reclaimed again.
    function reclaim(uint256 agreementId) external nonReentrant {
        Agreement storage agreement = _agreements[agreementId];
        if (agreement.consumer == address(0)) revert AgreementUnknown(agreementId);
        if (agreement.consumer != msg.sender) revert NotAgreementConsumer(agreementId, msg.sender);
        if (block.timestamp < agreement.expiry) revert AgreementNotExpired(agreementId, agreement.expiry);
        uint256 amount = agreement.escrow;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        agreement.escrow = 0;
        totalPaidOut += amount;
        emit EscrowReclaimed(agreementId, msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Stops offers, agreements and usage (admin), e.g. while a key is rotated.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts a pause (admin).
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @notice The EIP-712 domain separator usage signatures are made under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // -------------------------------------------------------------- internal

    function _offer(uint256 offerId) private view returns (Offer storage offer) {
        offer = _offers[offerId];
        if (offer.provider == address(0)) revert OfferUnknown(offerId);
    }

    function _providedBy(uint256 agreementId, address caller) private view returns (Agreement storage agreement) {
        agreement = _agreements[agreementId];
        if (agreement.consumer == address(0)) revert AgreementUnknown(agreementId);
        if (agreement.provider != caller) revert NotAgreementProvider(agreementId, caller);
    }

    function _close(uint256 agreementId, uint256 nonce, bytes32 jobId) private {
        (uint256 word, uint256 bit) = (nonce >> 8, uint256(1) << (nonce & 0xff));
        uint256 closed = _closed[agreementId][word];
        if (_recorded[agreementId][word] & bit == 0 || closed & bit != 0) revert JobNotOpen(jobId, jobStatus(jobId));
        _closed[agreementId][word] = closed | bit;
    }

    function _creditRun(uint256 agreementId, uint32 count) private {
        Agreement storage agreement = _agreements[agreementId];
        agreement.openCalls -= count;
        balanceOf[agreement.provider] += uint256(agreement.pricePerCall) * count;
    }
}
