// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {Reputation} from "../src/Reputation.sol";

contract ReputationTest is TestBase {
    Stablecoin internal token;
    JobEscrow internal escrow;
    Reputation internal reputation;

    address internal arbiter = address(0xA4B);
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant RESULT = keccak256("result");
    bytes32 internal constant DOC = keccak256("feedback document");
    uint64 internal constant DEADLINE = uint64(START + 1 hours);
    uint32 internal constant REVIEW = 10 minutes;
    uint64 internal constant RULING = 1 days;

    /// alice's escrow for JOB.
    bytes32 internal id;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, arbiter, governor, RULING);
        reputation = new Reputation(escrow);
        token.transfer(alice, 100 * UNIT);
        vm.prank(alice);
        token.approve(address(escrow), type(uint256).max);
        id = keccak256(abi.encode(alice, JOB));
    }

    /// Locks `jobId` as alice and delivers it; returns the escrow id.
    function lockAndDeliver(bytes32 jobId) internal returns (bytes32 escrowId) {
        vm.prank(alice);
        escrowId = escrow.lock(jobId, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.prank(bob);
        escrow.deliver(escrowId, RESULT);
    }

    function notSettled(bytes32 escrowId, JobEscrow.State s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Reputation.JobNotSettled.selector, escrowId, s);
    }

    function test_feedbackAfterAccept() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(id);
        vm.expectEmit(true, true, true, true, address(reputation));
        emit Reputation.FeedbackGiven(id, alice, bob, 90, "ipfs://feedback", DOC);
        vm.prank(alice);
        reputation.giveFeedback(id, 90, "ipfs://feedback", DOC);

        Reputation.Feedback memory f = reputation.feedbackOf(id);
        vm.assertTrue(f.given, "given");
        vm.assertEq(uint256(f.score), 90, "score");
        vm.assertEq(f.seller, bob, "seller");
        vm.assertEq(f.uri, "ipfs://feedback", "uri");
        vm.assertEq(f.feedbackHash, DOC, "hash");
        (uint256 count, uint256 total, uint256 average) = reputation.summaryOf(bob);
        vm.assertEq(count, 1, "count");
        vm.assertEq(total, 90, "total");
        vm.assertEq(average, 90, "average");
    }

    function test_feedbackAfterAutoReleaseAndDispute() public {
        lockAndDeliver(JOB);
        vm.warp(START + REVIEW);
        escrow.release(id);
        vm.prank(alice);
        reputation.giveFeedback(id, 100, "", bytes32(0));

        bytes32 job2 = lockAndDeliver(keccak256("job-2"));
        vm.prank(alice);
        escrow.dispute(job2, bytes32(0));
        vm.expectRevert(notSettled(job2, JobEscrow.State.Disputed));
        vm.prank(alice);
        reputation.giveFeedback(job2, 0, "", bytes32(0));
        vm.prank(arbiter);
        escrow.resolveDispute(job2, 1 * UNIT);
        vm.prank(alice);
        reputation.giveFeedback(job2, 0, "", bytes32(0));

        (uint256 count, uint256 total, uint256 average) = reputation.summaryOf(bob);
        vm.assertEq(count, 2, "count");
        vm.assertEq(total, 100, "total");
        vm.assertEq(average, 50, "average");
    }

    /// A dispute the arbiter left unruled is settled by default (seller paid): the buyer may
    /// still rate the seller.
    function test_feedbackAfterDisputeTimeout() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        vm.warp(START + RULING + 1);
        escrow.settleExpiredDispute(id);
        vm.prank(alice);
        reputation.giveFeedback(id, 20, "", bytes32(0));
        (uint256 count, uint256 total,) = reputation.summaryOf(bob);
        vm.assertEq(count + total, 21, "one entry of 20");
    }

    /// Feedback is per escrow: a squatter that locked the same job id has its own escrow and
    /// can neither rate through alice's nor block her feedback.
    function test_feedbackIsPerEscrow() public {
        token.transfer(mallory, 1);
        vm.prank(mallory);
        token.approve(address(escrow), 1);
        vm.prank(mallory);
        bytes32 squat = escrow.lock(JOB, bob, 1, DEADLINE, REVIEW);
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, id, mallory));
        vm.prank(mallory);
        reputation.giveFeedback(id, 0, "", bytes32(0));
        vm.expectRevert(notSettled(squat, JobEscrow.State.Locked));
        vm.prank(mallory);
        reputation.giveFeedback(squat, 0, "", bytes32(0));
        vm.prank(alice);
        reputation.giveFeedback(id, 95, "", bytes32(0));
        vm.assertTrue(reputation.feedbackOf(id).given, "alice's entry");
        vm.assertFalse(reputation.feedbackOf(squat).given, "none for the squat");
    }

    function test_summaryOfUnknownSeller() public view {
        (uint256 count, uint256 total, uint256 average) = reputation.summaryOf(carol);
        vm.assertEq(count + total + average, 0, "empty");
    }

    function test_feedback_revertsBeforeSettlement() public {
        vm.prank(alice);
        escrow.lock(JOB, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.expectRevert(notSettled(id, JobEscrow.State.Locked));
        vm.prank(alice);
        reputation.giveFeedback(id, 50, "", bytes32(0));
        vm.prank(bob);
        escrow.deliver(id, RESULT);
        vm.expectRevert(notSettled(id, JobEscrow.State.Delivered));
        vm.prank(alice);
        reputation.giveFeedback(id, 50, "", bytes32(0));
    }

    function test_feedback_revertsAfterRefund() public {
        vm.prank(alice);
        escrow.lock(JOB, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.warp(DEADLINE + 1);
        escrow.refund(id);
        vm.expectRevert(notSettled(id, JobEscrow.State.Refunded));
        vm.prank(alice);
        reputation.giveFeedback(id, 0, "", bytes32(0));
    }

    function test_feedback_revertsForOthers() public {
        // Unknown job: its buyer is the zero address, which nobody is.
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, id, alice));
        vm.prank(alice);
        reputation.giveFeedback(id, 50, "", bytes32(0));

        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, id, bob));
        vm.prank(bob); // the seller cannot rate itself
        reputation.giveFeedback(id, 100, "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, id, mallory));
        vm.prank(mallory);
        reputation.giveFeedback(id, 0, "", bytes32(0));
    }

    function test_feedback_revertsOnSecondTime() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(id);
        vm.prank(alice);
        reputation.giveFeedback(id, 10, "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(Reputation.FeedbackAlreadyGiven.selector, id));
        vm.prank(alice);
        reputation.giveFeedback(id, 100, "", bytes32(0));
        (uint256 count,,) = reputation.summaryOf(bob);
        vm.assertEq(count, 1, "counted once");
    }

    function test_feedback_revertsForScoreOutOfRange() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(abi.encodeWithSelector(Reputation.ScoreOutOfRange.selector, 101));
        vm.prank(alice);
        reputation.giveFeedback(id, 101, "", bytes32(0));
        vm.prank(alice);
        reputation.giveFeedback(id, 100, "", bytes32(0)); // the top score is fine
    }
}
