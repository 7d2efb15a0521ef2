// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IUsageAgreements} from "../src/IUsageAgreements.sol";
import {Fixture} from "./Fixture.sol";

/// Metered offers: each call escrows its price plus the charge for the offer's CPU maximum; a
/// settled call pays the provider the price plus what was used (capped at the maximum), and
/// credits the rest back to the consumer.
contract MeteringTest is Fixture {
    uint96 internal constant RATE = 2e18; // per CPU-second
    uint32 internal constant MAX_CPU_MS = 30_000; // 30 CPU-seconds a call at most
    uint256 internal constant MAX_PER_CALL = uint256(PRICE) + uint256(RATE) * MAX_CPU_MS / 1000;

    uint256 internal meteredOffer;

    function setUp() public override {
        super.setUp();
        vm.prank(provider);
        meteredOffer = usage.publishOffer(
            DATASET, POLICY, _one(RESEARCH), _one(MEAN), MAX_CALLS, PRICE, DURATION, CONSUMER_LIMIT, RATE, MAX_CPU_MS
        );
    }

    function _acceptMetered(uint32 calls) internal returns (uint256 agreementId) {
        vm.prank(consumer);
        agreementId = usage.acceptOffer(meteredOffer, calls);
    }

    function _used(uint64 cpuMillis) internal pure returns (IUsageAgreements.Metering memory) {
        return IUsageAgreements.Metering({cpuMillis: cpuMillis, peakMemoryBytes: 64 << 20, bytesRead: 1 << 20});
    }

    function _settleMetered(bytes32 jobId, uint64 cpuMillis) internal {
        vm.prank(operator);
        usage.settleMetered(jobId, keccak256("result"), keccak256("attestation"), _used(cpuMillis));
    }

    function test_publish_recordsMeteringAndEmitsOfferMetered() public {
        vm.expectEmit(address(usage));
        emit IUsageAgreements.OfferMetered(meteredOffer + 1, RATE, MAX_CPU_MS);
        vm.prank(provider);
        uint256 id = usage.publishOffer(
            DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, PRICE, 1 days, CONSUMER_LIMIT, RATE, MAX_CPU_MS
        );
        IUsageAgreements.Offer memory offer = usage.getOffer(id);
        assertEq(offer.computeRate, RATE);
        assertEq(offer.maxCpuMillis, MAX_CPU_MS);
        assertEq(usage.getOffer(offerId).maxCpuMillis, 0, "the fixture's offer is unmetered");
    }

    function test_publish_revertsOnRateWithoutMaximum() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidMetering.selector, RATE, 0));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, PRICE, 1 days, CONSUMER_LIMIT, RATE, 0);
    }

    function test_publish_revertsWhenCallMaximumOverflows96Bits() public {
        uint96 rate = type(uint96).max;
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.InvalidMetering.selector, rate, 2000));
        usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, PRICE, 1 days, CONSUMER_LIMIT, rate, 2000);
    }

    function test_publish_freeComputeIsStillMetered() public {
        vm.prank(provider);
        uint256 id =
            usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, PRICE, 1 days, CONSUMER_LIMIT, 0, 1000);
        vm.prank(consumer);
        uint256 agreementId = usage.acceptOffer(id, 1);
        assertTrue(usage.getAgreement(agreementId).metered);
        assertEq(usage.getAgreement(agreementId).pricePerCall, PRICE);
    }

    function test_accept_escrowsEachCallsMaximum() public {
        uint256 before = token.balanceOf(consumer);
        uint256 agreementId = _acceptMetered(3);
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertTrue(a.metered);
        assertEq(a.pricePerCall, MAX_PER_CALL);
        assertEq(a.escrow, 3 * MAX_PER_CALL);
        assertEq(before - token.balanceOf(consumer), 3 * MAX_PER_CALL);
    }

    function test_settleMetered_paysPriceAndUsedComputeAndReturnsTheRest() public {
        uint256 agreementId = _acceptMetered(2);
        bytes32 jobId = _record(agreementId, 0);
        uint256 charged = uint256(PRICE) + uint256(RATE) * 2_000 / 1000; // 2 CPU-seconds
        vm.expectEmit(address(usage));
        emit IUsageAgreements.JobSettled(jobId, agreementId, keccak256("result"), keccak256("attestation"));
        vm.expectEmit(address(usage));
        emit IUsageAgreements.ComputeMetered(jobId, agreementId, 2_000, 64 << 20, 1 << 20, charged, MAX_PER_CALL - charged);
        _settleMetered(jobId, 2_000);
        assertEq(usage.withdrawable(provider), charged);
        assertEq(usage.withdrawable(consumer), MAX_PER_CALL - charged);
        assertEq(uint8(usage.jobStatus(jobId)), uint8(IUsageAgreements.JobStatus.Settled));
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.callsSettled, 1);
        assertEq(a.pending, 0);
        assertEq(a.escrow, MAX_PER_CALL);
    }

    function test_settleMetered_capsTheChargeAtTheOffersMaximum() public {
        bytes32 jobId = _record(_acceptMetered(1), 0);
        _settleMetered(jobId, type(uint64).max);
        assertEq(usage.withdrawable(provider), MAX_PER_CALL);
        assertEq(usage.withdrawable(consumer), 0);
    }

    function test_settleMetered_roundsSubMillisecondChargesDown() public {
        vm.prank(provider);
        uint256 id =
            usage.publishOffer(DATASET, POLICY, _one(RESEARCH), _one(MEAN), 1, 0, 1 days, CONSUMER_LIMIT, 999, 1000);
        vm.prank(consumer);
        bytes32 jobId = _record(usage.acceptOffer(id, 1), 0);
        _settleMetered(jobId, 1); // 999 * 1 / 1000 = 0.999: the consumer keeps the fraction
        assertEq(usage.withdrawable(provider), 0);
        assertEq(usage.withdrawable(consumer), 999);
    }

    function test_consumerWithdrawsWhatMeteringReturned() public {
        bytes32 jobId = _record(_acceptMetered(1), 0);
        _settleMetered(jobId, 0);
        uint256 before = token.balanceOf(consumer);
        vm.prank(consumer);
        uint256 amount = usage.withdraw();
        assertEq(amount, MAX_PER_CALL - PRICE);
        assertEq(token.balanceOf(consumer) - before, amount);
    }

    function test_settle_revertsForMeteredJob() public {
        bytes32 jobId = _record(_acceptMetered(1), 0);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.MeteringRequired.selector, jobId));
        usage.settle(jobId, bytes32(0), bytes32(0));
    }

    function test_settleBatch_revertsForMeteredJobAmongOthers() public {
        bytes32 plain = _record(_accept(1), 0);
        bytes32 metered = _record(_acceptMetered(1), 0);
        bytes32[] memory jobs = new bytes32[](2);
        (jobs[0], jobs[1]) = (plain, metered);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.MeteringRequired.selector, metered));
        usage.settleBatch(keccak256("root"), jobs);
        assertEq(uint8(usage.jobStatus(plain)), uint8(IUsageAgreements.JobStatus.Recorded), "nothing half-settled");
    }

    function test_settleMetered_revertsForUnmeteredJob() public {
        bytes32 jobId = _record(_accept(1), 0);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IUsageAgreements.NotMetered.selector, jobId));
        usage.settleMetered(jobId, bytes32(0), bytes32(0), _used(1));
    }

    function test_settleMetered_revertsForNonOperatorAndUnrecordedJob() public {
        uint256 agreementId = _acceptMetered(1);
        bytes32 jobId = usage.jobIdOf(agreementId, 0);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(IUsageAgreements.JobNotRecorded.selector, jobId, IUsageAgreements.JobStatus.None)
        );
        usage.settleMetered(jobId, bytes32(0), bytes32(0), _used(1));
        _record(agreementId, 0);
        vm.expectRevert();
        usage.settleMetered(jobId, bytes32(0), bytes32(0), _used(1));
    }

    function test_refund_returnsTheWholeMaximumToEscrow() public {
        uint256 agreementId = _acceptMetered(1);
        bytes32 jobId = _record(agreementId, 0);
        vm.prank(operator);
        usage.refund(jobId, "sandbox_limit");
        IUsageAgreements.Agreement memory a = usage.getAgreement(agreementId);
        assertEq(a.escrow, MAX_PER_CALL);
        assertEq(a.pending, 0);
        assertEq(usage.withdrawable(provider), 0);
    }

    /// Whatever was used, the call's maximum is split exactly, the provider's share never exceeds
    /// the maximum and grows with what was used.
    function testFuzz_settleMetered_splitsTheMaximumExactly(uint64 cpuA, uint64 cpuB) public {
        (cpuA, cpuB) = cpuA <= cpuB ? (cpuA, cpuB) : (cpuB, cpuA);
        uint256 agreementId = _acceptMetered(2);
        _settleMetered(_record(agreementId, 0), cpuA);
        uint256 chargedA = usage.withdrawable(provider);
        _settleMetered(_record(agreementId, 1), cpuB);
        uint256 chargedB = usage.withdrawable(provider) - chargedA;
        assertEq(usage.withdrawable(provider) + usage.withdrawable(consumer), 2 * MAX_PER_CALL);
        assertLe(chargedA, chargedB);
        assertGe(chargedA, PRICE);
        assertLe(chargedB, MAX_PER_CALL);
    }
}
