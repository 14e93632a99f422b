// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {JobEscrow} from "../src/JobEscrow.sol";

contract JobEscrowTest is TestBase {
    Stablecoin internal token;
    JobEscrow internal escrow;

    address internal arbiter = address(0xA4B);
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant RESULT = keccak256("forecast: sunny");
    uint256 internal constant PRICE = 3 * UNIT;
    uint64 internal constant DEADLINE = uint64(START + 1 hours);
    uint32 internal constant REVIEW = 10 minutes;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, arbiter);
        token.transfer(alice, 100 * UNIT);
        vm.prank(alice);
        token.approve(address(escrow), type(uint256).max);
    }

    // ------------------------------------------------------------------ helpers

    function lockJob() internal {
        vm.prank(alice);
        escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW);
    }

    function deliverJob() internal {
        vm.prank(bob);
        escrow.deliver(JOB, RESULT);
    }

    function state() internal view returns (uint256) {
        return uint256(escrow.stateOf(JOB));
    }

    function invalidState(JobEscrow.State current) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(JobEscrow.InvalidState.selector, JOB, current);
    }

    /// Every forbidden move from a final state reverts with InvalidState.
    function assertFinal(JobEscrow.State s) internal {
        bytes memory err = invalidState(s);
        vm.expectRevert(err);
        vm.prank(bob);
        escrow.deliver(JOB, RESULT);
        vm.expectRevert(err);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.expectRevert(err);
        escrow.release(JOB);
        vm.expectRevert(err);
        escrow.refund(JOB);
        vm.expectRevert(err);
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        vm.expectRevert(err);
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, 0);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.JobExists.selector, JOB));
        lockJob();
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor() public view {
        vm.assertEq(address(escrow.token()), address(token), "token");
        vm.assertEq(escrow.arbiter(), arbiter, "arbiter");
    }

    function test_constructor_revertsForZeroArbiter() public {
        vm.expectRevert(JobEscrow.InvalidArbiter.selector);
        new JobEscrow(token, address(0));
    }

    // ------------------------------------------------------------------ lock

    function test_lock() public {
        vm.expectEmit(true, true, true, true, address(escrow));
        emit JobEscrow.JobLocked(JOB, alice, bob, PRICE, DEADLINE, REVIEW);
        lockJob();
        JobEscrow.Job memory job = escrow.getJob(JOB);
        vm.assertEq(job.buyer, alice, "buyer");
        vm.assertEq(job.seller, bob, "seller");
        vm.assertEq(job.amount, PRICE, "amount");
        vm.assertEq(uint256(job.deadline), DEADLINE, "deadline");
        vm.assertEq(uint256(job.reviewWindow), REVIEW, "review");
        vm.assertEq(uint256(job.releaseAfter), 0, "not delivered");
        vm.assertEq(uint256(job.state), uint256(JobEscrow.State.Locked), "locked");
        vm.assertEq(token.balanceOf(address(escrow)), PRICE, "held");
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - PRICE, "paid in");
    }

    function test_lock_reverts() public {
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.InvalidSeller.selector, address(0)));
        escrow.lock(JOB, address(0), PRICE, DEADLINE, REVIEW);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.InvalidSeller.selector, alice));
        escrow.lock(JOB, alice, PRICE, DEADLINE, REVIEW);
        vm.expectRevert(JobEscrow.ZeroAmount.selector);
        escrow.lock(JOB, bob, 0, DEADLINE, REVIEW);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DeadlineInPast.selector, uint64(START), START)
        );
        escrow.lock(JOB, bob, PRICE, uint64(START), REVIEW);
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.InsufficientBalance.selector, alice, 100 * UNIT, 101 * UNIT
            )
        );
        escrow.lock(JOB, bob, 101 * UNIT, DEADLINE, REVIEW);
        escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.JobExists.selector, JOB));
        escrow.lock(JOB, carol, PRICE, DEADLINE, REVIEW);
        vm.stopPrank();
        // Another buyer cannot take over the id either.
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.JobExists.selector, JOB));
        vm.prank(carol);
        escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW);
    }

    function test_lock_revertsWithoutAllowance() public {
        token.transfer(carol, 10 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.InsufficientAllowance.selector, carol, address(escrow), 0, PRICE
            )
        );
        vm.prank(carol);
        escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW);
    }

    function test_lockWithPermit() public {
        token.transfer(carol, 10 * UNIT); // carol never approved the escrow
        (uint8 v, bytes32 r, bytes32 s) =
            permitSig(token, CAROL_KEY, address(escrow), PRICE, START + 5 minutes);
        vm.prank(carol);
        escrow.lockWithPermit(JOB, bob, PRICE, DEADLINE, REVIEW, START + 5 minutes, v, r, s);
        vm.assertEq(uint256(escrow.stateOf(JOB)), uint256(JobEscrow.State.Locked), "locked");
        vm.assertEq(token.balanceOf(address(escrow)), PRICE, "held");
        vm.assertEq(token.allowance(carol, address(escrow)), 0, "permit spent");
        vm.assertEq(token.nonces(carol), 1, "nonce used");
    }

    function test_lockWithPermit_survivesFrontRunPermit() public {
        token.transfer(carol, 10 * UNIT);
        (uint8 v, bytes32 r, bytes32 s) =
            permitSig(token, CAROL_KEY, address(escrow), PRICE, START + 5 minutes);
        // Someone copies the permit from the mempool and submits it first.
        vm.prank(mallory);
        token.permit(carol, address(escrow), PRICE, START + 5 minutes, v, r, s);
        vm.prank(carol);
        escrow.lockWithPermit(JOB, bob, PRICE, DEADLINE, REVIEW, START + 5 minutes, v, r, s);
        vm.assertEq(token.balanceOf(address(escrow)), PRICE, "held");
    }

    function test_lockWithPermit_rethrowsPermitError() public {
        token.transfer(carol, 10 * UNIT);
        (uint8 v, bytes32 r, bytes32 s) =
            permitSig(token, CAROL_KEY, address(escrow), PRICE, START - 1);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.PermitExpired.selector, START - 1, START));
        vm.prank(carol);
        escrow.lockWithPermit(JOB, bob, PRICE, DEADLINE, REVIEW, START - 1, v, r, s);

        (v, r, s) =
            vm.sign(MALLORY_KEY, permitDigest(token, carol, address(escrow), PRICE, 0, START));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, mallory, carol));
        vm.prank(carol);
        escrow.lockWithPermit(JOB, bob, PRICE, DEADLINE, REVIEW, START, v, r, s);
    }

    // ------------------------------------------------------------------ deliver

    function test_deliver() public {
        lockJob();
        vm.warp(DEADLINE); // the deadline itself is still in time
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobDelivered(JOB, bob, RESULT, DEADLINE + REVIEW);
        deliverJob();
        JobEscrow.Job memory job = escrow.getJob(JOB);
        vm.assertEq(job.resultHash, RESULT, "result");
        vm.assertEq(uint256(job.releaseAfter), DEADLINE + REVIEW, "releaseAfter");
        vm.assertEq(state(), uint256(JobEscrow.State.Delivered), "delivered");
    }

    function test_deliver_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        deliverJob();
        lockJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotSeller.selector, alice));
        vm.prank(alice);
        escrow.deliver(JOB, RESULT);
        vm.expectRevert(JobEscrow.EmptyResultHash.selector);
        vm.prank(bob);
        escrow.deliver(JOB, bytes32(0));
        deliverJob();
        vm.expectRevert(invalidState(JobEscrow.State.Delivered));
        deliverJob();
    }

    function test_deliver_revertsAfterDeadline() public {
        lockJob();
        vm.warp(DEADLINE + 1);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DeadlinePassed.selector, DEADLINE, DEADLINE + 1)
        );
        deliverJob();
    }

    // ------------------------------------------------------------------ accept / release

    function test_accept() public {
        lockJob();
        deliverJob();
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobReleased(JOB, bob, PRICE, alice);
        vm.prank(alice);
        escrow.accept(JOB);
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Released);
        vm.assertEq(token.balanceOf(bob), PRICE, "paid exactly once");
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - PRICE, "buyer took nothing back");
    }

    function test_accept_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        vm.prank(alice);
        escrow.accept(JOB);
        lockJob();
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        vm.prank(alice);
        escrow.accept(JOB);
        deliverJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotBuyer.selector, bob));
        vm.prank(bob);
        escrow.accept(JOB);
    }

    function test_release_afterReviewWindow() public {
        lockJob();
        deliverJob();
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowOpen.selector, uint64(START + REVIEW), START
            )
        );
        escrow.release(JOB);
        vm.warp(START + REVIEW - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowOpen.selector, uint64(START + REVIEW), START + REVIEW - 1
            )
        );
        escrow.release(JOB);
        vm.warp(START + REVIEW);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobReleased(JOB, bob, PRICE, carol);
        vm.prank(carol); // anyone, e.g. the seller's keeper
        escrow.release(JOB);
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid");
        assertFinal(JobEscrow.State.Released);
    }

    function test_release_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        escrow.release(JOB);
        lockJob();
        vm.warp(DEADLINE + 1 days);
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        escrow.release(JOB); // never delivered: no release, however late
    }

    // ------------------------------------------------------------------ refund

    function test_refund_afterDeadline() public {
        lockJob();
        vm.warp(DEADLINE);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DeadlineNotPassed.selector, DEADLINE, DEADLINE)
        );
        escrow.refund(JOB);
        vm.warp(DEADLINE + 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobRefunded(JOB, alice, PRICE);
        vm.prank(carol); // anyone; the money goes to the buyer
        escrow.refund(JOB);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "buyer whole");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Refunded);
        vm.assertEq(token.balanceOf(bob), 0, "seller got nothing");
    }

    function test_refund_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        escrow.refund(JOB);
        lockJob();
        deliverJob();
        vm.warp(DEADLINE + 1);
        vm.expectRevert(invalidState(JobEscrow.State.Delivered));
        escrow.refund(JOB); // delivered in time: the buyer cannot take the money back
    }

    // ------------------------------------------------------------------ disputes

    function test_dispute_andResolve() public {
        lockJob();
        deliverJob();
        vm.warp(START + REVIEW - 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobDisputed(JOB, alice, keccak256("wrong city"));
        vm.prank(alice);
        escrow.dispute(JOB, keccak256("wrong city"));
        vm.assertEq(state(), uint256(JobEscrow.State.Disputed), "disputed");

        // Frozen while disputed: no release, no accept, no refund.
        vm.warp(START + 1 days);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        escrow.release(JOB);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        vm.prank(alice);
        escrow.accept(JOB);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        escrow.refund(JOB);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));

        vm.expectEmit(true, false, false, true, address(escrow));
        emit JobEscrow.JobResolved(JOB, 1 * UNIT, 2 * UNIT);
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, 1 * UNIT);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - 2 * UNIT, "buyer got 1 back");
        vm.assertEq(token.balanceOf(bob), 2 * UNIT, "seller got 2");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Resolved);
    }

    function test_resolve_allToOneSide() public {
        lockJob();
        deliverJob();
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, PRICE);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "all back to buyer");

        bytes32 job2 = keccak256("job-2");
        vm.prank(alice);
        escrow.lock(job2, bob, PRICE, DEADLINE, REVIEW);
        vm.prank(bob);
        escrow.deliver(job2, RESULT);
        vm.prank(alice);
        escrow.dispute(job2, bytes32(0));
        vm.prank(arbiter);
        escrow.resolveDispute(job2, 0);
        vm.assertEq(token.balanceOf(bob), PRICE, "all to seller");
    }

    function test_dispute_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        lockJob();
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        deliverJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotBuyer.selector, bob));
        vm.prank(bob);
        escrow.dispute(JOB, bytes32(0));
        vm.warp(START + REVIEW);
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowClosed.selector, uint64(START + REVIEW), START + REVIEW
            )
        );
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
    }

    function test_resolve_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotArbiter.selector, alice));
        vm.prank(alice);
        escrow.resolveDispute(JOB, 0);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, JOB));
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, 0);
        lockJob();
        deliverJob();
        vm.expectRevert(invalidState(JobEscrow.State.Delivered));
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, 0);
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.InvalidSplit.selector, PRICE + 1, PRICE));
        vm.prank(arbiter);
        escrow.resolveDispute(JOB, PRICE + 1);
    }

    // ------------------------------------------------------------------ zero review window

    function test_zeroReviewWindow_releasesAtDelivery() public {
        vm.prank(alice);
        escrow.lock(JOB, bob, PRICE, DEADLINE, 0);
        deliverJob();
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.ReviewWindowClosed.selector, uint64(START), START)
        );
        vm.prank(alice);
        escrow.dispute(JOB, bytes32(0));
        escrow.release(JOB);
        vm.assertEq(token.balanceOf(bob), PRICE, "paid");
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever the timing, exactly one side is paid, exactly once, and the escrow ends empty.
    function testFuzz_exactlyOnePayout(
        uint32 deliverAt,
        uint32 actAt,
        bool delivers,
        bool buyerAccepts
    ) public {
        lockJob();
        uint256 tDeliver = START + uint256(deliverAt) % 2 hours;
        vm.warp(tDeliver);
        bool delivered = delivers && tDeliver <= DEADLINE;
        if (delivered) deliverJob();
        uint256 tAct = tDeliver + uint256(actAt) % 2 hours;
        vm.warp(tAct);
        if (delivered) {
            if (buyerAccepts) {
                vm.prank(alice);
                escrow.accept(JOB);
            } else if (tAct >= tDeliver + REVIEW) {
                escrow.release(JOB);
            } else {
                vm.warp(tDeliver + REVIEW);
                escrow.release(JOB);
            }
        } else {
            if (tAct <= DEADLINE) vm.warp(DEADLINE + 1);
            escrow.refund(JOB);
        }
        // Try everything else; nothing may move money again.
        vm.prank(alice);
        try escrow.accept(JOB) {
            revert("accept after settlement");
        } catch {}
        try escrow.release(JOB) {
            revert("release after settlement");
        } catch {}
        try escrow.refund(JOB) {
            revert("refund after settlement");
        } catch {}
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        vm.assertEq(token.balanceOf(bob) + token.balanceOf(alice), 100 * UNIT, "conserved");
        vm.assertEq(token.balanceOf(bob), delivered ? PRICE : 0, "right side paid");
    }
}
