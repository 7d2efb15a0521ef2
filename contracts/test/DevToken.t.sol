// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Test} from "forge-std/Test.sol";

import {DevToken} from "../src/DevToken.sol";

contract DevTokenTest is Test {
    DevToken internal token;
    address internal admin = makeAddr("admin");

    function setUp() public {
        token = new DevToken(admin);
    }

    function test_constructor_namesTheToken() public view {
        assertEq(token.name(), "Redlake Dev Euro");
        assertEq(token.symbol(), "rEUR");
        assertEq(token.decimals(), 18);
        assertTrue(token.hasRole(token.MINTER_ROLE(), admin));
    }

    function test_mint_byMinter() public {
        vm.prank(admin);
        token.mint(address(this), 5e18);
        assertEq(token.balanceOf(address(this)), 5e18);
        assertEq(token.totalSupply(), 5e18);
    }

    function test_mint_revertsForOthers() public {
        bytes32 role = token.MINTER_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, address(this), role));
        token.mint(address(this), 1);
    }

    function testFuzz_mint_addsExactly(address to, uint128 amount) public {
        vm.assume(to != address(0));
        vm.prank(admin);
        token.mint(to, amount);
        assertEq(token.balanceOf(to), amount);
    }
}
