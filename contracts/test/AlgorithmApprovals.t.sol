// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AlgorithmApprovals} from "../src/AlgorithmApprovals.sol";
import {IAlgorithmApprovals} from "../src/IAlgorithmApprovals.sol";
import {Fixture} from "./Fixture.sol";

contract AlgorithmApprovalsTest is Fixture {
    AlgorithmApprovals internal approvals;
    bytes32 internal constant MEASUREMENT = keccak256("bundle+profile");
    bytes32 internal constant BUNDLE = keccak256("bundle");
    uint8 internal constant SANDBOX = 1;
    uint8 internal constant NITRO = 2;

    function setUp() public override {
        super.setUp();
        approvals = new AlgorithmApprovals(usage);
    }

    function test_nothingIsApprovedByDefault() public view {
        assertEq(approvals.approvedTeeTypes(offerId, MEASUREMENT), 0);
        assertFalse(approvals.isApproved(offerId, MEASUREMENT, SANDBOX));
    }

    function test_teeTypeBits() public view {
        assertEq(approvals.TEE_SANDBOX(), 1);
        assertEq(approvals.TEE_NITRO(), 2);
        assertEq(approvals.TEE_SGX(), 4);
        assertEq(approvals.TEE_TDX(), 8);
        assertEq(approvals.TEE_SEV_SNP(), 16);
    }

    function test_approve_byProviderForTheTypesGiven() public {
        vm.expectEmit(address(approvals));
        emit IAlgorithmApprovals.AlgorithmApproved(offerId, MEASUREMENT, provider, NITRO, BUNDLE);
        vm.prank(provider);
        approvals.approve(offerId, MEASUREMENT, NITRO, BUNDLE);
        assertTrue(approvals.isApproved(offerId, MEASUREMENT, NITRO));
        assertFalse(approvals.isApproved(offerId, MEASUREMENT, SANDBOX), "the sandbox needs its own bit");
        assertFalse(approvals.isApproved(offerId, keccak256("other"), NITRO));
        assertFalse(approvals.isApproved(offerId + 1, MEASUREMENT, NITRO), "approvals are per offer");
        assertFalse(approvals.isApproved(offerId, MEASUREMENT, 0));
    }

    function test_approveAgain_replacesTheTypes() public {
        vm.startPrank(provider);
        approvals.approve(offerId, MEASUREMENT, NITRO | SANDBOX, BUNDLE);
        approvals.approve(offerId, MEASUREMENT, NITRO, BUNDLE);
        vm.stopPrank();
        assertEq(approvals.approvedTeeTypes(offerId, MEASUREMENT), NITRO);
    }

    function test_approve_revertsForOthersAndUnknownOffers() public {
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.NotApprovingProvider.selector, offerId, consumer));
        vm.prank(consumer);
        approvals.approve(offerId, MEASUREMENT, SANDBOX, BUNDLE);
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.NotApprovingProvider.selector, 99, provider));
        vm.prank(provider);
        approvals.approve(99, MEASUREMENT, SANDBOX, BUNDLE);
    }

    function test_approve_revertsOnBadMaskOrZeroMeasurement() public {
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.InvalidTeeTypes.selector, 0));
        approvals.approve(offerId, MEASUREMENT, 0, BUNDLE);
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.InvalidTeeTypes.selector, 32));
        approvals.approve(offerId, MEASUREMENT, 32, BUNDLE);
        vm.expectRevert(IAlgorithmApprovals.ZeroMeasurement.selector);
        approvals.approve(offerId, bytes32(0), SANDBOX, BUNDLE);
        vm.stopPrank();
    }

    function test_revoke_removesTheApproval() public {
        vm.startPrank(provider);
        approvals.approve(offerId, MEASUREMENT, SANDBOX, BUNDLE);
        vm.expectEmit(address(approvals));
        emit IAlgorithmApprovals.AlgorithmRevoked(offerId, MEASUREMENT);
        approvals.revoke(offerId, MEASUREMENT);
        vm.stopPrank();
        assertFalse(approvals.isApproved(offerId, MEASUREMENT, SANDBOX));
    }

    function test_revoke_revertsWhenNotApprovedOrNotProvider() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.AlgorithmNotApproved.selector, offerId, MEASUREMENT));
        approvals.revoke(offerId, MEASUREMENT);
        vm.prank(provider);
        approvals.approve(offerId, MEASUREMENT, SANDBOX, BUNDLE);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(IAlgorithmApprovals.NotApprovingProvider.selector, offerId, consumer));
        approvals.revoke(offerId, MEASUREMENT);
    }

    /// Any valid mask is stored as given and answers exactly its own bits.
    function testFuzz_approve_answersExactlyItsBits(uint8 mask, uint8 probe) public {
        mask = uint8(bound(mask, 1, 31));
        vm.prank(provider);
        approvals.approve(offerId, MEASUREMENT, mask, BUNDLE);
        uint8 bit = uint8(1 << bound(probe, 0, 4));
        assertEq(approvals.isApproved(offerId, MEASUREMENT, bit), mask & bit != 0);
    }
}
