// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC5267} from "@openzeppelin/contracts/interfaces/IERC5267.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {IRedlakeErrors} from "../src/IRedlakeErrors.sol";
import {IUsageAgreements} from "../src/IUsageAgreements.sol";
import {Fixture} from "./Fixture.sol";
import {Merkle} from "./Merkle.sol";

contract UsageAgreementsTest is Fixture {
    // A second provider's dataset (registered by vm.addr(0xC0FFEE), so its id carries that prefix).
    bytes32 internal OTHER_DATASET;

    function setUp() public override {
        super.setUp();
        OTHER_DATASET = _datasetIdOf(vm.addr(0xC0FFEE), bytes16(keccak256("dataset-2")));
    }

    function _status(bytes32 jobId) internal view returns (IUsageAgreements.JobStatus) {
        return usage.jobStatus(jobId);
    }

    function _expectRecordRevert(uint256 agreementId, bytes32 jobId, bytes32 purpose, bytes32 op, uint64 loss, bytes memory err)
        internal
    {
        bytes memory sig = _sign(consumerKey, agreementId, jobId, purpose, op, PARAMS, loss, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(err);
        usage.recordUsage(agreementId, jobId, purpose, op, PARAMS, loss, block.timestamp, sig);
    }

    function _unauthorized(address who) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, who, usage.OPERATOR_ROLE()
        );
    }

    function _pause() internal {
        vm.prank(admin);
        usage.pause();
    }

    function test_constructor_wiresTokenRegistryAndRoles() public view {
        assertEq(address(usage.token()), address(token));
        assertEq(address(usage.registry()), address(registry));
        IAccessControl roles = IAccessControl(address(usage));
        assertTrue(roles.hasRole(bytes32(0), admin));
        assertTrue(roles.hasRole(usage.OPERATOR_ROLE(), operator));
        assertFalse(roles.hasRole(usage.OPERATOR_ROLE(), admin));
        assertEq(usage.OPERATOR_ROLE(), keccak256("OPERATOR_ROLE"));
        assertEq(usage.MAX_JOB_PRIVACY_LOSS(), 2 ** 30 - 1);
    }

    // ---------------------------------------------------------------------------- offers

    function test_publishOffer_recordsTerms() public view {
        IUsageAgreements.Offer memory offer = usage.getOffer(offerId);
        assertEq(offer.provider, provider);
        assertEq(offer.maxCalls, MAX_CALLS);
        assertEq(offer.duration, DURATION);
        assertTrue(offer.active);
        assertEq(offer.pricePerCall, PRICE);
        assertEq(offer.consumerLimit, CONSUMER_LIMIT);
        assertEq(offer.datasetId, DATASET);
        assertEq(offer.policyHash, POLICY);
        assertTrue(usage.purposeAllowed(offerId, RESEARCH));
        assertFalse(usage.purposeAllowed(offerId, MARKETING));
        assertTrue(usage.operationAllowed(offerId, MEAN));
        assertFalse(usage.operationAllowed(offerId, EXPORT));
        assertEq(usage.offerCount(), 1);
    }

    function test_publishOffer_emitsOfferPublished() public {
        bytes32[] memory purposes = new bytes32[](2);
        (purposes[0], purposes[1]) = (RESEARCH, MARKETING);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.OfferPublished(2, DATASET, provider, POLICY, purposes, _one(MEAN), 7, 3, 1 days, 5e6);
        vm.prank(provider);
        assertEq(usage.publishOffer(DATASET, POLICY, purposes, _one(MEAN), 7, 3, 1 days, 5e6, 0, 0), 2);
        assertTrue(usage.purposeAllowed(2, MARKETING));
    }

    function test_publishOffer_revertsForNonProvider() public {
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, DATASET, address(this)));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1, 0, 0);
    }

    function test_publishOffer_revertsForUnknownDataset() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, OTHER_DATASET));
        usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1, 0, 0);
    }

    function test_publishOffer_revertsForRetiredDataset() public {
        vm.prank(provider);
        registry.retire(DATASET);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, DATASET));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1, 0, 0);
    }

    function test_publishOffer_revertsOnInvalidTerms() public {
        bytes32[] memory none = new bytes32[](0);
        bytes32[] memory one = _one(RESEARCH);
        uint64 tooLong = usage.MAX_DURATION() + 1;
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 0, 1, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 0, 1, 1, 1, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 0, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 1, 1, 0, 1, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, tooLong, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 1, 1, tooLong, 1, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 1, 0, 1));
        usage.publishOffer(DATASET, POLICY, none, one, 1, 1, 1, 1, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 1, 1, 0));
        usage.publishOffer(DATASET, POLICY, one, none, 1, 1, 1, 1, 0, 0);
        vm.stopPrank();
    }

    function test_publishOffer_revertsWhenPaused() public {
        _pause();
        vm.prank(provider);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1, 0, 0);
    }

    function test_revokeOffer_blocksNewAgreements() public {
        uint256 existing = _accept(2);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.OfferRevoked(offerId);
        vm.prank(provider);
        usage.revokeOffer(offerId);
        assertFalse(usage.getOffer(offerId).active);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.OfferInactive.selector, offerId));
        usage.acceptOffer(offerId, 1);
        _record(existing, 0); // agreements made before run to their end
    }

    function test_revokeOffer_revertsForOthers() public {
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NotOfferProvider.selector, offerId, address(this)));
        usage.revokeOffer(offerId);
    }

    function test_revokeOffer_revertsWhenUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.OfferUnknown.selector, 99));
        usage.revokeOffer(99);
    }

    function test_revokeOffer_revertsTwice() public {
        vm.startPrank(provider);
        usage.revokeOffer(offerId);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.OfferInactive.selector, offerId));
        usage.revokeOffer(offerId);
        vm.stopPrank();
    }

    function test_publishOffer_marksDatasetOffered() public {
        (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers) = usage.getDatasetPrivacy(DATASET);
        assertEq(limit, LIMIT);
        assertEq(used, 0);
        assertFalse(nonPersonal);
        assertTrue(hasOffers);
    }

    function test_publishOffer_revertsOnZeroConsumerLimitForPersonalData() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.ConsumerLimitRequired.selector, DATASET));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 0, 0, 0);
    }

    // ------------------------------------------------------------------- dataset privacy

    function _registerOther() internal returns (address other) {
        other = vm.addr(0xC0FFEE);
        vm.prank(other);
        registry.register(OTHER_DATASET, keccak256("m"), keccak256("c"));
    }

    function test_setDatasetPrivacyLimit_setsAndRaises() public {
        address other = _registerOther();
        vm.expectEmit(address(usage));
        emit IUsageAgreements.DatasetPrivacyLimitSet(OTHER_DATASET, 1e9);
        vm.prank(other);
        usage.setDatasetPrivacyLimit(OTHER_DATASET, 1e9);
        (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertEq(limit, 1e9);
        assertEq(used, 0);
        assertFalse(nonPersonal);
        assertFalse(hasOffers);
        vm.prank(other);
        usage.setDatasetPrivacyLimit(OTHER_DATASET, 3e9);
        (limit,,,) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertEq(limit, 3e9);
    }

    function test_setDatasetPrivacyLimit_lowersDownToUsed() public {
        uint256 id = _accept(3);
        _record(id, 0);
        _record(id, 1);
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, 2 * LOSS); // exactly what is spent
        (uint64 limit, uint64 used,,) = usage.getDatasetPrivacy(DATASET);
        assertEq(limit, 2 * LOSS);
        assertEq(used, 2 * LOSS);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 2), RESEARCH, MEAN, 1,
            abi.encodeWithSelector(IUsageAgreements.DatasetBudgetExhausted.selector, DATASET, 2 * LOSS, 1, 2 * LOSS)
        );
    }

    function test_setDatasetPrivacyLimit_revertsBelowUsed() public {
        uint256 id = _accept(3);
        _record(id, 0);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.DatasetLimitBelowUsed.selector, DATASET, LOSS - 1, LOSS));
        usage.setDatasetPrivacyLimit(DATASET, LOSS - 1);
    }

    function test_setDatasetPrivacyLimit_revertsForNonProvider() public {
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, DATASET, consumer));
        usage.setDatasetPrivacyLimit(DATASET, 1);
    }

    function test_setDatasetPrivacyLimit_revertsForUnknownDataset() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, OTHER_DATASET, provider));
        usage.setDatasetPrivacyLimit(OTHER_DATASET, 1);
    }

    function test_setDatasetPrivacyLimit_worksWhenPausedAndRetired() public {
        _pause();
        vm.prank(provider);
        registry.retire(DATASET);
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, 1);
        (uint64 limit,,,) = usage.getDatasetPrivacy(DATASET);
        assertEq(limit, 1);
    }

    function test_setDatasetPrivacyLimit_lowersToZeroAfterRefund() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 0);
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, LOSS);
        vm.prank(operator);
        usage.refund(jobId, "test");
        assertEq(_datasetUsed(DATASET), 0);
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, 0); // nothing is spent any more
        _recordAs(consumerKey, id, 1, 0);
    }

    function test_declareNonPersonal_allowsOffersWithoutConsumerLimit() public {
        address other = _registerOther();
        vm.expectEmit(address(usage));
        emit IUsageAgreements.DatasetDeclaredNonPersonal(OTHER_DATASET);
        vm.prank(other);
        usage.declareNonPersonal(OTHER_DATASET);
        (uint64 limit,, bool nonPersonal, bool hasOffers) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertEq(limit, 0);
        assertTrue(nonPersonal);
        assertFalse(hasOffers);
        vm.prank(other);
        uint256 free = usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 10, 7, DURATION, 0, 0, 0);
        assertEq(usage.getOffer(free).consumerLimit, 0);
        (,, nonPersonal, hasOffers) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertTrue(nonPersonal);
        assertTrue(hasOffers);
    }

    function test_declareNonPersonal_revertsAfterAnOffer() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.DatasetHasOffers.selector, DATASET));
        usage.declareNonPersonal(DATASET);
        // Revoking the offer does not undo it: consumers accepted terms made for personal data.
        vm.prank(provider);
        usage.revokeOffer(offerId);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.DatasetHasOffers.selector, DATASET));
        usage.declareNonPersonal(DATASET);
    }

    function test_declareNonPersonal_revertsTwice() public {
        address other = _registerOther();
        vm.startPrank(other);
        usage.declareNonPersonal(OTHER_DATASET);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.DatasetAlreadyNonPersonal.selector, OTHER_DATASET));
        usage.declareNonPersonal(OTHER_DATASET);
        vm.stopPrank();
    }

    function test_declareNonPersonal_revertsForNonProvider() public {
        _registerOther();
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, OTHER_DATASET, provider));
        usage.declareNonPersonal(OTHER_DATASET);
    }

    function test_getDatasetPrivacy_unknownIsEmpty() public view {
        (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertEq(limit, 0);
        assertEq(used, 0);
        assertFalse(nonPersonal);
        assertFalse(hasOffers);
    }

    function testFuzz_setDatasetPrivacyLimit_neverBelowUsed(uint64 first, uint64 loss, uint64 next) public {
        loss = uint64(bound(loss, 0, usage.MAX_JOB_PRIVACY_LOSS()));
        first = uint64(bound(first, loss, type(uint64).max));
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, first);
        _recordAs(consumerKey, _accept(1), 0, loss);
        vm.prank(provider);
        if (next < loss) {
            vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.DatasetLimitBelowUsed.selector, DATASET, next, loss));
            usage.setDatasetPrivacyLimit(DATASET, next);
        } else {
            usage.setDatasetPrivacyLimit(DATASET, next);
        }
        (uint64 limit, uint64 used,,) = usage.getDatasetPrivacy(DATASET);
        assertEq(used, loss);
        assertEq(limit, next < loss ? first : next);
        assertLe(used, limit);
    }

    // ------------------------------------------------------------------------ agreements

    function test_acceptOffer_escrowsPrice() public {
        uint256 before = token.balanceOf(consumer);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.AgreementCreated(1, offerId, consumer, 10, 10 * uint256(PRICE), uint64(block.timestamp + DURATION));
        uint256 agreementId = _accept(10);
        assertEq(agreementId, 1);
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.consumer, consumer);
        assertEq(a.provider, provider);
        assertEq(a.offerId, offerId);
        assertEq(a.callsBought, 10);
        assertEq(a.callsUsed, 0);
        assertEq(a.pricePerCall, PRICE);
        assertEq(a.escrow, 10 * uint256(PRICE));
        assertEq(a.pending, 0);
        assertEq(a.expiry, block.timestamp + DURATION);
        assertFalse(a.suspended);
        assertEq(token.balanceOf(consumer), before - 10 * uint256(PRICE));
        assertEq(token.balanceOf(address(usage)), 10 * uint256(PRICE));
        assertEq(usage.totalDeposited(), 10 * uint256(PRICE));
        assertEq(usage.agreementCount(), 1);
    }

    function test_acceptOffer_revertsOnCallsOutOfRange() public {
        vm.startPrank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.CallsOutOfRange.selector, offerId, 0, MAX_CALLS));
        usage.acceptOffer(offerId, 0);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.CallsOutOfRange.selector, offerId, MAX_CALLS + 1, MAX_CALLS));
        usage.acceptOffer(offerId, MAX_CALLS + 1);
        vm.stopPrank();
    }

    function test_acceptOffer_revertsForUnknownOffer() public {
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.OfferUnknown.selector, 99));
        usage.acceptOffer(99, 1);
    }

    function test_acceptOffer_revertsWhenDatasetRetired() public {
        vm.prank(provider);
        registry.retire(DATASET);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, DATASET));
        usage.acceptOffer(offerId, 1);
    }

    function test_acceptOffer_revertsWithoutAllowance() public {
        address poor = makeAddr("poor");
        vm.prank(poor);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(usage), 0, uint256(PRICE))
        );
        usage.acceptOffer(offerId, 1);
    }

    function test_acceptOffer_revertsWhenPaused() public {
        _pause();
        vm.prank(consumer);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.acceptOffer(offerId, 1);
    }

    function test_suspendAgreement_blocksUsageUntilResumed() public {
        uint256 agreementId = _accept(5);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.AgreementSuspended(agreementId);
        vm.prank(provider);
        usage.suspendAgreement(agreementId);
        assertTrue(usage.getAgreement(agreementId).suspended);
        bytes32 jobId = usage.jobIdOf(agreementId, 1);
        _expectRecordRevert(
            agreementId, jobId, RESEARCH, MEAN, 1, abi.encodeWithSelector(IUsageAgreements.AgreementIsSuspended.selector, agreementId)
        );
        vm.expectEmit(address(usage));
        emit IUsageAgreements.AgreementResumed(agreementId);
        vm.prank(provider);
        usage.resumeAgreement(agreementId);
        _record(agreementId, 1);
        assertEq(uint8(_status(jobId)), uint8(IUsageAgreements.JobStatus.Recorded));
    }

    function test_suspendAgreement_revertsForOthers() public {
        uint256 agreementId = _accept(5);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NotAgreementProvider.selector, agreementId, address(this)));
        usage.suspendAgreement(agreementId);
    }

    function test_suspendAgreement_revertsWhenUnknown() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.AgreementUnknown.selector, 42));
        usage.suspendAgreement(42);
    }

    function test_suspendAgreement_revertsTwice() public {
        uint256 agreementId = _accept(5);
        vm.startPrank(provider);
        usage.suspendAgreement(agreementId);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.AgreementIsSuspended.selector, agreementId));
        usage.suspendAgreement(agreementId);
        vm.stopPrank();
    }

    function test_resumeAgreement_revertsWhenNotSuspended() public {
        uint256 agreementId = _accept(5);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.AgreementNotSuspended.selector, agreementId));
        usage.resumeAgreement(agreementId);
    }

    function test_resumeAgreement_revertsForOthers() public {
        uint256 agreementId = _accept(5);
        vm.prank(provider);
        usage.suspendAgreement(agreementId);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NotAgreementProvider.selector, agreementId, consumer));
        usage.resumeAgreement(agreementId);
    }

    // ----------------------------------------------------------------------------- usage

    function test_recordUsage_movesPriceToPending() public {
        uint256 agreementId = _accept(3);
        bytes32 jobId = usage.jobIdOf(agreementId, 42);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.UsageRecorded(jobId, agreementId, RESEARCH, MEAN, PARAMS, LOSS);
        _record(agreementId, 42);
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.callsUsed, 1);
        assertEq(a.escrow, 2 * uint256(PRICE));
        assertEq(a.pending, PRICE);
        assertEq(_datasetUsed(DATASET), LOSS);
        (uint256 recordedAgreement, IUsageAgreements.JobStatus status, uint64 loss) = usage.getUsage(jobId);
        assertEq(recordedAgreement, agreementId);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Recorded));
        assertEq(loss, LOSS);
        assertTrue(usage.nonceUsed(agreementId, 42));
        assertFalse(usage.nonceUsed(agreementId, 43));
        assertEq(usage.withdrawable(provider), 0);
    }

    function test_recordUsage_keepsNeighbouringCellsApart() public {
        uint256 agreementId = _accept(10);
        for (uint256 nonce; nonce < 8; ++nonce) {
            _recordAs(consumerKey, agreementId, nonce, uint64(nonce * 1000 + 1));
        }
        _settle(usage.jobIdOf(agreementId, 3));
        bytes32 refunded = usage.jobIdOf(agreementId, 5);
        vm.prank(operator);
        usage.refund(refunded, "test");
        for (uint256 nonce; nonce < 8; ++nonce) {
            (, IUsageAgreements.JobStatus status, uint64 loss) = usage.getUsage(usage.jobIdOf(agreementId, nonce));
            assertEq(loss, nonce * 1000 + 1);
            IUsageAgreements.JobStatus expected = nonce == 3
                ? IUsageAgreements.JobStatus.Settled
                : nonce == 5 ? IUsageAgreements.JobStatus.Refunded : IUsageAgreements.JobStatus.Recorded;
            assertEq(uint8(status), uint8(expected));
        }
    }

    function test_recordUsage_revertsOnWrongPurpose() public {
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), MARKETING, MEAN, 1,
            abi.encodeWithSelector(IUsageAgreements.PurposeNotAllowed.selector, id, MARKETING)
        );
    }

    function test_recordUsage_revertsOnOperationNotOffered() public {
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, EXPORT, 1,
            abi.encodeWithSelector(IUsageAgreements.OperationNotAllowed.selector, id, EXPORT)
        );
    }

    function test_recordUsage_revertsWhenCallsExhausted() public {
        uint256 id = _accept(1);
        _record(id, 1);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 2), RESEARCH, MEAN, 1, abi.encodeWithSelector(IUsageAgreements.CallsExhausted.selector, id, 1, 1)
        );
    }

    function test_recordUsage_revertsWhenDatasetBudgetExhausted() public {
        uint64 limit = 1e9;
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, limit);
        uint256 id = _accept(3);
        _recordAs(consumerKey, id, 0, limit - 10);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 11,
            abi.encodeWithSelector(IUsageAgreements.DatasetBudgetExhausted.selector, DATASET, limit - 10, 11, limit)
        );
        _recordAs(consumerKey, id, 1, 10); // exactly the rest is fine
        assertEq(_datasetUsed(DATASET), limit);
        _recordAs(consumerKey, id, 2, 0); // and a use that spends nothing still records
    }

    function test_recordUsage_sharesDatasetBudgetAcrossAgreementsAndOffers() public {
        // Accepting again, or through another offer, mints no fresh budget: the dataset's is spent.
        uint64 limit = 3 * LOSS;
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, limit);
        uint256 second = _publish(provider, DATASET);
        uint256 a1 = _accept(5);
        uint256 a2 = _accept(5);
        vm.prank(consumer);
        uint256 a3 = usage.acceptOffer(second, 5);
        _record(a1, 0);
        _record(a2, 0);
        _record(a3, 0);
        _expectRecordRevert(
            a2, usage.jobIdOf(a2, 1), RESEARCH, MEAN, LOSS,
            abi.encodeWithSelector(IUsageAgreements.DatasetBudgetExhausted.selector, DATASET, limit, LOSS, limit)
        );
    }

    function test_recordUsage_keepsDatasetBudgetsApart() public {
        address other = vm.addr(0xC0FFEE);
        vm.startPrank(other);
        registry.register(OTHER_DATASET, keccak256("m"), keccak256("c"));
        usage.setDatasetPrivacyLimit(OTHER_DATASET, LOSS);
        uint256 otherOffer =
            usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 10, 7, DURATION, CONSUMER_LIMIT, 0, 0);
        vm.stopPrank();
        vm.prank(consumer);
        uint256 id = usage.acceptOffer(otherOffer, 5);
        _record(id, 0);
        assertEq(_datasetUsed(OTHER_DATASET), LOSS);
        assertEq(_datasetUsed(DATASET), 0);
        _record(_accept(1), 0);
        assertEq(_datasetUsed(DATASET), LOSS);
    }

    function test_recordUsage_zeroLossNeedsNoLimit() public {
        address other = vm.addr(0xC0FFEE);
        vm.startPrank(other);
        registry.register(OTHER_DATASET, keccak256("m"), keccak256("c"));
        usage.declareNonPersonal(OTHER_DATASET);
        uint256 otherOffer = usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 10, 7, DURATION, 0, 0, 0);
        vm.stopPrank();
        vm.prank(consumer);
        uint256 id = usage.acceptOffer(otherOffer, 5);
        bytes32 jobId = _recordAs(consumerKey, id, 0, 0);
        assertEq(uint8(_status(jobId)), uint8(IUsageAgreements.JobStatus.Recorded));
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 1,
            abi.encodeWithSelector(IUsageAgreements.DatasetBudgetExhausted.selector, OTHER_DATASET, 0, 1, 0)
        );
        vm.prank(operator);
        usage.refund(jobId, "zero");
        (uint64 limit, uint64 used, bool nonPersonal, bool hasOffers) = usage.getDatasetPrivacy(OTHER_DATASET);
        assertEq(limit, 0);
        assertEq(used, 0);
        assertTrue(nonPersonal);
        assertTrue(hasOffers);
    }

    function test_recordUsage_revertsWhenPrivacyLossTooLarge() public {
        uint64 max = usage.MAX_JOB_PRIVACY_LOSS();
        assertGe(max, 1e9); // one job may spend at least 1.0 rho
        uint256 id = _accept(3);
        _recordAs(consumerKey, id, 0, max); // the largest is fine
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, max + 1,
            abi.encodeWithSelector(IUsageAgreements.PrivacyLossTooLarge.selector, max + 1, max)
        );
    }

    function test_recordUsage_emitsParamsHashWithoutStoringIt() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes32 paramsHash = sha256('{"by":"region","column":"bmi"}');
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, paramsHash, LOSS, block.timestamp);
        vm.record();
        vm.expectEmit(address(usage));
        emit IUsageAgreements.UsageRecorded(jobId, id, RESEARCH, MEAN, paramsHash, LOSS);
        vm.prank(operator);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, paramsHash, LOSS, block.timestamp, sig);
        (, bytes32[] memory writes) = vm.accesses(address(usage));
        assertGt(writes.length, 0);
        for (uint256 i; i < writes.length; ++i) {
            assertTrue(vm.load(address(usage), writes[i]) != paramsHash, "params hash stored");
        }
    }

    function test_recordUsage_revertsOnTamperedParamsHash() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp);
        bytes32 forged = sha256('{"column":"salary"}');
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, forged, LOSS, block.timestamp, sig);
        assertEq(_datasetUsed(DATASET), 0); // all or nothing
    }

    function test_recordUsage_revertsWhenExpired() public {
        uint256 id = _accept(3);
        uint64 expiry = uint64(block.timestamp + DURATION);
        vm.warp(expiry);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 1,
            abi.encodeWithSelector(IUsageAgreements.AgreementExpired.selector, id, expiry, block.timestamp)
        );
    }

    function test_recordUsage_revertsOnReplay() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 7);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp);
        vm.startPrank(operator);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp, sig);
        vm.expectRevert(
            abi.encodeWithSelector(IUsageAgreements.JobAlreadyRecorded.selector, jobId, IUsageAgreements.JobStatus.Recorded)
        );
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, LOSS, block.timestamp, sig);
        vm.stopPrank();
    }

    function test_recordUsage_revertsOnRefundedJob() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 7);
        vm.prank(operator);
        usage.refund(jobId, "test");
        _expectRecordRevert(
            id, jobId, RESEARCH, MEAN, LOSS,
            abi.encodeWithSelector(IUsageAgreements.JobAlreadyRecorded.selector, jobId, IUsageAgreements.JobStatus.Refunded)
        );
    }

    function test_recordUsage_revertsOnForeignSignature() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(0xBAD, id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(0xBAD), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnTamperedPrivacyLoss() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 2, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnMalformedSignature() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, address(0), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp, hex"1234");
    }

    function test_recordUsage_revertsOnExpiredDeadline() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp - 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.SignatureExpired.selector, block.timestamp - 1, block.timestamp));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp - 1, sig);
    }

    function test_recordUsage_revertsOnJobOfAnotherAgreement() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id + 1, 1);
        _expectRecordRevert(id, jobId, RESEARCH, MEAN, 1, abi.encodeWithSelector(IUsageAgreements.JobIdMismatch.selector, jobId, id));
    }

    function test_recordUsage_revertsForUnknownAgreement() public {
        bytes32 jobId = usage.jobIdOf(77, 1);
        _expectRecordRevert(77, jobId, RESEARCH, MEAN, 1, abi.encodeWithSelector(IUsageAgreements.AgreementUnknown.selector, 77));
    }

    function test_recordUsage_revertsForNonOperator() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp);
        bytes memory unauthorized = _unauthorized(consumer);
        vm.prank(consumer);
        vm.expectRevert(unauthorized);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp, sig);
    }

    function test_recordUsage_revertsWhenPaused() public {
        uint256 id = _accept(3);
        _pause();
        _expectRecordRevert(id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 1, abi.encodeWithSelector(Pausable.EnforcedPause.selector));
    }

    // ---------------------------------------------------------------------------- settle

    function test_settle_paysProvider() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.JobSettled(jobId, id, keccak256("result"), keccak256("attestation"));
        vm.prank(operator);
        usage.settle(jobId, keccak256("result"), keccak256("attestation"));
        assertEq(uint8(_status(jobId)), uint8(IUsageAgreements.JobStatus.Settled));
        assertEq(usage.withdrawable(provider), PRICE);
        IUsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.pending, 0);
        assertEq(a.callsSettled, 1);
        assertEq(a.callsUsed, 1);
        assertEq(a.escrow, 2 * uint256(PRICE));
    }

    function test_settle_revertsWithoutRecord() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.None));
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settle_revertsTwice() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        _settle(jobId);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.Settled));
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settle_revertsAfterRefund() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.startPrank(operator);
        usage.refund(jobId, "test");
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.Refunded));
        usage.settle(jobId, bytes32(0), bytes32(0));
        vm.stopPrank();
    }

    function test_settle_revertsForNonOperator() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        bytes memory unauthorized = _unauthorized(provider);
        vm.prank(provider);
        vm.expectRevert(unauthorized);
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settle_revertsWhenPaused() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        _pause();
        vm.prank(operator);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settle_worksAfterExpiryAndSuspension() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.prank(provider);
        usage.suspendAgreement(id);
        vm.warp(block.timestamp + DURATION + 1);
        _settle(jobId);
        assertEq(usage.withdrawable(provider), PRICE);
    }

    // ----------------------------------------------------------------------- settleBatch

    function test_settleBatch_settlesAllAndProvesReceipts() public {
        uint256 id = _accept(20);
        uint256 n = 11; // spans two cell words and leaves an odd node in the tree
        bytes32[] memory jobs = new bytes32[](n);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            jobs[i] = _record(id, i);
            leaves[i] = usage.receiptLeaf(jobs[i], keccak256(abi.encode("result", i)), keccak256(abi.encode("att", i)));
            assertEq(leaves[i], keccak256(abi.encode(jobs[i], keccak256(abi.encode("result", i)), keccak256(abi.encode("att", i)))));
        }
        bytes32 root = Merkle.root(leaves);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.BatchSettled(1, root, jobs);
        vm.prank(operator);
        uint256 batchId = usage.settleBatch(root, jobs);
        assertEq(batchId, 1);
        assertEq(usage.batchRoot(1), root);
        assertEq(usage.batchCount(), 1);
        assertEq(usage.withdrawable(provider), n * uint256(PRICE));
        IUsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.pending, 0);
        assertEq(a.callsSettled, n);
        for (uint256 i; i < n; ++i) {
            assertEq(uint8(_status(jobs[i])), uint8(IUsageAgreements.JobStatus.Settled));
            assertTrue(usage.verifyReceipt(batchId, leaves[i], Merkle.proof(leaves, i)));
        }
        bytes32 forged = usage.receiptLeaf(jobs[0], keccak256("forged"), bytes32(0));
        assertFalse(usage.verifyReceipt(batchId, forged, Merkle.proof(leaves, 0)));
        assertFalse(usage.verifyReceipt(batchId + 1, leaves[0], Merkle.proof(leaves, 0)));
    }

    function test_settleBatch_creditsEachProvider() public {
        // A second provider with its own dataset and offer; jobs of both, interleaved.
        uint256 otherKey = 0xC0FFEE;
        address other = vm.addr(otherKey);
        vm.startPrank(other);
        registry.register(OTHER_DATASET, keccak256("m"), keccak256("c"));
        usage.setDatasetPrivacyLimit(OTHER_DATASET, LIMIT);
        uint256 otherOffer =
            usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 10, 7, DURATION, CONSUMER_LIMIT, 0, 0);
        vm.stopPrank();
        uint256 a1 = _accept(5);
        uint256 a2 = _accept(5);
        vm.prank(consumer);
        uint256 a3 = usage.acceptOffer(otherOffer, 5);
        bytes32[] memory jobs = new bytes32[](6);
        jobs[0] = _record(a1, 0);
        jobs[1] = _record(a2, 0);
        jobs[2] = _record(a3, 0);
        jobs[3] = _record(a1, 9);
        jobs[4] = _record(a3, 1);
        jobs[5] = _record(a2, 1);
        vm.prank(operator);
        usage.settleBatch(keccak256("root"), jobs);
        assertEq(usage.withdrawable(provider), 4 * uint256(PRICE));
        assertEq(usage.withdrawable(other), 2 * 7);
        assertEq(usage.getAgreement(a1).callsSettled, 2);
        assertEq(usage.getAgreement(a2).callsSettled, 2);
        assertEq(usage.getAgreement(a3).callsSettled, 2);
    }

    function test_settleBatch_revertsOnDuplicateJob() public {
        uint256 id = _accept(3);
        bytes32[] memory jobs = new bytes32[](2);
        jobs[0] = _record(id, 1);
        jobs[1] = jobs[0];
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobs[0], IUsageAgreements.JobStatus.Settled));
        usage.settleBatch(keccak256("root"), jobs);
    }

    function test_settleBatch_revertsOnUnrecordedJob() public {
        uint256 id = _accept(3);
        bytes32[] memory jobs = new bytes32[](2);
        jobs[0] = _record(id, 1);
        jobs[1] = usage.jobIdOf(id, 2);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobs[1], IUsageAgreements.JobStatus.None));
        usage.settleBatch(keccak256("root"), jobs);
        assertEq(uint8(_status(jobs[0])), uint8(IUsageAgreements.JobStatus.Recorded)); // all or nothing
    }

    function test_settleBatch_revertsOnSettledJob() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        _settle(jobId);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.Settled));
        usage.settleBatch(keccak256("root"), _one(jobId));
    }

    function test_settleBatch_revertsOnEmptyBatch() public {
        vm.prank(operator);
        vm.expectRevert(IUsageAgreements.EmptyBatch.selector);
        usage.settleBatch(keccak256("root"), new bytes32[](0));
    }

    function test_settleBatch_revertsOnZeroRoot() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.prank(operator);
        vm.expectRevert(IUsageAgreements.ZeroRoot.selector);
        usage.settleBatch(bytes32(0), _one(jobId));
    }

    function test_settleBatch_revertsForNonOperator() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.expectRevert(_unauthorized(address(this)));
        usage.settleBatch(keccak256("root"), _one(jobId));
    }

    function test_settleBatch_revertsWhenPaused() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        _pause();
        vm.prank(operator);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.settleBatch(keccak256("root"), _one(jobId));
    }

    function test_verifyReceipt_falseForUnknownBatch() public view {
        assertFalse(usage.verifyReceipt(1, bytes32(0), new bytes32[](0)));
    }

    // ---------------------------------------------------------------------------- refund

    function test_refund_returnsCallLossAndPrice() public {
        uint256 id = _accept(1);
        bytes32 jobId = _record(id, 1);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.UsageRefunded(jobId, id, "worker_lost", LOSS, PRICE);
        vm.prank(operator);
        usage.refund(jobId, "worker_lost");
        IUsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.callsUsed, 0);
        assertEq(_datasetUsed(DATASET), 0);
        assertEq(a.escrow, PRICE);
        assertEq(a.pending, 0);
        (, IUsageAgreements.JobStatus status, uint64 loss) = usage.getUsage(jobId);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Refunded));
        assertEq(loss, LOSS);
        assertEq(usage.withdrawable(provider), 0);
        _record(id, 2); // the call is usable again
    }

    function test_refund_revertsAfterSettle() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        _settle(jobId);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.Settled));
        usage.refund(jobId, "late");
    }

    function test_refund_revertsTwice() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.startPrank(operator);
        usage.refund(jobId, "once");
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.Refunded));
        usage.refund(jobId, "twice");
        vm.stopPrank();
    }

    function test_refund_revertsWithoutRecord() public {
        bytes32 jobId = usage.jobIdOf(_accept(3), 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.None));
        usage.refund(jobId, "none");
    }

    function test_refund_revertsForNonOperator() public {
        bytes32 jobId = _record(_accept(3), 1);
        bytes memory unauthorized = _unauthorized(consumer);
        vm.prank(consumer);
        vm.expectRevert(unauthorized);
        usage.refund(jobId, "mine");
    }

    function test_refund_revertsWhenPaused() public {
        bytes32 jobId = _record(_accept(3), 1);
        _pause();
        vm.prank(operator);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.refund(jobId, "paused");
    }

    // ----------------------------------------------------------------------------- money

    function test_withdraw_paysOutEarnings() public {
        bytes32 jobId = _record(_accept(3), 1);
        _settle(jobId);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.Withdrawn(provider, PRICE);
        vm.prank(provider);
        assertEq(usage.withdraw(), PRICE);
        assertEq(token.balanceOf(provider), PRICE);
        assertEq(usage.withdrawable(provider), 0);
        assertEq(usage.totalPaidOut(), PRICE);
    }

    function test_withdraw_revertsWhenNothingEarned() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NothingToWithdraw.selector, provider));
        usage.withdraw();
    }

    function test_withdraw_worksWhenPaused() public {
        _settle(_record(_accept(3), 1));
        _pause();
        vm.prank(provider);
        usage.withdraw();
        assertEq(token.balanceOf(provider), PRICE);
    }

    function test_reclaim_returnsUnusedEscrowAfterExpiry() public {
        uint256 id = _accept(3);
        _record(id, 1);
        uint64 expiry = uint64(block.timestamp + DURATION);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.AgreementNotExpired.selector, id, expiry, block.timestamp));
        usage.reclaim(id);
        vm.warp(expiry);
        uint256 before = token.balanceOf(consumer);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.EscrowReclaimed(id, consumer, 2, 2 * uint256(PRICE));
        vm.prank(consumer);
        assertEq(usage.reclaim(id), 2 * uint256(PRICE));
        assertEq(token.balanceOf(consumer), before + 2 * uint256(PRICE));
        IUsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.escrow, 0);
        assertEq(a.pending, PRICE);
        assertEq(a.callsReclaimed, 2);
    }

    function test_reclaim_againAfterLateRefund() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.warp(block.timestamp + DURATION);
        vm.prank(consumer);
        usage.reclaim(id);
        vm.prank(operator);
        usage.refund(jobId, "late");
        assertEq(usage.getAgreement(id).escrow, PRICE);
        vm.prank(consumer);
        assertEq(usage.reclaim(id), PRICE);
        assertEq(usage.totalPaidOut(), 3 * uint256(PRICE));
    }

    function test_reclaim_revertsWhenNothingLeft() public {
        uint256 id = _accept(1);
        _settle(_record(id, 1));
        vm.warp(block.timestamp + DURATION);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NothingToReclaim.selector, id));
        usage.reclaim(id);
    }

    function test_reclaim_revertsForOthers() public {
        uint256 id = _accept(3);
        vm.warp(block.timestamp + DURATION);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NotAgreementConsumer.selector, id, address(this)));
        usage.reclaim(id);
    }

    function test_reclaim_revertsWhenUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.AgreementUnknown.selector, 5));
        usage.reclaim(5);
    }

    function test_reclaim_worksWhenPaused() public {
        uint256 id = _accept(3);
        vm.warp(block.timestamp + DURATION);
        _pause();
        vm.prank(consumer);
        assertEq(usage.reclaim(id), 3 * uint256(PRICE));
    }

    // ----------------------------------------------------------------------------- admin

    function test_pause_revertsForNonAdmin() public {
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, operator, bytes32(0))
        );
        usage.pause();
    }

    function test_unpause_restoresUsage() public {
        uint256 id = _accept(3);
        _pause();
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, consumer, bytes32(0)));
        usage.unpause();
        vm.prank(admin);
        usage.unpause();
        _record(id, 1);
    }

    // ----------------------------------------------------------------------------- views

    function test_domainSeparator_matchesEip712Domain() public view {
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = IERC5267(address(usage)).eip712Domain();
        assertEq(name, "Redlake UsageAgreements");
        assertEq(version, "1");
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256(bytes(name)),
                keccak256(bytes(version)),
                chainId,
                verifying
            )
        );
        assertEq(usage.domainSeparator(), expected);
        assertEq(
            usage.USAGE_TYPEHASH(),
            keccak256(
                "Usage(uint256 agreementId,bytes32 jobId,bytes32 purpose,bytes32 operation,bytes32 paramsHash,uint64 privacyLoss,uint256 nonce,uint256 deadline)"
            )
        );
    }

    function test_getUsage_unknownJobIsNone() public view {
        (uint256 agreementId, IUsageAgreements.JobStatus status, uint64 loss) = usage.getUsage(usage.jobIdOf(9, 9));
        assertEq(agreementId, 9);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.None));
        assertEq(loss, 0);
    }

    function test_getOffer_unknownIsEmpty() public view {
        assertEq(usage.getOffer(99).provider, address(0));
        assertEq(usage.getAgreement(99).consumer, address(0));
    }

    // ------------------------------------------------------------------------------ fuzz

    function testFuzz_acceptOffer_escrowsCallsTimesPrice(uint32 calls, uint96 price) public {
        calls = uint32(bound(calls, 1, type(uint32).max));
        price = uint96(bound(price, 0, type(uint96).max / calls));
        vm.prank(provider);
        uint256 fuzzOffer =
            usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), type(uint32).max, price, DURATION, CONSUMER_LIMIT, 0, 0);
        address buyer = makeAddr("buyer");
        uint256 amount = uint256(calls) * price;
        vm.prank(admin);
        token.mint(buyer, amount);
        vm.startPrank(buyer);
        token.approve(address(usage), amount);
        uint256 id = usage.acceptOffer(fuzzOffer, calls);
        vm.stopPrank();
        assertEq(usage.getAgreement(id).escrow, amount);
        assertEq(token.balanceOf(address(usage)), amount);
        assertEq(token.balanceOf(buyer), 0);
    }

    function testFuzz_recordUsage_rejectsAnyOtherKey(uint256 key) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        vm.assume(key != consumerKey);
        uint256 id = _accept(1);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(key, id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(key), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, 1, block.timestamp, sig);
    }

    function testFuzz_recordUsage_acceptsAnyConsumerKey(uint256 key, uint128 nonce, uint64 loss) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        loss = uint64(bound(loss, 0, usage.MAX_JOB_PRIVACY_LOSS()));
        address buyer = vm.addr(key);
        _fund(buyer);
        vm.prank(buyer);
        uint256 id = usage.acceptOffer(offerId, 2);
        bytes32 jobId = _recordAs(key, id, nonce, loss);
        (uint256 agreementId, IUsageAgreements.JobStatus status, uint64 recorded) = usage.getUsage(jobId);
        assertEq(agreementId, id);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Recorded));
        assertEq(recorded, loss);
        assertEq(_datasetUsed(DATASET), loss);
        assertTrue(usage.nonceUsed(id, nonce));
    }

    function testFuzz_recordUsage_rejectsSignatureOverOtherTerms(uint64 signedLoss, uint64 claimedLoss) public {
        signedLoss = uint64(bound(signedLoss, 0, usage.MAX_JOB_PRIVACY_LOSS()));
        claimedLoss = uint64(bound(claimedLoss, 0, usage.MAX_JOB_PRIVACY_LOSS()));
        vm.assume(signedLoss != claimedLoss);
        uint256 id = _accept(1);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, PARAMS, signedLoss, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, PARAMS, claimedLoss, block.timestamp, sig);
    }

    function testFuzz_recordUsage_rejectsOtherParamsHash(bytes32 signedParams, bytes32 claimedParams) public {
        vm.assume(signedParams != claimedParams);
        uint256 id = _accept(1);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, signedParams, LOSS, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, claimedParams, LOSS, block.timestamp, sig);
    }

    /// Any limit and any sequence of losses: a use records exactly when it fits what is left, and
    /// the spent loss is the sum of the recorded ones.
    function testFuzz_recordUsage_spendsExactlyWithinTheLimit(uint64 limit, uint64[6] memory losses) public {
        vm.prank(provider);
        usage.setDatasetPrivacyLimit(DATASET, limit);
        uint256 id = _accept(uint32(losses.length));
        uint256 spent;
        for (uint256 i; i < losses.length; ++i) {
            spent = _recordIfItFits(id, i, uint64(bound(losses[i], 0, usage.MAX_JOB_PRIVACY_LOSS())), spent, limit);
        }
        (uint64 storedLimit, uint64 used,,) = usage.getDatasetPrivacy(DATASET);
        assertEq(storedLimit, limit);
        assertEq(used, spent);
        assertLe(used, storedLimit);
    }

    /// Records the use if `spent + loss` fits the limit, else expects it refused by name.
    function _recordIfItFits(uint256 id, uint256 nonce, uint64 loss, uint256 spent, uint64 limit)
        internal
        returns (uint256)
    {
        if (spent + loss <= limit) {
            _recordAs(consumerKey, id, nonce, loss);
            return spent + loss;
        }
        bytes memory err =
            abi.encodeWithSelector(IUsageAgreements.DatasetBudgetExhausted.selector, DATASET, uint64(spent), loss, limit);
        _expectRecordRevert(id, usage.jobIdOf(id, nonce), RESEARCH, MEAN, loss, err);
        return spent;
    }

    function testFuzz_refund_restoresAgreementAndDataset(uint128 nonce, uint64 loss) public {
        loss = uint64(bound(loss, 0, usage.MAX_JOB_PRIVACY_LOSS()));
        _record(_accept(1), 0); // the dataset has spent something already
        uint64 usedBefore = _datasetUsed(DATASET);
        uint256 id = _accept(1);
        IUsageAgreements.Agreement memory before = usage.getAgreement(id);
        bytes32 jobId = _recordAs(consumerKey, id, nonce, loss);
        assertEq(_datasetUsed(DATASET), usedBefore + loss);
        vm.prank(operator);
        usage.refund(jobId, "fuzz");
        IUsageAgreements.Agreement memory afterRefund = usage.getAgreement(id);
        assertEq(afterRefund.callsUsed, before.callsUsed);
        assertEq(_datasetUsed(DATASET), usedBefore);
        assertEq(afterRefund.escrow, before.escrow);
        assertEq(afterRefund.pending, 0);
    }

    function testFuzz_settleBatch_creditsCountTimesPrice(uint8 count, uint16 start) public {
        uint256 n = bound(count, 1, 40);
        uint256 id = _accept(40);
        bytes32[] memory jobs = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            jobs[i] = _recordAs(consumerKey, id, uint256(start) + i, 1);
        }
        vm.prank(operator);
        usage.settleBatch(keccak256("root"), jobs);
        assertEq(usage.withdrawable(provider), n * uint256(PRICE));
        assertEq(usage.getAgreement(id).pending, 0);
        assertEq(usage.getAgreement(id).escrow, (40 - n) * uint256(PRICE));
    }

    function testFuzz_jobId_roundTrips(uint128 agreementId, uint128 nonce) public view {
        (uint256 a, uint256 n) = usage.splitJobId(usage.jobIdOf(agreementId, nonce));
        assertEq(a, agreementId);
        assertEq(n, nonce);
    }
}
