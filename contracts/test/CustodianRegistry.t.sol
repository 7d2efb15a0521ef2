// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Test} from "forge-std/Test.sol";

import {CustodianRegistry} from "../src/CustodianRegistry.sol";
import {ICustodianRegistry} from "../src/ICustodianRegistry.sol";

contract CustodianRegistryTest is Test {
    CustodianRegistry internal registry;
    address internal operator = makeAddr("operator");
    address internal first = makeAddr("custodian-1");
    address internal second = makeAddr("custodian-2");

    function setUp() public {
        registry = new CustodianRegistry(operator);
        vm.roll(100);
    }

    function test_rotate_registersTheFirstCustodianFromThisBlock() public {
        vm.expectEmit(address(registry));
        emit ICustodianRegistry.CustodianRotated(address(0), first, 100);
        vm.prank(operator);
        registry.rotate(first);
        assertEq(registry.current(), first);
        assertEq(registry.custodianAt(100), first);
        assertEq(registry.custodianAt(10_000), first);
        assertEq(registry.rotationCount(), 1);
        ICustodianRegistry.Rotation memory entry = registry.rotationAt(0);
        assertEq(entry.custodian, first);
        assertEq(entry.validFrom, 100);
    }

    function test_rotate_keepsTheOldKeyValidAtItsBlocks() public {
        vm.prank(operator);
        registry.rotate(first);
        vm.roll(150);
        vm.expectEmit(address(registry));
        emit ICustodianRegistry.CustodianRotated(first, second, 150);
        vm.prank(operator);
        registry.rotate(second);
        assertEq(registry.current(), second);
        assertEq(registry.custodianAt(100), first, "a receipt of block 100 was signed by the first key");
        assertEq(registry.custodianAt(149), first);
        assertEq(registry.custodianAt(150), second);
        assertEq(registry.custodianAt(151), second);
    }

    function test_rotate_laterRotationInTheSameBlockWins() public {
        vm.startPrank(operator);
        registry.rotate(first);
        registry.rotate(second);
        vm.stopPrank();
        assertEq(registry.custodianAt(100), second);
        assertEq(registry.rotationCount(), 2);
    }

    function test_rotate_revertsForAnyoneButTheOwner() public {
        vm.prank(first);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, first));
        registry.rotate(first);
    }

    function test_rotate_revertsOnZeroAndUnchanged() public {
        vm.startPrank(operator);
        vm.expectRevert(ICustodianRegistry.ZeroCustodian.selector);
        registry.rotate(address(0));
        registry.rotate(first);
        vm.expectRevert(abi.encodeWithSelector(ICustodianRegistry.CustodianUnchanged.selector, first));
        registry.rotate(first);
        vm.stopPrank();
    }

    function test_custodianAt_revertsBeforeTheFirstRegistration() public {
        vm.expectRevert(abi.encodeWithSelector(ICustodianRegistry.NoCustodianAt.selector, 100));
        registry.custodianAt(100);
        vm.prank(operator);
        registry.rotate(first);
        vm.expectRevert(abi.encodeWithSelector(ICustodianRegistry.NoCustodianAt.selector, 99));
        registry.custodianAt(99);
        assertEq(registry.current(), first);
    }

    function test_ownership_movesInTwoSteps() public {
        address next = makeAddr("next-operator");
        vm.prank(operator);
        registry.transferOwnership(next);
        vm.prank(next);
        registry.acceptOwnership();
        vm.prank(next);
        registry.rotate(first);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, operator));
        registry.rotate(second);
    }

    /// Rotations at increasing blocks: every block answers the address whose interval holds it.
    function testFuzz_custodianAt_answersTheKeyOfItsInterval(uint8 count, uint256 seed, uint256 probe) public {
        count = uint8(bound(count, 1, 20));
        uint256[] memory starts = new uint256[](count);
        address[] memory keys = new address[](count);
        uint256 at = 100;
        for (uint256 i = 0; i < count; i++) {
            at += bound(uint256(keccak256(abi.encode(seed, i))), 1, 1_000);
            vm.roll(at);
            starts[i] = at;
            keys[i] = address(uint160(uint256(keccak256(abi.encode("key", seed, i))) | 1));
            vm.prank(operator);
            registry.rotate(keys[i]);
        }
        probe = bound(probe, starts[0], at + 10_000);
        address expected;
        for (uint256 i = 0; i < count; i++) {
            if (starts[i] <= probe) expected = keys[i];
        }
        assertEq(registry.custodianAt(probe), expected);
        assertEq(registry.current(), keys[count - 1]);
        assertEq(registry.rotationCount(), count);
    }

    function testFuzz_rotate_onlyOwner(address caller, address custodian) public {
        vm.assume(caller != operator && custodian != address(0));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, caller));
        registry.rotate(custodian);
    }
}
