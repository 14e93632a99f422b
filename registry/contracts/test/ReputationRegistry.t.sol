// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {IdentityRegistry} from "../src/IdentityRegistry.sol";
import {ReputationRegistry} from "../src/ReputationRegistry.sol";

contract ReputationRegistryTest is TestBase {
    IdentityRegistry internal identity;
    ReputationRegistry internal reputation;

    /// bob's agent.
    uint256 internal agent;

    bytes32 internal constant DOC = keccak256("feedback file");

    function setUp() public {
        vm.warp(START);
        identity = new IdentityRegistry();
        reputation = new ReputationRegistry(identity);
        vm.prank(bob);
        agent = identity.register("ipfs://bob");
    }

    // ------------------------------------------------------------------ helpers

    function give(address client, int128 value, uint8 decimals, string memory tag1) internal {
        give(client, value, decimals, tag1, "");
    }

    function give(
        address client,
        int128 value,
        uint8 decimals,
        string memory tag1,
        string memory tag2
    ) internal {
        vm.prank(client);
        reputation.giveFeedback(agent, value, decimals, tag1, tag2, "", "", bytes32(0));
    }

    function only(address a) internal pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = a;
    }

    function both(address a, address b) internal pure returns (address[] memory list) {
        list = new address[](2);
        list[0] = a;
        list[1] = b;
    }

    function badIndex(uint64 index, uint64 last) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ReputationRegistry.InvalidFeedbackIndex.selector, index, last);
    }

    // ------------------------------------------------------------------ writing

    function test_constructor() public {
        vm.assertEq(reputation.getIdentityRegistry(), address(identity), "identity");
        vm.expectRevert(ReputationRegistry.InvalidIdentityRegistry.selector);
        new ReputationRegistry(IdentityRegistry(address(0)));
    }

    function test_giveFeedback() public {
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.NewFeedback(
            agent,
            alice,
            1,
            87,
            0,
            "starred",
            "starred",
            "weather",
            "http://bob.example/a2a",
            "ipfs://feedback",
            DOC
        );
        vm.prank(alice);
        reputation.giveFeedback(
            agent, 87, 0, "starred", "weather", "http://bob.example/a2a", "ipfs://feedback", DOC
        );
        (int128 value, uint8 decimals, string memory tag1, string memory tag2, bool revoked) =
            reputation.readFeedback(agent, alice, 1);
        vm.assertEq(int256(value), 87, "value");
        vm.assertEq(uint256(decimals), 0, "decimals");
        vm.assertEq(tag1, "starred", "tag1");
        vm.assertEq(tag2, "weather", "tag2");
        vm.assertFalse(revoked, "not revoked");
        vm.assertEq(reputation.getLastIndex(agent, alice), 1, "last index");

        give(alice, -32, 1, "tradingYield");
        give(carol, 9977, 2, "uptime");
        vm.assertEq(reputation.getLastIndex(agent, alice), 2, "alice's second");
        vm.assertEq(reputation.getClients(agent), both(alice, carol), "clients once each");
    }

    function test_giveFeedback_reverts() public {
        vm.startPrank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ReputationRegistry.InvalidValueDecimals.selector, uint8(19))
        );
        reputation.giveFeedback(agent, 1, 19, "", "", "", "", bytes32(0));
        int128 max = 1e38;
        vm.expectRevert(
            abi.encodeWithSelector(ReputationRegistry.ValueOutOfRange.selector, max + 1)
        );
        reputation.giveFeedback(agent, max + 1, 0, "", "", "", "", bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(ReputationRegistry.ValueOutOfRange.selector, -max - 1)
        );
        reputation.giveFeedback(agent, -max - 1, 0, "", "", "", "", bytes32(0));
        // The bounds themselves are fine.
        reputation.giveFeedback(agent, max, 18, "", "", "", "", bytes32(0));
        reputation.giveFeedback(agent, -max, 0, "", "", "", "", bytes32(0));
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721NonexistentToken.selector, uint256(5))
        );
        reputation.giveFeedback(5, 1, 0, "", "", "", "", bytes32(0));
        vm.stopPrank();
    }

    /// The agent's owner, its approved account and its operators may not rate it.
    function test_giveFeedback_refusesSelfFeedback() public {
        bytes memory self =
            abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, bob, agent);
        vm.expectRevert(self);
        give(bob, 100, 0, "");

        vm.prank(bob);
        identity.approve(carol, agent);
        vm.expectRevert(
            abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, carol, agent)
        );
        give(carol, 100, 0, "");

        vm.prank(bob);
        identity.setApprovalForAll(mallory, true);
        vm.expectRevert(
            abi.encodeWithSelector(ReputationRegistry.SelfFeedback.selector, mallory, agent)
        );
        give(mallory, 100, 0, "");
    }

    function test_revokeFeedback() public {
        give(alice, 10, 0, "starred");
        give(alice, 20, 0, "starred");
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.FeedbackRevoked(agent, alice, 2);
        vm.prank(alice);
        reputation.revokeFeedback(agent, 2);
        (,,,, bool revoked) = reputation.readFeedback(agent, alice, 2);
        vm.assertTrue(revoked, "revoked");

        vm.startPrank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(
                ReputationRegistry.FeedbackAlreadyRevoked.selector, agent, alice, uint64(2)
            )
        );
        reputation.revokeFeedback(agent, 2);
        vm.expectRevert(badIndex(0, 2));
        reputation.revokeFeedback(agent, 0);
        vm.expectRevert(badIndex(3, 2));
        reputation.revokeFeedback(agent, 3);
        vm.stopPrank();
        // Only the client's own entries: carol has none.
        vm.expectRevert(badIndex(1, 0));
        vm.prank(carol);
        reputation.revokeFeedback(agent, 1);
    }

    function test_appendResponse() public {
        give(alice, 10, 0, "starred");
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.ResponseAppended(agent, alice, 1, bob, "ipfs://refund", DOC);
        vm.prank(bob);
        reputation.appendResponse(agent, alice, 1, "ipfs://refund", DOC);
        vm.prank(bob);
        reputation.appendResponse(agent, alice, 1, "ipfs://refund-2", bytes32(0));
        vm.prank(carol);
        reputation.appendResponse(agent, alice, 1, "ipfs://spam", bytes32(0));

        vm.assertEq(reputation.getResponseCount(agent, alice, 1, new address[](0)), 3, "all");
        vm.assertEq(reputation.getResponseCount(agent, alice, 1, only(bob)), 2, "bob's");

        vm.expectRevert(ReputationRegistry.EmptyResponseURI.selector);
        reputation.appendResponse(agent, alice, 1, "", bytes32(0));
        vm.expectRevert(badIndex(2, 1));
        reputation.appendResponse(agent, alice, 2, "ipfs://x", bytes32(0));
        vm.expectRevert(badIndex(0, 1));
        reputation.appendResponse(agent, alice, 0, "ipfs://x", bytes32(0));
    }

    function test_getResponseCount_scopes() public {
        give(alice, 1, 0, "");
        give(alice, 2, 0, "");
        give(carol, 3, 0, "");
        vm.prank(bob);
        reputation.appendResponse(agent, alice, 1, "r", bytes32(0));
        vm.prank(bob);
        reputation.appendResponse(agent, alice, 2, "r", bytes32(0));
        vm.prank(mallory);
        reputation.appendResponse(agent, carol, 1, "r", bytes32(0));
        address[] memory anyone = new address[](0);

        vm.assertEq(reputation.getResponseCount(agent, address(0), 0, anyone), 3, "agent");
        vm.assertEq(reputation.getResponseCount(agent, address(0), 0, only(bob)), 2, "by bob");
        vm.assertEq(reputation.getResponseCount(agent, alice, 0, anyone), 2, "alice's");
        vm.assertEq(reputation.getResponseCount(agent, carol, 0, only(bob)), 0, "none by bob");
        vm.assertEq(reputation.getResponseCount(agent, carol, 1, anyone), 1, "one entry");
        vm.assertEq(reputation.getResponseCount(agent, carol, 9, anyone), 0, "no such entry");
    }

    function test_readFeedback_revertsOnBadIndex() public {
        vm.expectRevert(badIndex(1, 0));
        reputation.readFeedback(agent, alice, 1);
        give(alice, 1, 0, "");
        vm.expectRevert(badIndex(0, 1));
        reputation.readFeedback(agent, alice, 0);
    }

    // ------------------------------------------------------------------ summaries

    function test_getSummary() public {
        give(alice, 80, 0, "starred", "weather");
        give(alice, 100, 0, "starred", "travel");
        give(carol, 60, 0, "starred", "weather");
        give(carol, 9977, 2, "uptime", "");
        give(mallory, 0, 0, "starred", "weather");

        (uint64 count, int128 value, uint8 decimals) =
            reputation.getSummary(agent, both(alice, carol), "starred", "");
        vm.assertEq(count, 3, "starred by alice and carol");
        vm.assertEq(int256(value), 80, "mean of 80, 100, 60");
        vm.assertEq(uint256(decimals), 0, "decimals");

        (count, value,) = reputation.getSummary(agent, both(alice, carol), "starred", "weather");
        vm.assertEq(count, 2, "weather only");
        vm.assertEq(int256(value), 70, "mean of 80 and 60");

        (count, value,) = reputation.getSummary(agent, both(alice, carol), "", "weather");
        vm.assertEq(count, 2, "tag2 alone");

        (count, value, decimals) = reputation.getSummary(agent, only(carol), "uptime", "");
        vm.assertEq(count, 1, "uptime");
        vm.assertEq(int256(value), 9977, "value");
        vm.assertEq(uint256(decimals), 2, "kept decimals");

        // Revoked entries do not count.
        vm.prank(alice);
        reputation.revokeFeedback(agent, 2);
        (count, value,) = reputation.getSummary(agent, only(alice), "", "");
        vm.assertEq(count, 1, "one left");
        vm.assertEq(int256(value), 80, "value");

        (count, value, decimals) = reputation.getSummary(agent, only(bob), "", "");
        vm.assertEq(count + uint256(int256(value)) + decimals, 0, "nothing from bob");

        vm.expectRevert(ReputationRegistry.ClientAddressesRequired.selector);
        reputation.getSummary(agent, new address[](0), "", "");
    }

    /// Values are scaled to 18 decimals, averaged, and given in the most used decimals.
    function test_getSummary_mixedDecimals() public {
        give(alice, 15, 1, ""); // 1.5
        give(alice, 25, 1, ""); // 2.5
        give(alice, 3, 0, ""); // 3
        (uint64 count, int128 value, uint8 decimals) =
            reputation.getSummary(agent, only(alice), "", "");
        vm.assertEq(count, 3, "count");
        vm.assertEq(uint256(decimals), 1, "most used decimals");
        vm.assertEq(int256(value), 23, "mean 2.333 as 2.3");
    }

    function test_getSummary_saturates() public {
        int128 max = 1e38;
        give(alice, max, 0, "");
        give(alice, 1, 18, "");
        give(alice, 1, 18, "");
        (, int128 value, uint8 decimals) = reputation.getSummary(agent, only(alice), "", "");
        vm.assertEq(uint256(decimals), 18, "decimals");
        vm.assertEq(int256(value), int256(type(int128).max), "saturated high");

        give(carol, -max, 0, "");
        give(carol, 1, 18, "");
        give(carol, 1, 18, "");
        (, value,) = reputation.getSummary(agent, only(carol), "", "");
        vm.assertEq(int256(value), int256(type(int128).min), "saturated low");
    }

    function test_readAllFeedback() public {
        give(alice, 80, 0, "starred", "weather");
        give(carol, 9977, 2, "uptime", "");
        give(alice, 100, 0, "starred", "travel");
        vm.prank(alice);
        reputation.revokeFeedback(agent, 1);

        (
            address[] memory clients,
            uint64[] memory indexes,
            int128[] memory values,
            uint8[] memory decimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revoked
        ) = reputation.readAllFeedback(agent, new address[](0), "", "", true);
        vm.assertEq(clients.length, 3, "all, revoked included");
        vm.assertEq(clients[0], alice, "alice first");
        vm.assertEq(indexes[1], 2, "alice's second");
        vm.assertEq(clients[2], carol, "then carol");
        vm.assertEq(int256(values[2]), 9977, "value");
        vm.assertEq(uint256(decimals[2]), 2, "decimals");
        vm.assertEq(tag1s[0], "starred", "tag1");
        vm.assertEq(tag2s[1], "travel", "tag2");
        vm.assertTrue(revoked[0], "revoked flag");
        vm.assertFalse(revoked[1], "not revoked");

        (clients, indexes,,,,,) = reputation.readAllFeedback(agent, only(alice), "", "", false);
        vm.assertEq(clients.length, 1, "revoked left out");
        vm.assertEq(indexes[0], 2, "the travel entry");

        (clients,,,,,,) =
            reputation.readAllFeedback(agent, both(alice, carol), "starred", "weather", true);
        vm.assertEq(clients.length, 1, "both tags");
        (clients,,,,,,) = reputation.readAllFeedback(agent, only(mallory), "", "", true);
        vm.assertEq(clients.length, 0, "none");
    }
}
