// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Vm} from "./utils/Vm.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {AgentRegistry} from "../src/AgentRegistry.sol";

contract AgentRegistryTest is TestBase {
    Stablecoin internal token;
    AgentRegistry internal registry;

    bytes32 internal constant WEATHER = "weather.forecast";
    bytes32 internal constant TRAVEL = "travel.plan";
    bytes32 internal constant TRANSLATE = "translate";
    // Stand-ins for SHA-256 fingerprints of GGUF files. keccak256 constants fold at compile
    // time; sha256 would be a precompile call that swallows vm.prank/vm.expectRevert.
    bytes32 internal constant MODEL_A = keccak256("smollm2-135m-instruct.gguf");
    bytes32 internal constant MODEL_B = keccak256("other-model.gguf");
    uint64 internal constant UNBONDING = 1 days;
    uint64 internal constant WINDOW = 2 days;
    uint256 internal constant MIN_STAKE = 10 * UNIT;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        registry = new AgentRegistry(token, governor, treasury, UNBONDING, WINDOW, 0);
        address[4] memory people = [alice, bob, carol, mallory];
        for (uint256 i; i < people.length; ++i) {
            token.transfer(people[i], 1_000 * UNIT);
            vm.prank(people[i]);
            token.approve(address(registry), type(uint256).max);
        }
    }

    // ------------------------------------------------------------------ helpers

    function svc(bytes32 skill, uint256 price)
        internal
        pure
        returns (AgentRegistry.Service memory)
    {
        return AgentRegistry.Service(skill, price, "request");
    }

    function one(bytes32 skill, uint256 price)
        internal
        pure
        returns (AgentRegistry.Service[] memory list)
    {
        list = new AgentRegistry.Service[](1);
        list[0] = svc(skill, price);
    }

    function two(bytes32 a, bytes32 b) internal pure returns (AgentRegistry.Service[] memory list) {
        list = new AgentRegistry.Service[](2);
        list[0] = svc(a, 1 * UNIT);
        list[1] = svc(b, 2 * UNIT);
    }

    function registerAs(
        address who,
        bytes32 model,
        AgentRegistry.Service[] memory services,
        uint256 stake
    ) internal {
        vm.prank(who);
        registry.register("ws://127.0.0.1:9000", "ipfs://card", model, services, stake);
    }

    function lookup(bytes32 skill) internal view returns (address[] memory agents) {
        (agents,) = registry.agentsBySkill(skill, 0, 100);
    }

    function list1(address a) internal pure returns (address[] memory l) {
        l = new address[](1);
        l[0] = a;
    }

    function list2(address a, address b) internal pure returns (address[] memory l) {
        l = new address[](2);
        l[0] = a;
        l[1] = b;
    }

    function contains(address[] memory l, address a) internal pure returns (bool) {
        for (uint256 i; i < l.length; ++i) {
            if (l[i] == a) return true;
        }
        return false;
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor() public view {
        vm.assertEq(address(registry.token()), address(token), "token");
        vm.assertEq(registry.governor(), governor, "governor");
        vm.assertEq(registry.treasury(), treasury, "treasury");
        vm.assertEq(uint256(registry.unbondingPeriod()), UNBONDING, "unbonding");
        vm.assertEq(uint256(registry.withdrawalWindow()), WINDOW, "window");
        vm.assertEq(registry.minStake(), 0, "no minimum");
    }

    function test_constructor_reverts() public {
        vm.expectRevert(AgentRegistry.InvalidGovernor.selector);
        new AgentRegistry(token, address(0), treasury, 0, WINDOW, 0);
        vm.expectRevert(AgentRegistry.InvalidWithdrawalWindow.selector);
        new AgentRegistry(token, governor, treasury, UNBONDING, 0, 0);
    }

    /// A registry that lists only agents with at least MIN_STAKE bonded; everyone approved it.
    function stakedRegistry() internal returns (AgentRegistry r) {
        r = new AgentRegistry(token, governor, treasury, UNBONDING, WINDOW, MIN_STAKE);
        vm.assertEq(r.minStake(), MIN_STAKE, "minimum");
        address[4] memory people = [alice, bob, carol, mallory];
        for (uint256 i; i < people.length; ++i) {
            vm.prank(people[i]);
            token.approve(address(r), type(uint256).max);
        }
    }

    // ------------------------------------------------------------------ register

    function test_register() public {
        AgentRegistry.Service[] memory services = two(WEATHER, TRAVEL);
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.AgentRegistered(alice, "ws://127.0.0.1:9000", "ipfs://card", MODEL_A);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.ServicesReplaced(alice, services);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeAdded(alice, 100 * UNIT, 100 * UNIT);
        registerAs(alice, MODEL_A, services, 100 * UNIT);

        AgentRegistry.Agent memory a = registry.getAgent(alice);
        vm.assertTrue(a.registered, "registered");
        vm.assertFalse(a.suspended, "not suspended");
        vm.assertEq(a.endpoint, "ws://127.0.0.1:9000", "endpoint");
        vm.assertEq(a.cardURI, "ipfs://card", "card");
        vm.assertEq(a.modelFingerprint, MODEL_A, "model");
        vm.assertEq(a.stake, 100 * UNIT, "stake");
        vm.assertEq(token.balanceOf(address(registry)), 100 * UNIT, "stake held");
        vm.assertEq(token.balanceOf(alice), 900 * UNIT, "stake pulled");

        AgentRegistry.Service[] memory stored = registry.getServices(alice);
        vm.assertEq(stored.length, 2, "services");
        vm.assertEq(stored[1].skill, TRAVEL, "skill");
        vm.assertEq(stored[1].price, 2 * UNIT, "price");
        vm.assertEq(stored[1].unit, "request", "unit");
        (bool offered, uint256 price, string memory unit) = registry.serviceOf(alice, WEATHER);
        vm.assertTrue(offered, "offered");
        vm.assertEq(price, 1 * UNIT, "serviceOf price");
        vm.assertEq(unit, "request", "serviceOf unit");
        (offered, price, unit) = registry.serviceOf(alice, TRANSLATE);
        vm.assertFalse(offered, "not offered");

        vm.assertEq(lookup(WEATHER), list1(alice), "lookup weather");
        vm.assertEq(lookup(TRAVEL), list1(alice), "lookup travel");
        vm.assertEq(lookup(TRANSLATE).length, 0, "lookup translate");
        vm.assertTrue(registry.isActive(alice), "active");
        vm.assertFalse(registry.isActive(bob), "bob not registered");
    }

    function test_register_withoutStakeOrModel() public {
        registerAs(alice, bytes32(0), one(WEATHER, 1), 0);
        vm.assertEq(registry.getAgent(alice).stake, 0, "no stake");
        vm.assertTrue(registry.isActive(alice), "active");
    }

    function test_register_revertsWhenAlreadyRegistered() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.AlreadyRegistered.selector, alice));
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
    }

    function test_register_revertsForEmptyEndpoint() public {
        vm.expectRevert(AgentRegistry.EmptyEndpoint.selector);
        vm.prank(alice);
        registry.register("", "ipfs://card", MODEL_A, one(WEATHER, 1), 0);
    }

    function test_register_revertsForEmptySkill() public {
        vm.expectRevert(AgentRegistry.EmptySkill.selector);
        registerAs(alice, MODEL_A, one(bytes32(0), 1), 0);
    }

    function test_register_revertsForDuplicateSkill() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.DuplicateSkill.selector, WEATHER));
        registerAs(alice, MODEL_A, two(WEATHER, WEATHER), 0);
    }

    function test_register_revertsForTooManyServices() public {
        AgentRegistry.Service[] memory many = new AgentRegistry.Service[](33);
        for (uint256 i; i < many.length; ++i) {
            many[i] = svc(bytes32(i + 1), 1);
        }
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.TooManyServices.selector, 33, 32));
        registerAs(alice, MODEL_A, many, 0);
    }

    function test_register_maxServices() public {
        AgentRegistry.Service[] memory many = new AgentRegistry.Service[](32);
        for (uint256 i; i < many.length; ++i) {
            many[i] = svc(bytes32(i + 1), 1);
        }
        registerAs(alice, MODEL_A, many, 0);
        vm.assertEq(registry.getServices(alice).length, 32, "32 services");
    }

    function test_register_revertsWithoutAllowance() public {
        vm.prank(alice);
        token.approve(address(registry), 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.InsufficientAllowance.selector, alice, address(registry), 0, 5
            )
        );
        registerAs(alice, MODEL_A, one(WEATHER, 1), 5);
    }

    // ------------------------------------------------------------------ update

    function test_updateAgent() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.AgentUpdated(
            alice, "wss://agent.example:443", "https://card.json", MODEL_B
        );
        vm.prank(alice);
        registry.updateAgent("wss://agent.example:443", "https://card.json", MODEL_B);
        AgentRegistry.Agent memory a = registry.getAgent(alice);
        vm.assertEq(a.endpoint, "wss://agent.example:443", "endpoint");
        vm.assertEq(a.cardURI, "https://card.json", "card");
        vm.assertEq(a.modelFingerprint, MODEL_B, "model");
    }

    function test_updateAgent_revertsWhenNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.updateAgent("ws://x", "", MODEL_A);
    }

    function test_updateAgent_revertsForEmptyEndpoint() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectRevert(AgentRegistry.EmptyEndpoint.selector);
        vm.prank(alice);
        registry.updateAgent("", "", MODEL_A);
    }

    // ------------------------------------------------------------------ services

    function test_setServices_replacesListAndIndex() public {
        registerAs(alice, MODEL_A, two(WEATHER, TRAVEL), 0);
        registerAs(bob, MODEL_A, two(TRAVEL, WEATHER), 0);
        AgentRegistry.Service[] memory next = two(TRANSLATE, TRAVEL);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.ServicesReplaced(alice, next);
        vm.prank(alice);
        registry.setServices(next);
        vm.assertEq(lookup(WEATHER), list1(bob), "weather: bob only");
        vm.assertEq(registry.providerCount(TRAVEL), 2, "travel: both");
        vm.assertEq(lookup(TRANSLATE), list1(alice), "translate: alice");
        (, uint256 price,) = registry.serviceOf(alice, TRAVEL);
        vm.assertEq(price, 2 * UNIT, "travel repriced");

        // An empty list unlists the agent everywhere.
        vm.prank(alice);
        registry.setServices(new AgentRegistry.Service[](0));
        vm.assertEq(registry.getServices(alice).length, 0, "no services");
        vm.assertEq(lookup(TRAVEL), list1(bob), "travel: bob only");
        vm.assertEq(registry.providerCount(TRANSLATE), 0, "translate: none");
    }

    function test_setServices_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.setServices(one(WEATHER, 1));

        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.DuplicateSkill.selector, TRAVEL));
        vm.prank(alice);
        registry.setServices(two(TRAVEL, TRAVEL));
        vm.expectRevert(AgentRegistry.EmptySkill.selector);
        vm.prank(alice);
        registry.setServices(one(bytes32(0), 1));
        AgentRegistry.Service[] memory many = new AgentRegistry.Service[](40);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.TooManyServices.selector, 40, 32));
        vm.prank(alice);
        registry.setServices(many);
        // Nothing changed.
        vm.assertEq(lookup(WEATHER), list1(alice), "still listed");
    }

    function test_setService_addsAndReprices() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.ServiceSet(alice, TRAVEL, 7, "trip");
        vm.prank(alice);
        registry.setService(TRAVEL, 7, "trip");
        vm.assertEq(lookup(TRAVEL), list1(alice), "travel listed");

        vm.prank(alice);
        registry.setService(WEATHER, 3, "day");
        (bool offered, uint256 price, string memory unit) = registry.serviceOf(alice, WEATHER);
        vm.assertTrue(offered, "offered");
        vm.assertEq(price, 3, "repriced");
        vm.assertEq(unit, "day", "new unit");
        vm.assertEq(registry.providerCount(WEATHER), 1, "no duplicate listing");
        vm.assertEq(registry.getServices(alice).length, 2, "two services");
    }

    function test_setService_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.setService(WEATHER, 1, "request");

        AgentRegistry.Service[] memory many = new AgentRegistry.Service[](32);
        for (uint256 i; i < many.length; ++i) {
            many[i] = svc(bytes32(i + 1), 1);
        }
        registerAs(alice, MODEL_A, many, 0);
        vm.expectRevert(AgentRegistry.EmptySkill.selector);
        vm.prank(alice);
        registry.setService(bytes32(0), 1, "request");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.TooManyServices.selector, 33, 32));
        vm.prank(alice);
        registry.setService(WEATHER, 1, "request");
        // Repricing an existing one is still fine at the cap.
        vm.prank(alice);
        registry.setService(bytes32(uint256(32)), 5, "request");
    }

    function test_removeService() public {
        AgentRegistry.Service[] memory three = new AgentRegistry.Service[](3);
        three[0] = svc(WEATHER, 1);
        three[1] = svc(TRAVEL, 2);
        three[2] = svc(TRANSLATE, 3);
        registerAs(alice, MODEL_A, three, 0);
        registerAs(bob, MODEL_A, one(WEATHER, 1), 0);
        registerAs(carol, MODEL_A, one(WEATHER, 1), 0);

        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.ServiceRemoved(alice, WEATHER);
        vm.prank(alice);
        registry.removeService(WEATHER); // first of three: the last one moves into its place
        AgentRegistry.Service[] memory left = registry.getServices(alice);
        vm.assertEq(left.length, 2, "two left");
        vm.assertEq(left[0].skill, TRANSLATE, "moved");
        vm.assertEq(left[1].skill, TRAVEL, "kept");
        address[] memory weather = lookup(WEATHER);
        vm.assertEq(weather.length, 2, "weather listings");
        vm.assertTrue(contains(weather, bob) && contains(weather, carol), "bob and carol");

        vm.prank(alice);
        registry.removeService(TRAVEL); // the last one: plain pop
        vm.prank(alice);
        registry.removeService(TRANSLATE);
        vm.assertEq(registry.getServices(alice).length, 0, "none left");
        // Re-adding works after removal (positions were cleared).
        vm.prank(alice);
        registry.setService(TRAVEL, 9, "request");
        vm.assertEq(lookup(TRAVEL), list1(alice), "travel again");
    }

    function test_removeService_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.removeService(WEATHER);
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectRevert(
            abi.encodeWithSelector(AgentRegistry.UnknownService.selector, alice, TRAVEL)
        );
        vm.prank(alice);
        registry.removeService(TRAVEL);
    }

    // ------------------------------------------------------------------ lookup

    function test_agentsBySkill_paginates() public {
        address[] memory agents = new address[](5);
        for (uint256 i; i < agents.length; ++i) {
            agents[i] = vm.addr(1000 + i);
            registerAs(agents[i], MODEL_A, one(WEATHER, i), 0);
        }
        vm.assertEq(registry.providerCount(WEATHER), 5, "count");
        (address[] memory page, uint256 next) = registry.agentsBySkill(WEATHER, 0, 2);
        vm.assertEq(page, list2(agents[0], agents[1]), "page 1");
        vm.assertEq(next, 2, "next 1");
        (page, next) = registry.agentsBySkill(WEATHER, next, 2);
        vm.assertEq(page, list2(agents[2], agents[3]), "page 2");
        vm.assertEq(next, 4, "next 2");
        (page, next) = registry.agentsBySkill(WEATHER, next, 2);
        vm.assertEq(page, list1(agents[4]), "page 3");
        vm.assertEq(next, 0, "done");
        (page, next) = registry.agentsBySkill(WEATHER, 5, 2);
        vm.assertEq(page.length, 0, "past the end");
        vm.assertEq(next, 0, "past the end: done");
        (page, next) = registry.agentsBySkill(WEATHER, 1, type(uint256).max);
        vm.assertEq(page.length, 4, "huge limit");
        vm.assertEq(next, 0, "huge limit: done");
        (page, next) = registry.agentsBySkill(TRAVEL, 0, 10);
        vm.assertEq(page.length, 0, "unknown skill");
    }

    function test_agentsBySkill_revertsForZeroLimit() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectRevert(AgentRegistry.ZeroLimit.selector);
        registry.agentsBySkill(WEATHER, 0, 0);
        vm.expectRevert(AgentRegistry.ZeroLimit.selector);
        registry.agentsBySkill(WEATHER, 7, 0); // also past the end
    }

    /// Removing a listing moves the last one into its place: pages read before and after the
    /// change (different block tags) miss an agent that never left, while all pages read at
    /// one state list everyone once.
    function test_agentsBySkill_pagingWhileListingsChange() public {
        address[] memory agents = new address[](5);
        for (uint256 i; i < agents.length; ++i) {
            agents[i] = vm.addr(1000 + i);
            registerAs(agents[i], MODEL_A, one(WEATHER, i), 0);
        }
        (address[] memory page1, uint256 next) = registry.agentsBySkill(WEATHER, 0, 2);
        vm.assertEq(page1, list2(agents[0], agents[1]), "page 1 at block n");

        // Block n+1: agent 1 leaves; agent 4 moves from listing 4 to listing 1.
        vm.prank(agents[1]);
        registry.removeService(WEATHER);

        (address[] memory page2, uint256 next2) = registry.agentsBySkill(WEATHER, next, 2);
        vm.assertEq(page2, list2(agents[2], agents[3]), "page 2 at block n+1");
        vm.assertEq(next2, 0, "the list shrank to 4: done");
        vm.assertFalse(contains(page1, agents[4]) || contains(page2, agents[4]), "agent 4 missed");

        // All pages at one state (block n+1): everyone still listed, each once.
        address[] memory seen = new address[](4);
        uint256 n;
        uint256 offset;
        do {
            address[] memory page;
            (page, offset) = registry.agentsBySkill(WEATHER, offset, 2);
            for (uint256 i; i < page.length; ++i) {
                vm.assertFalse(contains(seen, page[i]), "no repeats");
                seen[n++] = page[i];
            }
        } while (offset != 0);
        vm.assertEq(n, 4, "four listed");
        vm.assertTrue(contains(seen, agents[4]), "agent 4 found");
        vm.assertFalse(contains(seen, agents[1]), "agent 1 gone");
    }

    function test_agentsBySkill_skipsSuspended() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        registerAs(bob, MODEL_B, one(WEATHER, 1), 0);
        registerAs(carol, bytes32(0), one(WEATHER, 1), 0);

        vm.prank(governor);
        registry.suspendAgent(alice, "spam");
        (address[] memory page, uint256 next) = registry.agentsBySkill(WEATHER, 0, 2);
        vm.assertEq(page, list1(bob), "alice skipped, page shrinks");
        vm.assertEq(next, 2, "scan goes on");
        (page,) = registry.agentsBySkill(WEATHER, next, 2);
        vm.assertEq(page, list1(carol), "carol");

        vm.prank(governor);
        registry.suspendModel(MODEL_B, "jailbreak");
        vm.assertEq(lookup(WEATHER), list1(carol), "model B killed");
        vm.assertFalse(registry.isActive(bob), "bob inactive");

        // Bob switches to a clean model and is back.
        vm.prank(bob);
        registry.updateAgent("ws://127.0.0.1:9001", "ipfs://card", MODEL_A);
        vm.assertEq(lookup(WEATHER), list2(bob, carol), "bob on model A");

        vm.prank(governor);
        registry.reinstateAgent(alice);
        vm.assertEq(lookup(WEATHER).length, 3, "all back");
    }

    // ------------------------------------------------------------------ stake

    function test_stake_addRequestWithdraw() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeAdded(alice, 5 * UNIT, 15 * UNIT);
        vm.prank(alice);
        registry.addStake(5 * UNIT);

        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeWithdrawalRequested(alice, 12 * UNIT, uint64(START + UNBONDING));
        vm.prank(alice);
        registry.requestStakeWithdrawal(12 * UNIT);
        AgentRegistry.Agent memory a = registry.getAgent(alice);
        vm.assertEq(a.pendingWithdrawal, 12 * UNIT, "pending");
        vm.assertEq(a.stake, 15 * UNIT, "still staked");

        vm.warp(START + UNBONDING);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeWithdrawn(alice, 12 * UNIT, 3 * UNIT);
        vm.prank(alice);
        registry.withdrawStake();
        a = registry.getAgent(alice);
        vm.assertEq(a.stake, 3 * UNIT, "left");
        vm.assertEq(a.pendingWithdrawal, 0, "nothing pending");
        vm.assertEq(uint256(a.withdrawalReadyAt), 0, "clock cleared");
        vm.assertEq(token.balanceOf(alice), 997 * UNIT, "paid back");
    }

    function test_stake_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.addStake(1);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.requestStakeWithdrawal(1);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.withdrawStake();

        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.startPrank(alice);
        vm.expectRevert(AgentRegistry.ZeroAmount.selector);
        registry.addStake(0);
        vm.expectRevert(AgentRegistry.ZeroAmount.selector);
        registry.requestStakeWithdrawal(0);
        vm.expectRevert(
            abi.encodeWithSelector(
                AgentRegistry.InsufficientStake.selector, alice, 10 * UNIT, 11 * UNIT
            )
        );
        registry.requestStakeWithdrawal(11 * UNIT);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NoWithdrawalRequested.selector, alice));
        registry.withdrawStake();
        registry.requestStakeWithdrawal(10 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                AgentRegistry.WithdrawalNotReady.selector, uint64(START + UNBONDING), START
            )
        );
        registry.withdrawStake();
        vm.stopPrank();
    }

    function test_stake_bondedStake() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.assertEq(registry.bondedStake(alice), 10 * UNIT, "all bonded");
        vm.prank(alice);
        registry.requestStakeWithdrawal(4 * UNIT);
        vm.assertEq(registry.bondedStake(alice), 6 * UNIT, "unbonding is not bonded");
        vm.warp(START + UNBONDING);
        vm.assertEq(registry.bondedStake(alice), 6 * UNIT, "withdrawable is not bonded");
        vm.warp(START + UNBONDING + WINDOW);
        vm.assertEq(registry.bondedStake(alice), 10 * UNIT, "lapsed request: bonded again");
        vm.assertEq(registry.getAgent(alice).pendingWithdrawal, 4 * UNIT, "record kept");
        vm.assertEq(registry.bondedStake(bob), 0, "unregistered");
    }

    function test_stake_withdrawalRequestExpires() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(10 * UNIT);
        uint256 expiresAt = START + UNBONDING + WINDOW;
        vm.warp(expiresAt);
        vm.expectRevert(
            abi.encodeWithSelector(AgentRegistry.WithdrawalExpired.selector, expiresAt, expiresAt)
        );
        vm.prank(alice);
        registry.withdrawStake();

        // A new request starts a new unbonding period.
        vm.prank(alice);
        registry.requestStakeWithdrawal(10 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                AgentRegistry.WithdrawalNotReady.selector, uint64(expiresAt + UNBONDING), expiresAt
            )
        );
        vm.prank(alice);
        registry.withdrawStake();
        vm.warp(expiresAt + UNBONDING + WINDOW - 1); // the last second of the window
        vm.prank(alice);
        registry.withdrawStake();
        vm.assertEq(registry.getAgent(alice).stake, 0, "withdrawn");
    }

    function test_stake_cancelWithdrawal() public {
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        registry.cancelStakeWithdrawal();
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NoWithdrawalRequested.selector, alice));
        vm.prank(alice);
        registry.cancelStakeWithdrawal();

        vm.prank(alice);
        registry.requestStakeWithdrawal(3 * UNIT);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeWithdrawalCancelled(alice, 3 * UNIT);
        vm.prank(alice);
        registry.cancelStakeWithdrawal();
        AgentRegistry.Agent memory a = registry.getAgent(alice);
        vm.assertEq(a.pendingWithdrawal, 0, "nothing pending");
        vm.assertEq(uint256(a.withdrawalReadyAt), 0, "clock cleared");
        vm.assertEq(registry.bondedStake(alice), 10 * UNIT, "bonded again");
        vm.warp(START + UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NoWithdrawalRequested.selector, alice));
        vm.prank(alice);
        registry.withdrawStake();
    }

    /// A slash that eats into the requested amount caps it; the rest is withdrawable.
    function test_stake_withdrawAfterPartialSlash() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(8 * UNIT);
        vm.prank(governor);
        registry.slash(alice, 4 * UNIT, "late delivery");
        vm.assertEq(registry.bondedStake(alice), 0, "6 staked, 6 leaving");
        vm.warp(START + UNBONDING);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.StakeWithdrawn(alice, 6 * UNIT, 0);
        vm.prank(alice);
        registry.withdrawStake();
        vm.assertEq(token.balanceOf(alice), 996 * UNIT, "got what the slash left");
        vm.assertEq(token.balanceOf(address(registry)), 0, "registry empty");

        // A slash smaller than the unrequested part leaves the request whole.
        registerAs(bob, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(bob);
        registry.requestStakeWithdrawal(2 * UNIT);
        vm.prank(governor);
        registry.slash(bob, 5 * UNIT, "minor");
        vm.assertEq(registry.bondedStake(bob), 3 * UNIT, "5 staked, 2 leaving");
        vm.warp(START + 2 * UNBONDING);
        vm.prank(bob);
        registry.withdrawStake();
        vm.assertEq(registry.getAgent(bob).stake, 3 * UNIT, "3 left");
        vm.assertEq(token.balanceOf(bob), 992 * UNIT, "got 2 back");
    }

    function test_stake_frozenWhileSuspended() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(10 * UNIT);
        vm.prank(governor);
        registry.suspendAgent(alice, "fraud");
        vm.warp(START + UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.StakeFrozen.selector, alice));
        vm.prank(alice);
        registry.withdrawStake();
        vm.prank(governor);
        registry.reinstateAgent(alice);
        vm.prank(alice);
        registry.withdrawStake();
        vm.assertEq(registry.getAgent(alice).stake, 0, "withdrawn after reinstatement");
    }

    /// The kill switch freezes the stake of agents on the model, and moving to another model
    /// does not lift the freeze: only reinstating the model does.
    function test_stake_frozenByModelSuspension() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(10 * UNIT);
        vm.prank(governor);
        registry.suspendModel(MODEL_A, "leaks secrets");
        vm.assertTrue(registry.stakeFrozen(alice), "frozen");
        vm.warp(START + UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.StakeFrozen.selector, alice));
        vm.prank(alice);
        registry.withdrawStake();

        // Alice moves to a clean model: listed again, stake still frozen.
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.StakeFrozenByModel(alice, MODEL_A);
        vm.prank(alice);
        registry.updateAgent("ws://127.0.0.1:9000", "ipfs://card", MODEL_B);
        vm.assertEq(registry.frozenByModel(alice), MODEL_A, "remembered");
        vm.assertEq(lookup(WEATHER), list1(alice), "listed on model B");
        vm.assertTrue(registry.stakeFrozen(alice), "still frozen");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.StakeFrozen.selector, alice));
        vm.prank(alice);
        registry.withdrawStake();

        vm.prank(governor);
        registry.reinstateModel(MODEL_A);
        vm.assertFalse(registry.stakeFrozen(alice), "thawed");
        vm.prank(alice);
        registry.withdrawStake();
        vm.assertEq(token.balanceOf(alice), 1_000 * UNIT, "withdrawn after reinstatement");
        vm.assertFalse(registry.stakeFrozen(bob), "unregistered: not frozen");
    }

    /// While the suspended model an agent left still freezes its stake, it cannot leave a
    /// second suspended model (which would drop the first from `frozenByModel`).
    function test_updateAgent_cannotLeaveSecondSuspendedModel() public {
        bytes32 modelC = keccak256("third-model.gguf");
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.startPrank(governor);
        registry.suspendModel(MODEL_A, "");
        registry.suspendModel(MODEL_B, "");
        vm.stopPrank();
        vm.startPrank(alice);
        registry.updateAgent("ws://a", "", MODEL_B); // A recorded; B is suspended too
        vm.assertEq(registry.frozenByModel(alice), MODEL_A, "A recorded");
        vm.expectRevert(
            abi.encodeWithSelector(AgentRegistry.SuspendedModelLocked.selector, MODEL_B, MODEL_A)
        );
        registry.updateAgent("ws://a", "", modelC);
        registry.updateAgent("ws://b", "ipfs://new", MODEL_B); // same model: fine
        vm.stopPrank();

        // Once A is reinstated, alice may leave B, which is recorded instead.
        vm.prank(governor);
        registry.reinstateModel(MODEL_A);
        vm.prank(alice);
        registry.updateAgent("ws://a", "", modelC);
        vm.assertEq(registry.frozenByModel(alice), MODEL_B, "B recorded");
        vm.assertTrue(registry.stakeFrozen(alice), "frozen by B");
        vm.assertTrue(registry.isActive(alice), "active on C");
    }

    /// Coming back to the recorded suspended model and leaving it again is allowed: the record
    /// stays the same fingerprint.
    function test_updateAgent_leaveRecordedModelAgain() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.prank(governor);
        registry.suspendModel(MODEL_A, "");
        vm.startPrank(alice);
        registry.updateAgent("ws://a", "", MODEL_B);
        registry.updateAgent("ws://a", "", MODEL_A); // B is clean: nothing recorded
        vm.assertEq(registry.frozenByModel(alice), MODEL_A, "A recorded");
        registry.updateAgent("ws://a", "", MODEL_B);
        vm.stopPrank();
        vm.assertEq(registry.frozenByModel(alice), MODEL_A, "still A");
        vm.assertTrue(registry.stakeFrozen(alice), "frozen");
    }

    /// With a minimum stake, only agents with enough bonded stake are active and listed; a
    /// withdrawal request unlists at once, a cancelled or lapsed one lists again.
    function test_minStake_gatesListing() public {
        registry = stakedRegistry();
        registerAs(alice, MODEL_A, one(WEATHER, 1), MIN_STAKE - 1);
        registerAs(bob, MODEL_A, one(WEATHER, 1), 0);
        registerAs(carol, MODEL_A, one(WEATHER, 1), MIN_STAKE);
        vm.assertEq(lookup(WEATHER), list1(carol), "only carol staked enough");
        vm.assertFalse(registry.isActive(alice) || registry.isActive(bob), "below minimum");

        vm.prank(alice);
        registry.addStake(1);
        vm.assertEq(lookup(WEATHER), list2(alice, carol), "alice topped up");

        vm.prank(carol);
        registry.requestStakeWithdrawal(1);
        vm.assertEq(lookup(WEATHER), list1(alice), "carol unbonding");
        vm.prank(carol);
        registry.cancelStakeWithdrawal();
        vm.assertTrue(registry.isActive(carol), "carol bonded again");

        vm.prank(alice);
        registry.requestStakeWithdrawal(MIN_STAKE);
        vm.assertFalse(registry.isActive(alice), "alice unbonding");
        vm.warp(START + UNBONDING + WINDOW - 1);
        vm.assertFalse(registry.isActive(alice), "withdrawable");
        vm.warp(START + UNBONDING + WINDOW);
        vm.assertTrue(registry.isActive(alice), "lapsed request: active again");

        vm.prank(governor);
        registry.slash(carol, 1, "");
        vm.assertEq(lookup(WEATHER), list1(alice), "carol slashed below minimum");
    }

    /// bondedStake is the stake minus a live request, never more than the stake, and
    /// isActive follows it against minStake.
    function testFuzz_bondedStake(uint64 stake, uint64 request, uint64 slashed, uint32 elapsed)
        public
    {
        registry = stakedRegistry();
        stake = uint64(1 + uint256(stake) % (1_000 * UNIT));
        request = uint64(1 + uint256(request) % stake);
        slashed = uint64(uint256(slashed) % (stake + 1));
        registerAs(alice, MODEL_A, one(WEATHER, 1), stake);
        vm.prank(alice);
        registry.requestStakeWithdrawal(request);
        if (slashed != 0) {
            vm.prank(governor);
            registry.slash(alice, slashed, "");
        }
        vm.warp(START + uint256(elapsed) % (2 * (UNBONDING + WINDOW)));
        AgentRegistry.Agent memory a = registry.getAgent(alice);
        bool live = block.timestamp < uint256(a.withdrawalReadyAt) + WINDOW;
        uint256 expected = a.stake - (live ? a.pendingWithdrawal : 0);
        vm.assertEq(registry.bondedStake(alice), expected, "bonded");
        vm.assertEq(a.stake, uint256(stake) - slashed, "stake");
        vm.assertEq(registry.isActive(alice), expected >= MIN_STAKE, "active iff bonded enough");
    }

    // ------------------------------------------------------------------ governance

    function test_governance_onlyGovernor() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        bytes memory notGov = abi.encodeWithSelector(AgentRegistry.NotGovernor.selector, mallory);
        vm.startPrank(mallory);
        vm.expectRevert(notGov);
        registry.suspendAgent(alice, "");
        vm.expectRevert(notGov);
        registry.reinstateAgent(alice);
        vm.expectRevert(notGov);
        registry.suspendModel(MODEL_A, "");
        vm.expectRevert(notGov);
        registry.reinstateModel(MODEL_A);
        vm.expectRevert(notGov);
        registry.slash(alice, 1, "");
        vm.expectRevert(notGov);
        registry.setTreasury(mallory);
        vm.expectRevert(notGov);
        registry.transferGovernance(mallory);
        vm.stopPrank();
    }

    function test_adjudicator_slashesAndSuspendsOnly() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        address oracle = address(0x0AC1E);
        bytes memory notGov = abi.encodeWithSelector(AgentRegistry.NotGovernor.selector, oracle);
        vm.prank(oracle);
        vm.expectRevert(notGov);
        registry.slash(alice, 1, "");

        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotGovernor.selector, mallory));
        vm.prank(mallory);
        registry.setAdjudicator(oracle, true);

        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.AdjudicatorSet(oracle, true);
        vm.prank(governor);
        registry.setAdjudicator(oracle, true);
        vm.assertTrue(registry.isAdjudicator(oracle), "allowed");

        vm.startPrank(oracle);
        registry.slash(alice, 4 * UNIT, "wrong output");
        registry.suspendModel(MODEL_A, "wrong output");
        // Reinstating, suspending agents and the rest stay with the governor.
        vm.expectRevert(notGov);
        registry.reinstateModel(MODEL_A);
        vm.expectRevert(notGov);
        registry.suspendAgent(alice, "");
        vm.stopPrank();
        vm.assertEq(registry.getAgent(alice).stake, 6 * UNIT, "slashed");
        vm.assertEq(token.balanceOf(treasury), 4 * UNIT, "to the treasury");
        vm.assertTrue(registry.modelSuspended(MODEL_A), "model suspended");

        vm.prank(governor);
        registry.setAdjudicator(oracle, false);
        vm.assertFalse(registry.isAdjudicator(oracle), "no longer");
        vm.prank(oracle);
        vm.expectRevert(notGov);
        registry.slash(alice, 1, "");
    }

    function test_suspendAndReinstateAgent() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.AgentSuspended(alice, "spam");
        vm.prank(governor);
        registry.suspendAgent(alice, "spam");
        vm.assertTrue(registry.getAgent(alice).suspended, "suspended");
        vm.assertFalse(registry.isActive(alice), "inactive");
        vm.assertEq(lookup(WEATHER).length, 0, "hidden");

        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.AgentReinstated(alice);
        vm.prank(governor);
        registry.reinstateAgent(alice);
        vm.assertTrue(registry.isActive(alice), "active again");
        vm.assertEq(lookup(WEATHER), list1(alice), "listed again");
    }

    function test_suspendAgent_reverts() public {
        vm.startPrank(governor);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        registry.suspendAgent(alice, "");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.AgentNotSuspended.selector, alice));
        registry.reinstateAgent(alice);
        vm.stopPrank();
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        vm.startPrank(governor);
        registry.suspendAgent(alice, "");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.AgentAlreadySuspended.selector, alice));
        registry.suspendAgent(alice, "");
        registry.reinstateAgent(alice);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.AgentNotSuspended.selector, alice));
        registry.reinstateAgent(alice);
        vm.stopPrank();
    }

    function test_modelKillSwitch() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 0);
        registerAs(bob, MODEL_A, one(WEATHER, 1), 0);
        registerAs(carol, MODEL_B, one(WEATHER, 1), 0);
        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.ModelSuspended(MODEL_A, "leaks secrets");
        vm.prank(governor);
        registry.suspendModel(MODEL_A, "leaks secrets");
        vm.assertTrue(registry.modelSuspended(MODEL_A), "suspended");
        vm.assertEq(lookup(WEATHER), list1(carol), "only model B left");
        vm.assertFalse(registry.isActive(alice) || registry.isActive(bob), "A agents inactive");

        vm.expectEmit(true, false, false, true, address(registry));
        emit AgentRegistry.ModelReinstated(MODEL_A);
        vm.prank(governor);
        registry.reinstateModel(MODEL_A);
        vm.assertEq(lookup(WEATHER).length, 3, "all back");
    }

    function test_modelKillSwitch_reverts() public {
        vm.startPrank(governor);
        vm.expectRevert(AgentRegistry.InvalidModelFingerprint.selector);
        registry.suspendModel(bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.ModelNotSuspended.selector, MODEL_A));
        registry.reinstateModel(MODEL_A);
        registry.suspendModel(MODEL_A, "");
        vm.expectRevert(
            abi.encodeWithSelector(AgentRegistry.ModelAlreadySuspended.selector, MODEL_A)
        );
        registry.suspendModel(MODEL_A, "");
        vm.stopPrank();
    }

    function test_slash_toTreasury() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(8 * UNIT);
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.StakeSlashed(
            alice, 4 * UNIT, treasury, 6 * UNIT, 6 * UNIT, "late delivery"
        );
        vm.prank(governor);
        registry.slash(alice, 4 * UNIT, "late delivery");
        AgentRegistry.Agent memory a = registry.getAgent(alice);
        vm.assertEq(a.stake, 6 * UNIT, "stake");
        vm.assertEq(a.pendingWithdrawal, 6 * UNIT, "pending capped");
        vm.assertEq(uint256(a.withdrawalReadyAt), START + UNBONDING, "clock kept");
        vm.assertEq(token.balanceOf(treasury), 4 * UNIT, "treasury paid");

        vm.prank(governor);
        registry.slash(alice, 6 * UNIT, "again");
        a = registry.getAgent(alice);
        vm.assertEq(a.stake, 0, "all gone");
        vm.assertEq(a.pendingWithdrawal, 0, "nothing pending");
        vm.assertEq(uint256(a.withdrawalReadyAt), 0, "clock cleared");
    }

    function test_slash_smallKeepsPendingWithdrawal() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.prank(alice);
        registry.requestStakeWithdrawal(2 * UNIT);
        vm.prank(governor);
        registry.slash(alice, 1 * UNIT, "minor");
        vm.assertEq(registry.getAgent(alice).pendingWithdrawal, 2 * UNIT, "pending untouched");
    }

    function test_slash_burnsWithoutTreasury() public {
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.TreasuryChanged(treasury, address(0));
        vm.prank(governor);
        registry.setTreasury(address(0));
        uint256 supply = token.totalSupply();
        vm.prank(governor);
        registry.slash(alice, 10 * UNIT, "burn");
        vm.assertEq(token.totalSupply(), supply - 10 * UNIT, "burned");
        vm.assertEq(token.balanceOf(address(registry)), 0, "registry empty");
    }

    function test_slash_reverts() public {
        vm.startPrank(governor);
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotRegistered.selector, alice));
        registry.slash(alice, 1, "");
        vm.stopPrank();
        registerAs(alice, MODEL_A, one(WEATHER, 1), 10 * UNIT);
        vm.startPrank(governor);
        vm.expectRevert(AgentRegistry.ZeroAmount.selector);
        registry.slash(alice, 0, "");
        vm.expectRevert(
            abi.encodeWithSelector(
                AgentRegistry.InsufficientStake.selector, alice, 10 * UNIT, 10 * UNIT + 1
            )
        );
        registry.slash(alice, 10 * UNIT + 1, "");
        vm.stopPrank();
    }

    function test_transferGovernance() public {
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.GovernanceTransferStarted(governor, carol);
        vm.prank(governor);
        registry.transferGovernance(carol);
        vm.assertEq(registry.pendingGovernor(), carol, "pending");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotPendingGovernor.selector, mallory));
        vm.prank(mallory);
        registry.acceptGovernance();
        vm.expectEmit(true, true, false, true, address(registry));
        emit AgentRegistry.GovernorChanged(governor, carol);
        vm.prank(carol);
        registry.acceptGovernance();
        vm.assertEq(registry.governor(), carol, "new governor");
        vm.assertEq(registry.pendingGovernor(), address(0), "cleared");
        vm.expectRevert(abi.encodeWithSelector(AgentRegistry.NotGovernor.selector, governor));
        vm.prank(governor);
        registry.setTreasury(governor);
    }

    function test_acceptGovernance_revertsWithoutProposal() public {
        // No proposal: pendingGovernor is zero, and even the zero address cannot accept.
        vm.expectRevert(
            abi.encodeWithSelector(AgentRegistry.NotPendingGovernor.selector, address(0))
        );
        vm.prank(address(0));
        registry.acceptGovernance();
    }

    // ------------------------------------------------------------------ indexer

    /// The events alone rebuild the skill index: replay the logs of a busy history into a
    /// small in-memory indexer and compare it with the contract's own lookup.
    function test_eventsRebuildLookup() public {
        vm.recordLogs();
        registerAs(alice, MODEL_A, two(WEATHER, TRAVEL), 1 * UNIT);
        registerAs(bob, MODEL_B, one(WEATHER, 5), 0);
        registerAs(carol, MODEL_A, one(TRAVEL, 5), 0);
        registerAs(mallory, MODEL_B, one(TRANSLATE, 5), 0);
        vm.prank(carol);
        registry.setService(WEATHER, 4, "request");
        vm.prank(alice);
        registry.removeService(WEATHER);
        vm.prank(mallory);
        registry.setServices(two(TRANSLATE, WEATHER));
        vm.prank(governor);
        registry.suspendModel(MODEL_B, "kill");
        vm.prank(mallory);
        registry.updateAgent("ws://127.0.0.1:9100", "", MODEL_A);
        vm.prank(governor);
        registry.suspendAgent(carol, "fraud");
        vm.prank(governor);
        registry.reinstateAgent(carol);
        vm.prank(governor);
        registry.suspendAgent(alice, "spam");
        Vm.Log[] memory logs = vm.getRecordedLogs();

        address[4] memory agents = [alice, bob, carol, mallory];
        bool[4] memory offersWeather;
        bool[4] memory suspended;
        bytes32[4] memory model;
        bytes32[] memory killed = new bytes32[](logs.length);
        uint256 nKilled;
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory log = logs[i];
            if (log.emitter != address(registry)) continue;
            bytes32 sig = log.topics[0];
            if (sig == AgentRegistry.ModelSuspended.selector) {
                killed[nKilled++] = log.topics[1];
                continue;
            }
            if (sig == AgentRegistry.ModelReinstated.selector) revert("not in this history");
            uint256 k = indexOf(agents, address(uint160(uint256(log.topics[1]))));
            if (
                sig == AgentRegistry.AgentRegistered.selector
                    || sig == AgentRegistry.AgentUpdated.selector
            ) {
                model[k] = log.topics[2];
            } else if (sig == AgentRegistry.ServicesReplaced.selector) {
                AgentRegistry.Service[] memory services =
                    abi.decode(log.data, (AgentRegistry.Service[]));
                offersWeather[k] = false;
                for (uint256 j; j < services.length; ++j) {
                    if (services[j].skill == WEATHER) offersWeather[k] = true;
                }
            } else if (sig == AgentRegistry.ServiceSet.selector) {
                if (log.topics[2] == WEATHER) offersWeather[k] = true;
            } else if (sig == AgentRegistry.ServiceRemoved.selector) {
                if (log.topics[2] == WEATHER) offersWeather[k] = false;
            } else if (sig == AgentRegistry.AgentSuspended.selector) {
                suspended[k] = true;
            } else if (sig == AgentRegistry.AgentReinstated.selector) {
                suspended[k] = false;
            }
        }
        address[] memory onChain = lookup(WEATHER);
        uint256 expected;
        for (uint256 k; k < 4; ++k) {
            bool modelKilled;
            for (uint256 j; j < nKilled; ++j) {
                if (killed[j] == model[k]) modelKilled = true;
            }
            bool listed = offersWeather[k] && !suspended[k] && !modelKilled;
            vm.assertEq(contains(onChain, agents[k]), listed, "indexer agrees");
            if (listed) expected++;
        }
        vm.assertEq(onChain.length, expected, "same size");
        vm.assertEq(expected, 2, "carol and mallory");
    }

    function indexOf(address[4] memory agents, address a) internal pure returns (uint256) {
        for (uint256 i; i < 4; ++i) {
            if (agents[i] == a) return i;
        }
        revert("unknown agent in log");
    }
}
