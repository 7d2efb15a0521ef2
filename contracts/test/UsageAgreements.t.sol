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
    bytes32 internal constant OTHER_DATASET = keccak256("dataset-2");

    function _status(bytes32 jobId) internal view returns (IUsageAgreements.JobStatus) {
        return usage.jobStatus(jobId);
    }

    function _expectRecordRevert(uint256 agreementId, bytes32 jobId, bytes32 purpose, bytes32 op, uint64 eps, bytes memory err)
        internal
    {
        bytes memory sig = _sign(consumerKey, agreementId, jobId, purpose, op, eps, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(err);
        usage.recordUsage(agreementId, jobId, purpose, op, eps, block.timestamp, sig);
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
        assertEq(usage.MAX_JOB_EPSILON(), 2 ** 30 - 1);
    }

    // ---------------------------------------------------------------------------- offers

    function test_publishOffer_recordsTerms() public view {
        IUsageAgreements.Offer memory offer = usage.getOffer(offerId);
        assertEq(offer.provider, provider);
        assertEq(offer.maxCalls, MAX_CALLS);
        assertEq(offer.duration, DURATION);
        assertTrue(offer.active);
        assertEq(offer.pricePerCall, PRICE);
        assertEq(offer.privacyBudget, BUDGET);
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
        assertEq(usage.publishOffer(DATASET, POLICY, purposes, _one(MEAN), 7, 3, 1 days, 5e6), 2);
        assertTrue(usage.purposeAllowed(2, MARKETING));
    }

    function test_publishOffer_revertsForNonProvider() public {
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, DATASET, address(this)));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1);
    }

    function test_publishOffer_revertsForUnknownDataset() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, OTHER_DATASET));
        usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1);
    }

    function test_publishOffer_revertsForRetiredDataset() public {
        vm.prank(provider);
        registry.retire(DATASET);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, DATASET));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1);
    }

    function test_publishOffer_revertsOnInvalidTerms() public {
        bytes32[] memory none = new bytes32[](0);
        bytes32[] memory one = _one(RESEARCH);
        uint64 tooLong = usage.MAX_DURATION() + 1;
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 0, 1, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 0, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 0, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 1, 1, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, tooLong, 1, 1));
        usage.publishOffer(DATASET, POLICY, one, one, 1, 1, tooLong, 1);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 1, 0, 1));
        usage.publishOffer(DATASET, POLICY, none, one, 1, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidOfferTerms.selector, 1, 1, 1, 0));
        usage.publishOffer(DATASET, POLICY, one, none, 1, 1, 1, 1);
        vm.stopPrank();
    }

    function test_publishOffer_revertsWhenPaused() public {
        _pause();
        vm.prank(provider);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 1, 1, 1);
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
        assertEq(a.privacyBudget, BUDGET);
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
        emit IUsageAgreements.UsageRecorded(jobId, agreementId, RESEARCH, MEAN, EPS);
        _record(agreementId, 42);
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.callsUsed, 1);
        assertEq(a.escrow, 2 * uint256(PRICE));
        assertEq(a.pending, PRICE);
        assertEq(a.budgetUsed, EPS);
        (uint256 recordedAgreement, IUsageAgreements.JobStatus status, uint64 epsilon) = usage.getUsage(jobId);
        assertEq(recordedAgreement, agreementId);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Recorded));
        assertEq(epsilon, EPS);
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
            (, IUsageAgreements.JobStatus status, uint64 epsilon) = usage.getUsage(usage.jobIdOf(agreementId, nonce));
            assertEq(epsilon, nonce * 1000 + 1);
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

    function test_recordUsage_revertsWhenBudgetExhausted() public {
        uint256 id = _accept(3);
        _recordAs(consumerKey, id, 0, BUDGET - 10);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 11,
            abi.encodeWithSelector(IUsageAgreements.BudgetExhausted.selector, id, BUDGET - 10, 11, BUDGET)
        );
        _recordAs(consumerKey, id, 1, 10); // exactly the rest is fine
    }

    function test_recordUsage_revertsWhenEpsilonTooLarge() public {
        uint64 max = usage.MAX_JOB_EPSILON();
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, max + 1,
            abi.encodeWithSelector(IUsageAgreements.EpsilonTooLarge.selector, max + 1, max)
        );
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
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, EPS, block.timestamp);
        vm.startPrank(operator);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, EPS, block.timestamp, sig);
        vm.expectRevert(
            abi.encodeWithSelector(IUsageAgreements.JobAlreadyRecorded.selector, jobId, IUsageAgreements.JobStatus.Recorded)
        );
        usage.recordUsage(id, jobId, RESEARCH, MEAN, EPS, block.timestamp, sig);
        vm.stopPrank();
    }

    function test_recordUsage_revertsOnRefundedJob() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 7);
        vm.prank(operator);
        usage.refund(jobId, "test");
        _expectRecordRevert(
            id, jobId, RESEARCH, MEAN, EPS,
            abi.encodeWithSelector(IUsageAgreements.JobAlreadyRecorded.selector, jobId, IUsageAgreements.JobStatus.Refunded)
        );
    }

    function test_recordUsage_revertsOnForeignSignature() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(0xBAD, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(0xBAD), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnTamperedEpsilon() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 2, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnMalformedSignature() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, address(0), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, hex"1234");
    }

    function test_recordUsage_revertsOnExpiredDeadline() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, 1, block.timestamp - 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.SignatureExpired.selector, block.timestamp - 1, block.timestamp));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp - 1, sig);
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
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        bytes memory unauthorized = _unauthorized(consumer);
        vm.prank(consumer);
        vm.expectRevert(unauthorized);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
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
        vm.prank(other);
        registry.register(OTHER_DATASET, keccak256("m"), keccak256("c"));
        vm.prank(other);
        uint256 otherOffer =
            usage.publishOffer(OTHER_DATASET, POLICY, _one(RESEARCH), _one(MEAN), 10, 7, DURATION, BUDGET);
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

    function test_refund_returnsCallEpsilonAndPrice() public {
        uint256 id = _accept(1);
        bytes32 jobId = _record(id, 1);
        vm.expectEmit(address(usage));
        emit IUsageAgreements.UsageRefunded(jobId, id, "worker_lost", EPS, PRICE);
        vm.prank(operator);
        usage.refund(jobId, "worker_lost");
        IUsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.callsUsed, 0);
        assertEq(a.budgetUsed, 0);
        assertEq(a.escrow, PRICE);
        assertEq(a.pending, 0);
        (, IUsageAgreements.JobStatus status, uint64 epsilon) = usage.getUsage(jobId);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Refunded));
        assertEq(epsilon, EPS);
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
                "Usage(uint256 agreementId,bytes32 jobId,bytes32 purpose,bytes32 operation,uint64 epsilon,uint256 nonce,uint256 deadline)"
            )
        );
    }

    function test_getUsage_unknownJobIsNone() public view {
        (uint256 agreementId, IUsageAgreements.JobStatus status, uint64 epsilon) = usage.getUsage(usage.jobIdOf(9, 9));
        assertEq(agreementId, 9);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.None));
        assertEq(epsilon, 0);
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
        uint256 fuzzOffer = usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), type(uint32).max, price, DURATION, BUDGET);
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
        bytes memory sig = _sign(key, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(key), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
    }

    function testFuzz_recordUsage_acceptsAnyConsumerKey(uint256 key, uint128 nonce, uint64 epsilon) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        epsilon = uint64(bound(epsilon, 0, BUDGET));
        address buyer = vm.addr(key);
        _fund(buyer);
        vm.prank(buyer);
        uint256 id = usage.acceptOffer(offerId, 2);
        bytes32 jobId = _recordAs(key, id, nonce, epsilon);
        (uint256 agreementId, IUsageAgreements.JobStatus status, uint64 recorded) = usage.getUsage(jobId);
        assertEq(agreementId, id);
        assertEq(uint8(status), uint8(IUsageAgreements.JobStatus.Recorded));
        assertEq(recorded, epsilon);
        assertTrue(usage.nonceUsed(id, nonce));
    }

    function testFuzz_recordUsage_rejectsSignatureOverOtherTerms(uint64 signedEpsilon, uint64 claimedEpsilon) public {
        signedEpsilon = uint64(bound(signedEpsilon, 0, BUDGET));
        claimedEpsilon = uint64(bound(claimedEpsilon, 0, BUDGET));
        vm.assume(signedEpsilon != claimedEpsilon);
        uint256 id = _accept(1);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, signedEpsilon, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        usage.recordUsage(id, jobId, RESEARCH, MEAN, claimedEpsilon, block.timestamp, sig);
    }

    function testFuzz_refund_restoresAgreement(uint128 nonce, uint64 epsilon) public {
        epsilon = uint64(bound(epsilon, 0, BUDGET));
        uint256 id = _accept(1);
        IUsageAgreements.Agreement memory before = usage.getAgreement(id);
        bytes32 jobId = _recordAs(consumerKey, id, nonce, epsilon);
        vm.prank(operator);
        usage.refund(jobId, "fuzz");
        IUsageAgreements.Agreement memory afterRefund = usage.getAgreement(id);
        assertEq(afterRefund.callsUsed, before.callsUsed);
        assertEq(afterRefund.budgetUsed, before.budgetUsed);
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
