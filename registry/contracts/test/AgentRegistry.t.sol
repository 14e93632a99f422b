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

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        registry = new AgentRegistry(token, governor, treasury, UNBONDING);
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
    }

    function test_constructor_revertsForZeroGovernor() public {
        vm.expectRevert(AgentRegistry.InvalidGovernor.selector);
        new AgentRegistry(token, address(0), treasury, 0);
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
