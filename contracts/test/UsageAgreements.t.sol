// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {UsageAgreements} from "../src/UsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

contract UsageAgreementsTest is Fixture {
    // ------------------------------------------------------------- offers

    function test_publishOffer_recordsTerms() public view {
        UsageAgreements.Offer memory offer = usage.getOffer(offerId);
        assertEq(offer.provider, provider);
        assertEq(offer.pricePerCall, PRICE);
        assertTrue(offer.active);
        assertTrue(usage.purposeAllowed(offerId, RESEARCH));
        assertFalse(usage.purposeAllowed(offerId, MARKETING));
    }

    function test_publishOffer_revertsForNonProvider() public {
        bytes32[] memory one = new bytes32[](1);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.NotOfferProvider.selector, 0, address(this)));
        usage.publishOffer(DATASET, bytes32(0), one, one, 1, 1, 1, 1);
    }

    function test_publishOffer_revertsOnInvalidTerms() public {
        bytes32[] memory none = new bytes32[](0);
        bytes32[] memory one = new bytes32[](1);
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.InvalidOffer.selector, "maxCalls"));
        usage.publishOffer(DATASET, bytes32(0), one, one, 0, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.InvalidOffer.selector, "purposes"));
        usage.publishOffer(DATASET, bytes32(0), none, one, 1, 1, 1, 1);
        vm.stopPrank();
    }

    function test_publishOffer_revertsForRetiredDataset() public {
        vm.prank(provider);
        registry.retire(DATASET);
        vm.expectRevert();
        _publish(provider, DATASET);
    }

    function test_revokeOffer_blocksNewAgreements() public {
        vm.prank(provider);
        usage.revokeOffer(offerId);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.OfferInactive.selector, offerId));
        usage.acceptOffer(offerId, 1);
    }

    function test_revokeOffer_revertsForOthers() public {
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.NotOfferProvider.selector, offerId, address(this)));
        usage.revokeOffer(offerId);
    }

    // --------------------------------------------------------- agreements

    function test_acceptOffer_escrowsPrice() public {
        uint256 before = token.balanceOf(consumer);
        uint256 agreementId = _accept(10);
        UsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.escrow, 10 * PRICE);
        assertEq(a.callsBought, 10);
        assertEq(a.expiry, block.timestamp + DURATION);
        assertEq(token.balanceOf(consumer), before - 10 * PRICE);
        assertEq(token.balanceOf(address(usage)), 10 * PRICE);
        assertEq(usage.totalDeposited(), 10 * PRICE);
    }

    function test_acceptOffer_revertsOnCallsOutOfRange() public {
        vm.startPrank(consumer);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.CallsOutOfRange.selector, 0, MAX_CALLS));
        usage.acceptOffer(offerId, 0);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.CallsOutOfRange.selector, MAX_CALLS + 1, MAX_CALLS));
        usage.acceptOffer(offerId, MAX_CALLS + 1);
        vm.stopPrank();
    }

    function test_acceptOffer_revertsForUnknownOffer() public {
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.OfferUnknown.selector, 99));
        usage.acceptOffer(99, 1);
    }

    function test_acceptOffer_revertsWhenPaused() public {
        vm.prank(admin);
        usage.pause();
        vm.prank(consumer);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        usage.acceptOffer(offerId, 1);
    }

    function test_suspendAgreement_blocksUsageUntilResumed() public {
        uint256 agreementId = _accept(5);
        vm.prank(provider);
        usage.suspendAgreement(agreementId);
        bytes32 jobId = usage.jobIdOf(agreementId, 1);
        bytes memory sig = _sign(consumerKey, agreementId, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.AgreementSuspendedError.selector, agreementId));
        usage.recordUsage(agreementId, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
        vm.prank(provider);
        usage.resumeAgreement(agreementId);
        vm.prank(operator);
        usage.recordUsage(agreementId, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
        assertEq(usage.jobStatus(jobId), usage.JOB_RECORDED());
    }

    function test_suspendAgreement_revertsForOthers() public {
        uint256 agreementId = _accept(5);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.NotAgreementProvider.selector, agreementId, address(this)));
        usage.suspendAgreement(agreementId);
    }

    // -------------------------------------------------------------- usage

    function test_recordUsage_movesPriceToPending() public {
        uint256 agreementId = _accept(3);
        bytes32 jobId = _record(agreementId, 42);
        UsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.callsUsed, 1);
        assertEq(a.openCalls, 1);
        assertEq(a.escrow, 2 * PRICE);
        assertEq(a.budgetUsed, 1e5);
        assertEq(usage.jobStatus(jobId), usage.JOB_RECORDED());
        assertEq(usage.balanceOf(provider), 0);
    }

    function _expectRecordRevert(uint256 agreementId, bytes32 jobId, bytes32 purpose, bytes32 op, uint64 eps, bytes memory err)
        internal
    {
        bytes memory sig = _sign(consumerKey, agreementId, jobId, purpose, op, eps, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(err);
        usage.recordUsage(agreementId, jobId, purpose, op, eps, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnWrongPurpose() public {
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), MARKETING, MEAN, 1,
            abi.encodeWithSelector(UsageAgreements.PurposeNotAllowed.selector, id, MARKETING)
        );
    }

    function test_recordUsage_revertsOnOperationNotOffered() public {
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, EXPORT, 1,
            abi.encodeWithSelector(UsageAgreements.OperationNotAllowed.selector, id, EXPORT)
        );
    }

    function test_recordUsage_revertsWhenCallsExhausted() public {
        uint256 id = _accept(1);
        _record(id, 1);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 2), RESEARCH, MEAN, 1,
            abi.encodeWithSelector(UsageAgreements.CallsExhausted.selector, id, 1, 1)
        );
    }

    function test_recordUsage_revertsWhenBudgetExhausted() public {
        uint256 id = _accept(3);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, BUDGET + 1,
            abi.encodeWithSelector(UsageAgreements.BudgetExhausted.selector, id, 0, BUDGET + 1, BUDGET)
        );
    }

    function test_recordUsage_revertsWhenExpired() public {
        uint256 id = _accept(3);
        vm.warp(block.timestamp + DURATION);
        _expectRecordRevert(
            id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 1,
            abi.encodeWithSelector(UsageAgreements.AgreementExpired.selector, id, uint64(block.timestamp))
        );
    }

    function test_recordUsage_revertsOnReplay() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 7);
        _expectRecordRevert(id, jobId, RESEARCH, MEAN, 1e5, abi.encodeWithSelector(UsageAgreements.JobAlreadyRecorded.selector, jobId));
    }

    function test_recordUsage_revertsOnForeignSignature() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(0xBAD, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.InvalidSignature.selector, vm.addr(0xBAD), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
    }

    function test_recordUsage_revertsOnExpiredDeadline() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(consumerKey, id, jobId, RESEARCH, MEAN, 1, block.timestamp - 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.SignatureExpired.selector, block.timestamp - 1, block.timestamp));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp - 1, sig);
    }

    function test_recordUsage_revertsOnJobOfAnotherAgreement() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id + 1, 1);
        _expectRecordRevert(id, jobId, RESEARCH, MEAN, 1, abi.encodeWithSelector(UsageAgreements.AgreementUnknown.selector, id + 1));
    }

    function test_recordUsage_revertsForNonOperator() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        vm.expectRevert();
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, "");
    }

    function test_recordUsage_revertsWhenPaused() public {
        uint256 id = _accept(3);
        vm.prank(admin);
        usage.pause();
        _expectRecordRevert(id, usage.jobIdOf(id, 1), RESEARCH, MEAN, 1, abi.encodeWithSelector(Pausable.EnforcedPause.selector));
    }

    function test_settle_paysProvider() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.prank(operator);
        usage.settle(jobId, keccak256("result"), keccak256("attestation"));
        assertEq(usage.jobStatus(jobId), usage.JOB_SETTLED());
        assertEq(usage.balanceOf(provider), PRICE);
        assertEq(usage.getAgreement(id).openCalls, 0);
    }

    function test_settle_revertsWithoutRecord() public {
        uint256 id = _accept(3);
        bytes32 jobId = usage.jobIdOf(id, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.JobNotOpen.selector, jobId, 0));
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settle_revertsTwice() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.startPrank(operator);
        usage.settle(jobId, bytes32(0), bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.JobNotOpen.selector, jobId, 2));
        usage.settle(jobId, bytes32(0), bytes32(0));
        vm.stopPrank();
    }

    function test_refund_returnsCallAndPrice() public {
        uint256 id = _accept(1);
        bytes32 jobId = _record(id, 1);
        vm.prank(operator);
        usage.refund(jobId, "worker_lost");
        UsageAgreements.Agreement memory a = usage.getAgreement(id);
        assertEq(a.callsUsed, 0);
        assertEq(a.escrow, PRICE);
        assertEq(usage.jobStatus(jobId), usage.JOB_REFUNDED());
        _record(id, 2); // the call is usable again
    }

    function test_refund_revertsAfterSettle() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.startPrank(operator);
        usage.settle(jobId, bytes32(0), bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.JobNotOpen.selector, jobId, 2));
        usage.refund(jobId, "late");
        vm.stopPrank();
    }

    function test_settleBatch_settlesAllAndProvesReceipts() public {
        uint256 id = _accept(4);
        bytes32[] memory jobs = new bytes32[](4);
        bytes32[] memory leaves = new bytes32[](4);
        for (uint256 i; i < 4; ++i) {
            jobs[i] = _record(id, i * 200); // spans two bitmap words
            leaves[i] = keccak256(bytes.concat(keccak256(abi.encode(jobs[i], keccak256(abi.encode(i)), bytes32(0)))));
        }
        // A two-level tree over the four leaves (sorted pairs, as MerkleProof expects).
        bytes32 left = _pair(leaves[0], leaves[1]);
        bytes32 right = _pair(leaves[2], leaves[3]);
        bytes32 root = _pair(left, right);
        vm.prank(operator);
        uint256 batchId = usage.settleBatch(root, jobs);
        assertEq(usage.balanceOf(provider), 4 * PRICE);
        assertEq(usage.getAgreement(id).openCalls, 0);
        for (uint256 i; i < 4; ++i) {
            assertEq(usage.jobStatus(jobs[i]), usage.JOB_SETTLED());
        }
        bytes32[] memory proof = new bytes32[](2);
        proof[0] = leaves[1];
        proof[1] = right;
        assertTrue(usage.verifyReceipt(batchId, jobs[0], keccak256(abi.encode(uint256(0))), bytes32(0), proof));
        assertFalse(usage.verifyReceipt(batchId, jobs[0], keccak256("forged"), bytes32(0), proof));
        assertTrue(MerkleProof.verify(proof, root, leaves[0]));
    }

    function test_settleBatch_revertsOnDuplicateJob() public {
        uint256 id = _accept(3);
        bytes32[] memory jobs = new bytes32[](2);
        jobs[0] = _record(id, 1);
        jobs[1] = jobs[0];
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.JobNotOpen.selector, jobs[0], 1));
        usage.settleBatch(bytes32(0), jobs);
    }

    function test_settleBatch_revertsOnEmptyBatch() public {
        vm.prank(operator);
        vm.expectRevert(UsageAgreements.EmptyBatch.selector);
        usage.settleBatch(bytes32(0), new bytes32[](0));
    }

    function _pair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    // -------------------------------------------------------------- money

    function test_withdraw_paysOutEarnings() public {
        uint256 id = _accept(3);
        bytes32 jobId = _record(id, 1);
        vm.prank(operator);
        usage.settle(jobId, bytes32(0), bytes32(0));
        vm.prank(provider);
        usage.withdraw();
        assertEq(token.balanceOf(provider), PRICE);
        assertEq(usage.balanceOf(provider), 0);
        assertEq(usage.totalPaidOut(), PRICE);
    }

    function test_withdraw_revertsWhenNothingEarned() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.NothingToWithdraw.selector, provider));
        usage.withdraw();
    }

    function test_reclaim_returnsUnusedEscrowAfterExpiry() public {
        uint256 id = _accept(3);
        _record(id, 1);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.AgreementNotExpired.selector, id, uint64(block.timestamp + DURATION)));
        usage.reclaim(id);
        vm.warp(block.timestamp + DURATION);
        uint256 before = token.balanceOf(consumer);
        vm.prank(consumer);
        usage.reclaim(id);
        assertEq(token.balanceOf(consumer), before + 2 * PRICE);
    }

    function test_reclaim_revertsForOthers() public {
        uint256 id = _accept(3);
        vm.warp(block.timestamp + DURATION);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.NotAgreementConsumer.selector, id, address(this)));
        usage.reclaim(id);
    }

    // --------------------------------------------------------------- fuzz

    function testFuzz_acceptOffer_escrowsCallsTimesPrice(uint32 calls) public {
        calls = uint32(bound(calls, 1, MAX_CALLS));
        uint256 id = _accept(calls);
        assertEq(usage.getAgreement(id).escrow, uint256(calls) * PRICE);
    }

    function testFuzz_recordUsage_rejectsAnyOtherKey(uint256 key) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        vm.assume(key != consumerKey);
        uint256 id = _accept(1);
        bytes32 jobId = usage.jobIdOf(id, 1);
        bytes memory sig = _sign(key, id, jobId, RESEARCH, MEAN, 1, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(UsageAgreements.InvalidSignature.selector, vm.addr(key), consumer));
        usage.recordUsage(id, jobId, RESEARCH, MEAN, 1, block.timestamp, sig);
    }

    function testFuzz_jobId_roundTrips(uint64 agreementId, uint128 nonce) public view {
        (uint256 a, uint256 n) = usage.splitJobId(usage.jobIdOf(agreementId, nonce));
        assertEq(a, agreementId);
        assertEq(n, nonce);
    }
}
