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

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, arbiter);
        reputation = new Reputation(escrow);
        token.transfer(alice, 100 * UNIT);
        vm.prank(alice);
        token.approve(address(escrow), type(uint256).max);
    }

    function lockAndDeliver(bytes32 id) internal {
        vm.prank(alice);
        escrow.lock(id, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.prank(bob);
        escrow.deliver(id, RESULT);
    }

    function notSettled(bytes32 id, JobEscrow.State s) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Reputation.JobNotSettled.selector, id, s);
    }

    function test_feedbackAfterAccept() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.expectEmit(true, true, true, true, address(reputation));
        emit Reputation.FeedbackGiven(JOB, alice, bob, 90, "ipfs://feedback", DOC);
        vm.prank(alice);
        reputation.giveFeedback(JOB, 90, "ipfs://feedback", DOC);

        Reputation.Feedback memory f = reputation.feedbackOf(JOB);
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
        escrow.release(JOB);
        vm.prank(alice);
        reputation.giveFeedback(JOB, 100, "", bytes32(0));

        bytes32 job2 = keccak256("job-2");
        lockAndDeliver(job2);
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

    function test_summaryOfUnknownSeller() public view {
        (uint256 count, uint256 total, uint256 average) = reputation.summaryOf(carol);
        vm.assertEq(count + total + average, 0, "empty");
    }

    function test_feedback_revertsBeforeSettlement() public {
        vm.prank(alice);
        escrow.lock(JOB, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.expectRevert(notSettled(JOB, JobEscrow.State.Locked));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 50, "", bytes32(0));
        vm.prank(bob);
        escrow.deliver(JOB, RESULT);
        vm.expectRevert(notSettled(JOB, JobEscrow.State.Delivered));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 50, "", bytes32(0));
    }

    function test_feedback_revertsAfterRefund() public {
        vm.prank(alice);
        escrow.lock(JOB, bob, 1 * UNIT, DEADLINE, REVIEW);
        vm.warp(DEADLINE + 1);
        escrow.refund(JOB);
        vm.expectRevert(notSettled(JOB, JobEscrow.State.Refunded));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 0, "", bytes32(0));
    }

    function test_feedback_revertsForOthers() public {
        // Unknown job: its buyer is the zero address, which nobody is.
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, JOB, alice));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 50, "", bytes32(0));

        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, JOB, bob));
        vm.prank(bob); // the seller cannot rate itself
        reputation.giveFeedback(JOB, 100, "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(Reputation.NotJobBuyer.selector, JOB, mallory));
        vm.prank(mallory);
        reputation.giveFeedback(JOB, 0, "", bytes32(0));
    }

    function test_feedback_revertsOnSecondTime() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.prank(alice);
        reputation.giveFeedback(JOB, 10, "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(Reputation.FeedbackAlreadyGiven.selector, JOB));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 100, "", bytes32(0));
        (uint256 count,,) = reputation.summaryOf(bob);
        vm.assertEq(count, 1, "counted once");
    }

    function test_feedback_revertsForScoreOutOfRange() public {
        lockAndDeliver(JOB);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.expectRevert(abi.encodeWithSelector(Reputation.ScoreOutOfRange.selector, 101));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 101, "", bytes32(0));
        vm.prank(alice);
        reputation.giveFeedback(JOB, 100, "", bytes32(0)); // the top score is fine
    }
}
