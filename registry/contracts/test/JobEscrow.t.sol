// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {JobEscrow} from "../src/JobEscrow.sol";

contract JobEscrowTest is TestBase {
    Stablecoin internal token;
    JobEscrow internal escrow;

    address internal arbiter = address(0xA4B);
    address internal arbiter2 = address(0xA4C);
    bytes32 internal constant JOB = keccak256("job-1");
    bytes32 internal constant RESULT = keccak256("forecast: sunny");
    uint256 internal constant PRICE = 3 * UNIT;
    uint64 internal constant DEADLINE = uint64(START + 1 hours);
    uint32 internal constant REVIEW = 10 minutes;
    uint64 internal constant RULING = 3 days;

    /// alice's escrow for JOB.
    bytes32 internal id;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, arbiter, governor, RULING);
        token.transfer(alice, 100 * UNIT);
        vm.prank(alice);
        token.approve(address(escrow), type(uint256).max);
        id = keccak256(abi.encode(alice, JOB));
    }

    // ------------------------------------------------------------------ helpers

    function lockJob() internal {
        vm.prank(alice);
        vm.assertEq(escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW), id, "escrow id");
    }

    function disputeJob() internal {
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
    }

    function deliverJob() internal {
        vm.prank(bob);
        escrow.deliver(id, RESULT);
    }

    function state() internal view returns (uint256) {
        return uint256(escrow.stateOf(id));
    }

    function invalidState(JobEscrow.State current) internal view returns (bytes memory) {
        return abi.encodeWithSelector(JobEscrow.InvalidState.selector, id, current);
    }

    /// Every forbidden move from a final state reverts with InvalidState.
    function assertFinal(JobEscrow.State s) internal {
        bytes memory err = invalidState(s);
        vm.expectRevert(err);
        vm.prank(bob);
        escrow.deliver(id, RESULT);
        vm.expectRevert(err);
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(err);
        escrow.release(id);
        vm.expectRevert(err);
        escrow.refund(id);
        vm.expectRevert(err);
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        vm.expectRevert(err);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0);
        vm.expectRevert(err);
        escrow.settleExpiredDispute(id);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.JobExists.selector, id));
        vm.prank(alice);
        escrow.lock(JOB, bob, PRICE, DEADLINE, REVIEW);
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor() public {
        vm.assertEq(address(escrow.token()), address(token), "token");
        vm.assertEq(escrow.arbiter(), arbiter, "arbiter");
        vm.assertEq(escrow.governor(), governor, "governor");
        vm.assertEq(escrow.pendingGovernor(), address(0), "no pending governor");
        vm.assertEq(uint256(escrow.disputeWindow()), RULING, "dispute window");

        address next = vm.computeCreateAddress(address(this), vm.getNonce(address(this)));
        vm.expectEmit(true, true, false, true, next);
        emit JobEscrow.ArbiterChanged(address(0), arbiter);
        vm.expectEmit(true, true, false, true, next);
        emit JobEscrow.GovernorChanged(address(0), governor);
        new JobEscrow(token, arbiter, governor, 1);
    }

    function test_constructor_reverts() public {
        vm.expectRevert(JobEscrow.InvalidArbiter.selector);
        new JobEscrow(token, address(0), governor, RULING);
        vm.expectRevert(JobEscrow.InvalidGovernor.selector);
        new JobEscrow(token, arbiter, address(0), RULING);
        vm.expectRevert(JobEscrow.InvalidDisputeWindow.selector);
        new JobEscrow(token, arbiter, governor, 0);
    }

    // ------------------------------------------------------------------ escrow ids

    function test_escrowIdOf() public view {
        vm.assertEq(escrow.escrowIdOf(alice, JOB), keccak256(abi.encode(alice, JOB)), "formula");
        vm.assertTrue(escrow.escrowIdOf(carol, JOB) != id, "per buyer");
        vm.assertTrue(escrow.escrowIdOf(alice, keccak256("job-2")) != id, "per job");
    }

    /// Mallory front-runs alice's lock with a 1-unit lock under the same job id: she gets her
    /// own escrow, alice's escrow id still reads None (so an idempotent client does not think
    /// it paid), and alice's lock goes through.
    function test_lock_jobIdSquattingDoesNotBlockBuyer() public {
        token.transfer(mallory, 1);
        vm.prank(mallory);
        token.approve(address(escrow), 1);
        bytes32 squat = keccak256(abi.encode(mallory, JOB));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit JobEscrow.JobLocked(squat, mallory, bob, JOB, 1, DEADLINE, REVIEW);
        vm.prank(mallory);
        vm.assertEq(escrow.lock(JOB, bob, 1, DEADLINE, REVIEW), squat, "squatter's id");
        vm.assertTrue(squat != id, "different escrow");
        vm.assertEq(state(), uint256(JobEscrow.State.None), "alice has not paid");

        lockJob();
        JobEscrow.Job memory job = escrow.getJob(id);
        vm.assertEq(job.buyer, alice, "alice's escrow");
        vm.assertEq(job.amount, PRICE, "alice's amount");
        vm.assertEq(escrow.getJob(squat).buyer, mallory, "mallory's escrow untouched");
        vm.assertEq(token.balanceOf(address(escrow)), PRICE + 1, "both held");

        // Each escrow settles on its own.
        deliverJob();
        vm.prank(alice);
        escrow.accept(id);
        vm.assertEq(uint256(escrow.stateOf(squat)), uint256(JobEscrow.State.Locked), "squat");
        vm.warp(DEADLINE + 1);
        escrow.refund(squat);
        vm.assertEq(token.balanceOf(mallory), 1, "squatter refunded");
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid by alice");
    }

    // ------------------------------------------------------------------ lock

    function test_lock() public {
        vm.expectEmit(true, true, true, true, address(escrow));
        emit JobEscrow.JobLocked(id, alice, bob, JOB, PRICE, DEADLINE, REVIEW);
        lockJob();
        JobEscrow.Job memory job = escrow.getJob(id);
        vm.assertEq(job.buyer, alice, "buyer");
        vm.assertEq(job.seller, bob, "seller");
        vm.assertEq(job.amount, PRICE, "amount");
        vm.assertEq(uint256(job.deadline), DEADLINE, "deadline");
        vm.assertEq(uint256(job.reviewWindow), REVIEW, "review");
        vm.assertEq(uint256(job.releaseAfter), 0, "not delivered");
        vm.assertEq(uint256(job.disputeDeadline), 0, "not disputed");
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
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.JobExists.selector, id));
        escrow.lock(JOB, carol, PRICE, DEADLINE, REVIEW);
        vm.stopPrank();
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
        bytes32 carolsId = keccak256(abi.encode(carol, JOB));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit JobEscrow.JobLocked(carolsId, carol, bob, JOB, PRICE, DEADLINE, REVIEW);
        vm.prank(carol);
        bytes32 got =
            escrow.lockWithPermit(JOB, bob, PRICE, DEADLINE, REVIEW, START + 5 minutes, v, r, s);
        vm.assertEq(got, carolsId, "escrow id");
        vm.assertEq(uint256(escrow.stateOf(got)), uint256(JobEscrow.State.Locked), "locked");
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
        emit JobEscrow.JobDelivered(id, bob, RESULT, DEADLINE + REVIEW);
        deliverJob();
        JobEscrow.Job memory job = escrow.getJob(id);
        vm.assertEq(job.resultHash, RESULT, "result");
        vm.assertEq(uint256(job.releaseAfter), DEADLINE + REVIEW, "releaseAfter");
        vm.assertEq(state(), uint256(JobEscrow.State.Delivered), "delivered");
    }

    function test_deliver_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        deliverJob();
        lockJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotSeller.selector, alice));
        vm.prank(alice);
        escrow.deliver(id, RESULT);
        vm.expectRevert(JobEscrow.EmptyResultHash.selector);
        vm.prank(bob);
        escrow.deliver(id, bytes32(0));
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
        emit JobEscrow.JobReleased(id, bob, PRICE, alice);
        vm.prank(alice);
        escrow.accept(id);
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Released);
        vm.assertEq(token.balanceOf(bob), PRICE, "paid exactly once");
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - PRICE, "buyer took nothing back");
    }

    function test_accept_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        vm.prank(alice);
        escrow.accept(id);
        lockJob();
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        vm.prank(alice);
        escrow.accept(id);
        deliverJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotBuyer.selector, bob));
        vm.prank(bob);
        escrow.accept(id);
    }

    function test_release_afterReviewWindow() public {
        lockJob();
        deliverJob();
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowOpen.selector, uint64(START + REVIEW), START
            )
        );
        escrow.release(id);
        vm.warp(START + REVIEW - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowOpen.selector, uint64(START + REVIEW), START + REVIEW - 1
            )
        );
        escrow.release(id);
        vm.warp(START + REVIEW);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobReleased(id, bob, PRICE, carol);
        vm.prank(carol); // anyone, e.g. the seller's keeper
        escrow.release(id);
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid");
        assertFinal(JobEscrow.State.Released);
    }

    function test_release_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        escrow.release(id);
        lockJob();
        vm.warp(DEADLINE + 1 days);
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        escrow.release(id); // never delivered: no release, however late
    }

    // ------------------------------------------------------------------ refund

    function test_refund_afterDeadline() public {
        lockJob();
        vm.warp(DEADLINE);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DeadlineNotPassed.selector, DEADLINE, DEADLINE)
        );
        escrow.refund(id);
        vm.warp(DEADLINE + 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobRefunded(id, alice, PRICE);
        vm.prank(carol); // anyone; the money goes to the buyer
        escrow.refund(id);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "buyer whole");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Refunded);
        vm.assertEq(token.balanceOf(bob), 0, "seller got nothing");
    }

    function test_refund_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        escrow.refund(id);
        lockJob();
        deliverJob();
        vm.warp(DEADLINE + 1);
        vm.expectRevert(invalidState(JobEscrow.State.Delivered));
        escrow.refund(id); // delivered in time: the buyer cannot take the money back
    }

    // ------------------------------------------------------------------ disputes

    function test_dispute_andResolve() public {
        lockJob();
        deliverJob();
        vm.warp(START + REVIEW - 1);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobDisputed(
            id, alice, keccak256("wrong city"), uint64(START + REVIEW - 1 + RULING)
        );
        vm.prank(alice);
        escrow.dispute(id, keccak256("wrong city"));
        vm.assertEq(state(), uint256(JobEscrow.State.Disputed), "disputed");
        vm.assertEq(
            uint256(escrow.getJob(id).disputeDeadline), START + REVIEW - 1 + RULING, "ruling by"
        );

        // Frozen while disputed: no release, no accept, no refund.
        vm.warp(START + 1 days);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        escrow.release(id);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        vm.prank(alice);
        escrow.accept(id);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        escrow.refund(id);
        vm.expectRevert(invalidState(JobEscrow.State.Disputed));
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));

        vm.expectEmit(true, false, false, true, address(escrow));
        emit JobEscrow.JobResolved(id, 1 * UNIT, 2 * UNIT, arbiter, false);
        vm.prank(arbiter);
        escrow.resolveDispute(id, 1 * UNIT);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - 2 * UNIT, "buyer got 1 back");
        vm.assertEq(token.balanceOf(bob), 2 * UNIT, "seller got 2");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Resolved);
    }

    function test_resolve_allToOneSide() public {
        lockJob();
        deliverJob();
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        vm.prank(arbiter);
        escrow.resolveDispute(id, PRICE);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "all back to buyer");

        vm.prank(alice);
        bytes32 job2 = escrow.lock(keccak256("job-2"), bob, PRICE, DEADLINE, REVIEW);
        vm.prank(bob);
        escrow.deliver(job2, RESULT);
        vm.prank(alice);
        escrow.dispute(job2, bytes32(0));
        vm.prank(arbiter);
        escrow.resolveDispute(job2, 0);
        vm.assertEq(token.balanceOf(bob), PRICE, "all to seller");
    }

    function test_dispute_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        lockJob();
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        deliverJob();
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotBuyer.selector, bob));
        vm.prank(bob);
        escrow.dispute(id, bytes32(0));
        vm.warp(START + REVIEW);
        vm.expectRevert(
            abi.encodeWithSelector(
                JobEscrow.ReviewWindowClosed.selector, uint64(START + REVIEW), START + REVIEW
            )
        );
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
    }

    function test_resolve_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotArbiter.selector, alice));
        vm.prank(alice);
        escrow.resolveDispute(id, 0);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0);
        lockJob();
        deliverJob();
        vm.expectRevert(invalidState(JobEscrow.State.Delivered));
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0);
        vm.prank(alice);
        escrow.dispute(id, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.InvalidSplit.selector, PRICE + 1, PRICE));
        vm.prank(arbiter);
        escrow.resolveDispute(id, PRICE + 1);
    }

    // ------------------------------------------------------------------ dispute deadline

    /// The arbiter may rule up to and including the dispute deadline; after it, anyone settles
    /// by the default rule (the seller, who delivered in time, is paid in full).
    function test_dispute_timesOutToSeller() public {
        lockJob();
        deliverJob();
        vm.warp(START + 60);
        disputeJob();
        uint64 ruleBy = uint64(START + 60 + RULING);
        vm.warp(ruleBy);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DisputeWindowOpen.selector, ruleBy, ruleBy)
        );
        escrow.settleExpiredDispute(id);

        vm.warp(ruleBy + 1);
        vm.expectRevert(
            abi.encodeWithSelector(JobEscrow.DisputeWindowClosed.selector, ruleBy, ruleBy + 1)
        );
        vm.prank(arbiter);
        escrow.resolveDispute(id, PRICE);

        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobResolved(id, 0, PRICE, carol, true);
        vm.prank(carol); // anyone, e.g. the seller's keeper
        escrow.settleExpiredDispute(id);
        vm.assertEq(state(), uint256(JobEscrow.State.Resolved), "resolved");
        vm.assertEq(token.balanceOf(bob), PRICE, "seller paid in full");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertFinal(JobEscrow.State.Resolved);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - PRICE, "buyer took nothing back");
    }

    function test_resolve_atDisputeDeadline() public {
        lockJob();
        deliverJob();
        disputeJob();
        vm.warp(START + RULING); // inclusive
        vm.prank(arbiter);
        escrow.resolveDispute(id, PRICE);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "refunded by ruling");
        vm.expectRevert(invalidState(JobEscrow.State.Resolved));
        escrow.settleExpiredDispute(id);
    }

    function test_settleExpiredDispute_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.UnknownJob.selector, id));
        escrow.settleExpiredDispute(id);
        lockJob();
        vm.warp(START + RULING + 1);
        vm.expectRevert(invalidState(JobEscrow.State.Locked));
        escrow.settleExpiredDispute(id);
    }

    // ------------------------------------------------------------------ governance

    /// The governor replaces an absent arbiter; the new one rules on disputes already open,
    /// whose deadlines do not move, and the old one no longer can.
    function test_setArbiter_rotatesForOpenDisputes() public {
        lockJob();
        deliverJob();
        disputeJob();
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.ArbiterChanged(arbiter, arbiter2);
        vm.prank(governor);
        escrow.setArbiter(arbiter2);
        vm.assertEq(escrow.arbiter(), arbiter2, "rotated");
        vm.assertEq(uint256(escrow.getJob(id).disputeDeadline), START + RULING, "deadline kept");

        vm.warp(START + RULING);
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotArbiter.selector, arbiter));
        vm.prank(arbiter);
        escrow.resolveDispute(id, 0);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.JobResolved(id, PRICE, 0, arbiter2, false);
        vm.prank(arbiter2);
        escrow.resolveDispute(id, PRICE);
        vm.assertEq(token.balanceOf(alice), 100 * UNIT, "buyer refunded by new arbiter");
    }

    function test_setArbiter_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotGovernor.selector, arbiter));
        vm.prank(arbiter);
        escrow.setArbiter(arbiter2);
        vm.expectRevert(JobEscrow.InvalidArbiter.selector);
        vm.prank(governor);
        escrow.setArbiter(address(0));
        vm.assertEq(escrow.arbiter(), arbiter, "unchanged");
    }

    function test_transferGovernance() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotGovernor.selector, mallory));
        vm.prank(mallory);
        escrow.transferGovernance(mallory);
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.GovernanceTransferStarted(governor, carol);
        vm.prank(governor);
        escrow.transferGovernance(carol);
        vm.assertEq(escrow.pendingGovernor(), carol, "pending");
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotPendingGovernor.selector, mallory));
        vm.prank(mallory);
        escrow.acceptGovernance();
        vm.expectEmit(true, true, false, true, address(escrow));
        emit JobEscrow.GovernorChanged(governor, carol);
        vm.prank(carol);
        escrow.acceptGovernance();
        vm.assertEq(escrow.governor(), carol, "new governor");
        vm.assertEq(escrow.pendingGovernor(), address(0), "cleared");
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotGovernor.selector, governor));
        vm.prank(governor);
        escrow.setArbiter(arbiter2);
        vm.prank(carol);
        escrow.setArbiter(arbiter2);
        vm.assertEq(escrow.arbiter(), arbiter2, "new governor rotates");
    }

    function test_acceptGovernance_revertsWithoutProposal() public {
        vm.expectRevert(abi.encodeWithSelector(JobEscrow.NotPendingGovernor.selector, address(0)));
        vm.prank(address(0));
        escrow.acceptGovernance();
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
        escrow.dispute(id, bytes32(0));
        escrow.release(id);
        vm.assertEq(token.balanceOf(bob), PRICE, "paid");
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever the timing and the path (accept, release, refund, dispute then ruling or
    /// timeout), the payment leaves exactly once, split as the path says, the escrow ends
    /// empty, and no call succeeds after settlement.
    function testFuzz_exactlyOnePayout(
        uint32 deliverAt,
        uint32 actAt,
        bool delivers,
        uint8 path,
        uint64 toBuyer
    ) public {
        lockJob();
        uint256 tDeliver = START + uint256(deliverAt) % 2 hours;
        vm.warp(tDeliver);
        bool delivered = delivers && tDeliver <= DEADLINE;
        if (delivered) deliverJob();
        uint256 tAct = tDeliver + uint256(actAt) % 2 hours;
        vm.warp(tAct);
        uint256 toSeller;
        if (!delivered) {
            if (tAct <= DEADLINE) vm.warp(DEADLINE + 1);
            escrow.refund(id);
        } else if (path % 4 == 0) {
            vm.prank(alice);
            escrow.accept(id);
            toSeller = PRICE;
        } else if (path % 4 == 1) {
            if (tAct < tDeliver + REVIEW) vm.warp(tDeliver + REVIEW);
            escrow.release(id);
            toSeller = PRICE;
        } else {
            if (tAct >= tDeliver + REVIEW) vm.warp(tDeliver + REVIEW - 1);
            disputeJob();
            if (path % 4 == 2) {
                vm.warp(block.timestamp + uint256(actAt) % (RULING + 1));
                uint256 split = uint256(toBuyer) % (PRICE + 1);
                vm.prank(arbiter);
                escrow.resolveDispute(id, split);
                toSeller = PRICE - split;
            } else {
                vm.warp(block.timestamp + RULING + 1 + uint256(actAt) % 30 days);
                escrow.settleExpiredDispute(id);
                toSeller = PRICE;
            }
        }
        assertNothingSucceeds(id, JOB, alice, bob);
        vm.assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        vm.assertEq(token.balanceOf(bob) + token.balanceOf(alice), 100 * UNIT, "conserved");
        vm.assertEq(token.balanceOf(bob), toSeller, "seller's share");
    }

    /// After settlement every call on the escrow fails, whoever makes it, whenever.
    function assertNothingSucceeds(bytes32 escrowId, bytes32 jobId, address buyer, address seller)
        internal
    {
        vm.prank(seller);
        try escrow.deliver(escrowId, RESULT) {
            revert("deliver after settlement");
        } catch {}
        vm.prank(buyer);
        try escrow.accept(escrowId) {
            revert("accept after settlement");
        } catch {}
        try escrow.release(escrowId) {
            revert("release after settlement");
        } catch {}
        try escrow.refund(escrowId) {
            revert("refund after settlement");
        } catch {}
        vm.prank(buyer);
        try escrow.dispute(escrowId, bytes32(0)) {
            revert("dispute after settlement");
        } catch {}
        vm.prank(escrow.arbiter());
        try escrow.resolveDispute(escrowId, 0) {
            revert("resolve after settlement");
        } catch {}
        try escrow.settleExpiredDispute(escrowId) {
            revert("settle after settlement");
        } catch {}
        vm.prank(buyer);
        try escrow.lock(jobId, seller, 1, uint64(block.timestamp + 1), 0) {
            revert("lock again after settlement");
        } catch {}
    }
}
