// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console} from "forge-std/console.sol";

import {Fixture} from "./Fixture.sol";

/// forge's `cool` cheatcode (newer than this forge-std's Vm interface): marks a contract's
/// storage cold again, so each measured call pays first-access costs as its own transaction would.
interface CoolingVm {
    function cool(address target) external;
}

/// Gas per job, measured with gasleft() around the calls (execution gas: the 21,000 intrinsic
/// gas and calldata of each transaction come on top; bench/gas.py measures those on anvil).
/// Prints `GAS <name> <value>` lines that the benchmark parses.
contract GasTest is Fixture {
    uint256 internal constant BATCH = 100;

    function test_gas_recordUsageAndSettle() public {
        uint256 agreementId = _accept(MAX_CALLS);
        _record(agreementId, 0); // the agreement's bitmap words exist, as in a busy space
        bytes32 first = usage.jobIdOf(agreementId, 0);
        vm.prank(operator);
        usage.settle(first, bytes32(0), bytes32(0));

        bytes32 jobId = usage.jobIdOf(agreementId, 1);
        bytes memory sig = _sign(consumerKey, agreementId, jobId, RESEARCH, MEAN, 1e5, block.timestamp);
        _cool();
        vm.prank(operator);
        uint256 before = gasleft();
        usage.recordUsage(agreementId, jobId, RESEARCH, MEAN, 1e5, block.timestamp, sig);
        uint256 recordGas = before - gasleft();
        _cool();
        vm.prank(operator);
        before = gasleft();
        usage.settle(jobId, keccak256("result"), keccak256("attestation"));
        uint256 settleGas = before - gasleft();
        console.log("GAS recordUsage", recordGas);
        console.log("GAS settle", settleGas);
        console.log("GAS recordUsage+settle", recordGas + settleGas);
    }

    function test_gas_batchOf100() public {
        uint256 agreementId = _accept(MAX_CALLS);
        bytes32[] memory jobs = new bytes32[](BATCH);
        bytes[] memory sigs = new bytes[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            jobs[i] = usage.jobIdOf(agreementId, i);
            sigs[i] = _sign(consumerKey, agreementId, jobs[i], RESEARCH, MEAN, 1e4, block.timestamp);
        }
        uint256 recordTotal;
        for (uint256 i; i < BATCH; ++i) {
            _cool();
            vm.prank(operator);
            uint256 before = gasleft();
            usage.recordUsage(agreementId, jobs[i], RESEARCH, MEAN, 1e4, block.timestamp, sigs[i]);
            recordTotal += before - gasleft();
        }
        _cool();
        vm.prank(operator);
        uint256 start = gasleft();
        usage.settleBatch(keccak256("root"), jobs);
        uint256 batchGas = start - gasleft();
        console.log("GAS settleBatch(100)", batchGas);
        console.log("GAS recordUsage avg over 100", recordTotal / BATCH);
        console.log("GAS amortized per job (record + batch/100)", (recordTotal + batchGas) / BATCH);
    }

    function _cool() internal {
        CoolingVm(address(vm)).cool(address(usage));
        CoolingVm(address(vm)).cool(address(registry));
    }
}
