// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {IDatasetRegistry} from "../src/IDatasetRegistry.sol";
import {IRedlakeErrors} from "../src/IRedlakeErrors.sol";

contract DatasetRegistryTest is Test {
    DatasetRegistry internal registry;
    address internal operator = makeAddr("operator");
    uint256 internal providerKey = 0xA11CE;
    address internal provider;
    bytes32 internal ID; // bound to the provider (setUp)
    bytes32 internal constant META = keccak256("m");
    bytes32 internal constant CONTENT = keccak256("c");

    function setUp() public {
        registry = new DatasetRegistry(address(this), operator);
        provider = vm.addr(providerKey);
        ID = _idOf(provider, bytes16(keccak256("d")));
    }

    function _idOf(address who, bytes16 local) internal pure returns (bytes32) {
        return bytes32(bytes16(bytes20(who))) | bytes32(uint256(uint128(local)));
    }

    function _sign(uint256 key, bytes32 id, uint8 action, bytes32 meta, bytes32 content, uint256 nonce, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes32 typehash = keccak256(
            "DatasetChange(bytes32 datasetId,uint8 action,bytes32 metadataHash,bytes32 contentHash,uint256 nonce,uint256 deadline)"
        );
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                registry.domainSeparator(),
                keccak256(abi.encode(typehash, id, action, meta, content, nonce, deadline))
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function test_register_recordsProviderAndHashes() public {
        vm.expectEmit(address(registry));
        emit IDatasetRegistry.DatasetRegistered(ID, provider, META, CONTENT);
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        IDatasetRegistry.Dataset memory d = registry.getDataset(ID);
        assertEq(d.provider, provider);
        assertTrue(d.active);
        assertEq(d.contentHash, CONTENT);
        assertEq(registry.activeProvider(ID), provider);
    }

    function test_register_revertsWhenExists() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.DatasetExists.selector, ID));
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
    }

    function test_register_revertsOnZeroHash() public {
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.ZeroHash.selector, ID));
        vm.prank(provider);
        registry.register(ID, META, bytes32(0));
    }

    function test_register_revertsOnFrontRun() public {
        // Someone who saw the provider's registration in the mempool tries to take its id first.
        address attacker = makeAddr("attacker");
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, ID, attacker));
        registry.register(ID, META, CONTENT);
        // ... and the provider's own relayed registration still lands.
        bytes memory sig = _sign(providerKey, ID, 0, META, CONTENT, 0, block.timestamp);
        vm.prank(operator);
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp, sig);
        assertEq(registry.activeProvider(ID), provider);
    }

    function test_registerFor_revertsOnIdBoundToAnotherProvider() public {
        // The attacker signs for the provider's id with their own key; the operator relays it.
        uint256 attackerKey = 0xBAD;
        address attacker = vm.addr(attackerKey);
        bytes memory sig = _sign(attackerKey, ID, 0, META, CONTENT, 0, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, ID, attacker));
        registry.registerFor(ID, attacker, META, CONTENT, block.timestamp, sig);
        assertEq(registry.nonces(ID), 0); // nothing consumed
    }

    function test_isBoundTo_comparesTheAddressPrefix() public {
        assertTrue(registry.isBoundTo(ID, provider));
        assertFalse(registry.isBoundTo(ID, makeAddr("other")));
        assertFalse(registry.isBoundTo(keccak256("d"), provider));
    }

    function testFuzz_register_revertsUnlessBound(address caller, bytes32 id) public {
        vm.assume(bytes16(id) != bytes16(bytes20(caller)));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, id, caller));
        registry.register(id, META, CONTENT);
    }

    function testFuzz_register_acceptsAnyBoundId(address caller, bytes16 local) public {
        vm.assume(caller != address(0));
        bytes32 id = _idOf(caller, local);
        vm.prank(caller);
        registry.register(id, META, CONTENT);
        assertEq(registry.activeProvider(id), caller);
        assertEq(uint128(uint256(id)), uint128(local)); // the local part (the platform's UUID) survives
    }

    function testFuzz_register_frontRunOfAnotherProvidersIdReverts(address attacker, bytes16 local) public {
        vm.assume(bytes16(bytes20(attacker)) != bytes16(bytes20(provider)));
        bytes32 id = _idOf(provider, local);
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, id, attacker));
        registry.register(id, META, CONTENT);
        vm.prank(provider);
        registry.register(id, META, CONTENT);
        assertEq(registry.activeProvider(id), provider);
    }

    function test_registerFor_acceptsProviderSignature() public {
        bytes memory sig = _sign(providerKey, ID, 0, META, CONTENT, 0, block.timestamp + 1);
        vm.prank(operator);
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp + 1, sig);
        assertEq(registry.activeProvider(ID), provider);
        assertEq(registry.nonces(ID), 1);
    }

    function test_registerFor_revertsOnReplay() public {
        bytes memory sig = _sign(providerKey, ID, 0, META, CONTENT, 0, block.timestamp + 1);
        vm.startPrank(operator);
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp + 1, sig);
        // The dataset's nonce moved on: the replayed signature recovers some other address.
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp + 1, sig);
        vm.stopPrank();
    }

    function test_updateFor_revertsOnReplay() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        bytes memory sig = _sign(providerKey, ID, 1, META, keccak256("c2"), 0, block.timestamp);
        vm.startPrank(operator);
        registry.updateFor(ID, META, keccak256("c2"), block.timestamp, sig);
        vm.expectRevert(); // the dataset's nonce moved on: the old signature recovers another address
        registry.updateFor(ID, META, keccak256("c2"), block.timestamp, sig);
        vm.stopPrank();
    }

    function test_registerFor_revertsOnWrongSigner() public {
        bytes memory sig = _sign(0xBAD, ID, 0, META, CONTENT, 0, block.timestamp + 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(0xBAD), provider));
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp + 1, sig);
    }

    function test_registerFor_revertsWhenExpired() public {
        bytes memory sig = _sign(providerKey, ID, 0, META, CONTENT, 0, block.timestamp);
        vm.warp(block.timestamp + 10);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.SignatureExpired.selector, block.timestamp - 10, block.timestamp));
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp - 10, sig);
    }

    function test_registerFor_revertsForNonOperator() public {
        vm.expectRevert();
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp, "");
    }

    function test_update_changesHashes() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        registry.update(ID, keccak256("m2"), keccak256("c2"));
        vm.stopPrank();
        assertEq(registry.getDataset(ID).metadataHash, keccak256("m2"));
    }

    function test_update_revertsForOthers() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, ID, address(this)));
        registry.update(ID, META, CONTENT);
    }

    function test_updateFor_acceptsProviderSignature() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        bytes memory sig = _sign(providerKey, ID, 1, META, keccak256("c2"), 0, block.timestamp);
        vm.prank(operator);
        registry.updateFor(ID, META, keccak256("c2"), block.timestamp, sig);
        assertEq(registry.getDataset(ID).contentHash, keccak256("c2"));
    }

    function test_retire_deactivates() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        registry.retire(ID);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, ID));
        registry.update(ID, META, CONTENT);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, ID));
        registry.activeProvider(ID);
    }

    function test_retireFor_acceptsProviderSignature() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        bytes memory sig = _sign(providerKey, ID, 2, bytes32(0), bytes32(0), 0, block.timestamp);
        vm.prank(operator);
        registry.retireFor(ID, block.timestamp, sig);
        assertFalse(registry.getDataset(ID).active);
    }

    function test_activeProvider_revertsWhenUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.DatasetUnknown.selector, ID));
        registry.activeProvider(ID);
    }

    function testFuzz_registerFor_rejectsAnyOtherKey(uint256 key) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        vm.assume(key != providerKey);
        bytes memory sig = _sign(key, ID, 0, META, CONTENT, 0, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(key), provider));
        registry.registerFor(ID, provider, META, CONTENT, block.timestamp, sig);
    }

    function testFuzz_registerFor_acceptsAnyProviderKey(uint256 key, bytes16 local) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        address signer = vm.addr(key);
        bytes32 id = _idOf(signer, local);
        bytes memory sig = _sign(key, id, 0, META, CONTENT, 0, block.timestamp);
        vm.prank(operator);
        registry.registerFor(id, signer, META, CONTENT, block.timestamp, sig);
        assertEq(registry.activeProvider(id), signer);
    }

    function test_update_emitsDatasetUpdated() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectEmit(address(registry));
        emit IDatasetRegistry.DatasetUpdated(ID, keccak256("m2"), keccak256("c2"));
        registry.update(ID, keccak256("m2"), keccak256("c2"));
        vm.stopPrank();
    }

    function test_update_revertsOnZeroHash() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.ZeroHash.selector, ID));
        registry.update(ID, bytes32(0), CONTENT);
        vm.stopPrank();
    }

    function test_update_revertsWhenUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.DatasetUnknown.selector, ID));
        registry.update(ID, META, CONTENT);
    }

    function test_updateFor_revertsWhenUnknown() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.DatasetUnknown.selector, ID));
        registry.updateFor(ID, META, CONTENT, block.timestamp, "");
    }

    function test_updateFor_revertsForNonOperator() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectRevert(
            abi.encodeWithSelector(bytes4(keccak256("AccessControlUnauthorizedAccount(address,bytes32)")), address(this), registry.OPERATOR_ROLE())
        );
        registry.updateFor(ID, META, CONTENT, block.timestamp, "");
    }

    function test_retire_emitsDatasetRetired() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectEmit(address(registry));
        emit IDatasetRegistry.DatasetRetired(ID);
        registry.retire(ID);
        vm.stopPrank();
    }

    function test_retire_revertsTwice() public {
        vm.startPrank(provider);
        registry.register(ID, META, CONTENT);
        registry.retire(ID);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.DatasetInactive.selector, ID));
        registry.retire(ID);
        vm.stopPrank();
    }

    function test_retire_revertsForOthers() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.NotDatasetProvider.selector, ID, address(this)));
        registry.retire(ID);
    }

    function test_retireFor_revertsWhenUnknown() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IDatasetRegistry.DatasetUnknown.selector, ID));
        registry.retireFor(ID, block.timestamp, "");
    }

    function test_retireFor_revertsOnWrongSigner() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        bytes memory sig = _sign(0xBAD, ID, 2, bytes32(0), bytes32(0), 0, block.timestamp);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(IRedlakeErrors.InvalidSignature.selector, vm.addr(0xBAD), provider));
        registry.retireFor(ID, block.timestamp, sig);
    }

    function test_retireFor_revertsOnSignatureForAnotherAction() public {
        vm.prank(provider);
        registry.register(ID, META, CONTENT);
        // An update signature (action 1) cannot retire the dataset.
        bytes memory sig = _sign(providerKey, ID, 1, bytes32(0), bytes32(0), 0, block.timestamp);
        vm.prank(operator);
        vm.expectPartialRevert(IRedlakeErrors.InvalidSignature.selector);
        registry.retireFor(ID, block.timestamp, sig);
    }
}
