// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {PaymentChannel} from "../src/PaymentChannel.sol";
import {IdentityRegistry} from "../src/IdentityRegistry.sol";
import {ReputationRegistry} from "../src/ReputationRegistry.sol";
import {SettledFeedback} from "../src/SettledFeedback.sol";

contract SettledFeedbackTest is TestBase {
    Stablecoin internal token;
    JobEscrow internal escrow;
    PaymentChannel internal channels;
    IdentityRegistry internal identity;
    ReputationRegistry internal reputation;
    SettledFeedback internal settled;

    address internal arbiter = address(0xA4B);
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant RESULT = keccak256("result");
    bytes32 internal constant DOC = keccak256("feedback file");
    uint64 internal constant DEADLINE = uint64(START + 1 hours);
    uint32 internal constant REVIEW = 10 minutes;
    uint64 internal constant RULING = 1 days;

    /// bob's ERC-8004 agent (its wallet is bob).
    uint256 internal agent;
    /// alice's escrow for JOB (seller bob).
    bytes32 internal id;

    SettledFeedback.DealKind internal constant ESCROW = SettledFeedback.DealKind.Escrow;
    SettledFeedback.DealKind internal constant CHANNEL = SettledFeedback.DealKind.Channel;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, arbiter, governor, RULING);
        channels = new PaymentChannel(token);
        identity = new IdentityRegistry();
        reputation = new ReputationRegistry(identity);
        settled = new SettledFeedback(identity, reputation, escrow, channels);
        token.transfer(alice, 100 * UNIT);
        vm.startPrank(alice);
        token.approve(address(escrow), type(uint256).max);
        token.approve(address(channels), type(uint256).max);
        vm.stopPrank();
        vm.prank(bob);
        agent = identity.register("ipfs://bob");
        id = keccak256(abi.encode(alice, JOB));
    }

    // ------------------------------------------------------------------ helpers

    function stars(int128 value) internal pure returns (SettledFeedback.Feedback memory) {
        return SettledFeedback.Feedback({
            value: value,
            valueDecimals: 0,
            tag1: "starred",
            tag2: "weather.forecast",
            endpoint: "http://bob.example/x402/weather.forecast",
            feedbackURI: "ipfs://feedback",
            feedbackHash: DOC
        });
    }

    /// Locks `jobId` as alice for `seller` and delivers it; returns the escrow id.
    function lockAndDeliver(bytes32 jobId, address seller) internal returns (bytes32 escrowId) {
        vm.prank(alice);
        escrowId = escrow.lock(jobId, seller, 1 * UNIT, DEADLINE, REVIEW);
        vm.prank(seller);
        escrow.deliver(escrowId, RESULT);
    }

    function acceptedEscrow(bytes32 jobId, address seller) internal returns (bytes32 escrowId) {
        escrowId = lockAndDeliver(jobId, seller);
        vm.prank(alice);
        escrow.accept(escrowId);
    }

    /// Opens alice's channel to `payee` and, when `paid` > 0, has the payee settle `paid`.
    function channelTo(address payee, uint256 paid) internal returns (bytes32 channelId) {
        vm.prank(alice);
        channelId = channels.open(keccak256("salt"), payee, 10 * UNIT, uint64(START + 1 days));
        if (paid > 0) {
            bytes memory sig = signBytes(ALICE_KEY, channels.voucherDigest(channelId, paid));
            vm.prank(payee);
            channels.settle(channelId, paid, sig);
        }
    }

    function giveEscrow(address buyer, bytes32 escrowId, uint256 agentId) internal {
        vm.prank(buyer);
        settled.giveEscrowFeedback(escrowId, agentId, stars(90));
    }

    function notSettled(bytes32 escrowId, JobEscrow.State s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(SettledFeedback.EscrowNotSettled.selector, escrowId, s);
    }

    // ------------------------------------------------------------------ escrow

    function test_escrowFeedback() public {
        acceptedEscrow(JOB, bob);
        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.NewFeedback(
            agent,
            address(settled),
            1,
            90,
            0,
            "starred",
            "starred",
            "weather.forecast",
            "http://bob.example/x402/weather.forecast",
            "ipfs://feedback",
            DOC
        );
        vm.expectEmit(true, true, true, true, address(settled));
        emit SettledFeedback.SettledFeedbackGiven(id, ESCROW, alice, agent, bob, 1);
        vm.prank(alice);
        uint64 index = settled.giveEscrowFeedback(id, agent, stars(90));
        vm.assertEq(index, 1, "index");

        SettledFeedback.Review memory review = settled.reviewOf(ESCROW, id);
        vm.assertEq(review.reviewer, alice, "reviewer");
        vm.assertEq(review.feedbackIndex, 1, "feedback index");
        vm.assertEq(review.agentId, agent, "agent");
        vm.assertFalse(review.revoked, "not revoked");

        address[] memory reviewer = new address[](1);
        reviewer[0] = address(settled);
        (uint64 count, int128 value, uint8 decimals) =
            reputation.getSummary(agent, reviewer, "starred", "");
        vm.assertEq(count, 1, "one payment-backed entry");
        vm.assertEq(int256(value), 90, "value");
        vm.assertEq(uint256(decimals), 0, "decimals");
        vm.assertEq(reputation.getClients(agent), reviewer, "the reviewer is the only client");
    }

    /// A resolved dispute (arbiter or default rule) is a settled deal too.
    function test_escrowFeedbackAfterDispute() public {
        bytes32 ruled = lockAndDeliver(JOB, bob);
        vm.prank(alice);
        escrow.dispute(ruled, bytes32(0));
        vm.expectRevert(notSettled(ruled, JobEscrow.State.Disputed));
        giveEscrow(alice, ruled, agent);
        vm.prank(arbiter);
        escrow.resolveDispute(ruled, 1 * UNIT / 2);
        giveEscrow(alice, ruled, agent);

        bytes32 lapsed = lockAndDeliver(keccak256("job-2"), bob);
        vm.prank(alice);
        escrow.dispute(lapsed, bytes32(0));
        vm.warp(START + RULING + 1);
        escrow.settleExpiredDispute(lapsed);
        giveEscrow(alice, lapsed, agent);
        vm.assertEq(reputation.getLastIndex(agent, address(settled)), 2, "two entries");
        vm.assertEq(settled.reviewOf(ESCROW, lapsed).feedbackIndex, 2, "second index");
    }

    function test_escrowFeedback_revertsWithoutSettledDeal() public {
        // Unknown escrow: no buyer.
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotPayer.selector, ESCROW, id, alice)
        );
        giveEscrow(alice, id, agent);

        vm.prank(alice);
        escrow.lock(JOB, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.expectRevert(notSettled(id, JobEscrow.State.Locked));
        giveEscrow(alice, id, agent);
        vm.prank(bob);
        escrow.deliver(id, RESULT);
        vm.expectRevert(notSettled(id, JobEscrow.State.Delivered));
        giveEscrow(alice, id, agent);

        // Someone else's deal.
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotPayer.selector, ESCROW, id, mallory)
        );
        giveEscrow(mallory, id, agent);

        // Refunded: the seller was never paid.
        vm.prank(alice);
        bytes32 missed = escrow.lock(keccak256("job-3"), bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.warp(DEADLINE + 1);
        escrow.refund(missed);
        vm.expectRevert(notSettled(missed, JobEscrow.State.Refunded));
        giveEscrow(alice, missed, agent);
        vm.assertEq(reputation.getLastIndex(agent, address(settled)), 0, "nothing written");
    }

    function test_escrowFeedback_oncePerDeal() public {
        acceptedEscrow(JOB, bob);
        giveEscrow(alice, id, agent);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.AlreadyReviewed.selector, ESCROW, id)
        );
        giveEscrow(alice, id, agent);
    }

    /// The payment must have gone to the rated agent's wallet.
    function test_escrowFeedback_revertsForAnotherAgent() public {
        acceptedEscrow(JOB, bob);
        vm.prank(carol);
        uint256 carolsAgent = identity.register("ipfs://carol");
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotAgentWallet.selector, carolsAgent, bob, carol)
        );
        giveEscrow(alice, id, carolsAgent);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721NonexistentToken.selector, uint256(9))
        );
        giveEscrow(alice, id, 9);

        // A transferred agent's wallet is cleared until its new owner verifies one.
        vm.prank(bob);
        identity.transferFrom(bob, carol, agent);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotAgentWallet.selector, agent, bob, address(0))
        );
        giveEscrow(alice, id, agent);
    }

    /// Paying oneself (through an agent one owns whose wallet is another account) rates
    /// nothing.
    function test_escrowFeedback_refusesSelfDealing() public {
        vm.prank(alice);
        uint256 alicesAgent = identity.register("ipfs://alice");
        uint256 deadline = START + 60;
        bytes memory consent =
            signBytes(BOB_KEY, identity.agentWalletDigest(alicesAgent, bob, alice, deadline));
        vm.prank(alice);
        identity.setAgentWallet(alicesAgent, bob, deadline, consent);
        acceptedEscrow(JOB, bob);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.SelfFeedback.selector, alice, alicesAgent)
        );
        giveEscrow(alice, id, alicesAgent);
    }

    // ------------------------------------------------------------------ channel

    function test_channelFeedback() public {
        bytes32 channelId = channelTo(bob, 2 * UNIT);
        vm.expectEmit(true, true, true, true, address(settled));
        emit SettledFeedback.SettledFeedbackGiven(channelId, CHANNEL, alice, agent, bob, 1);
        vm.prank(alice);
        settled.giveChannelFeedback(channelId, agent, stars(70));
        (int128 value,,,,) = reputation.readFeedback(agent, address(settled), 1);
        vm.assertEq(int256(value), 70, "value");

        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.AlreadyReviewed.selector, CHANNEL, channelId)
        );
        vm.prank(alice);
        settled.giveChannelFeedback(channelId, agent, stars(70));
    }

    function test_channelFeedback_revertsWithoutSettledDeal() public {
        bytes32 channelId = channelTo(bob, 0);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.ChannelNotSettled.selector, channelId)
        );
        vm.prank(alice);
        settled.giveChannelFeedback(channelId, agent, stars(70));

        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotPayer.selector, CHANNEL, channelId, bob)
        );
        vm.prank(bob);
        settled.giveChannelFeedback(channelId, agent, stars(100));

        bytes32 unknown = keccak256("no channel");
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotPayer.selector, CHANNEL, unknown, alice)
        );
        vm.prank(alice);
        settled.giveChannelFeedback(unknown, agent, stars(70));
    }

    function test_channelFeedback_revertsForAnotherPayee() public {
        bytes32 channelId = channelTo(carol, 1 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NotAgentWallet.selector, agent, carol, bob)
        );
        vm.prank(alice);
        settled.giveChannelFeedback(channelId, agent, stars(10));
    }

    // ------------------------------------------------------------------ revocation

    function test_revokeFeedback() public {
        acceptedEscrow(JOB, bob);
        giveEscrow(alice, id, agent);

        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NoReview.selector, ESCROW, id, mallory)
        );
        vm.prank(mallory);
        settled.revokeFeedback(ESCROW, id);

        vm.expectEmit(true, true, true, true, address(reputation));
        emit ReputationRegistry.FeedbackRevoked(agent, address(settled), 1);
        vm.expectEmit(true, true, true, true, address(settled));
        emit SettledFeedback.SettledFeedbackRevoked(id, ESCROW, agent, 1);
        vm.prank(alice);
        settled.revokeFeedback(ESCROW, id);
        (,,,, bool revoked) = reputation.readFeedback(agent, address(settled), 1);
        vm.assertTrue(revoked, "revoked in the registry");
        vm.assertTrue(settled.reviewOf(ESCROW, id).revoked, "and here");

        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NoReview.selector, ESCROW, id, alice)
        );
        vm.prank(alice);
        settled.revokeFeedback(ESCROW, id);
        // The deal stays used.
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.AlreadyReviewed.selector, ESCROW, id)
        );
        giveEscrow(alice, id, agent);
        // The same id as a channel backs nothing.
        vm.expectRevert(
            abi.encodeWithSelector(SettledFeedback.NoReview.selector, CHANNEL, id, alice)
        );
        vm.prank(alice);
        settled.revokeFeedback(CHANNEL, id);
    }

    // ------------------------------------------------------------------ configuration

    function test_constructor() public {
        vm.assertEq(address(settled.identityRegistry()), address(identity), "identity");
        vm.assertEq(address(settled.reputationRegistry()), address(reputation), "reputation");
        vm.assertEq(address(settled.escrow()), address(escrow), "escrow");
        vm.assertEq(address(settled.channel()), address(channels), "channel");

        IdentityRegistry none = IdentityRegistry(address(0));
        vm.expectRevert(SettledFeedback.InvalidConfiguration.selector);
        new SettledFeedback(none, reputation, escrow, channels);
        vm.expectRevert(SettledFeedback.InvalidConfiguration.selector);
        new SettledFeedback(identity, ReputationRegistry(address(0)), escrow, channels);
        vm.expectRevert(SettledFeedback.InvalidConfiguration.selector);
        new SettledFeedback(identity, reputation, JobEscrow(address(0)), channels);
        vm.expectRevert(SettledFeedback.InvalidConfiguration.selector);
        new SettledFeedback(identity, reputation, escrow, PaymentChannel(address(0)));
        // A reputation registry of another identity registry.
        ReputationRegistry other = new ReputationRegistry(new IdentityRegistry());
        vm.expectRevert(SettledFeedback.InvalidConfiguration.selector);
        new SettledFeedback(identity, other, escrow, channels);
    }
}
