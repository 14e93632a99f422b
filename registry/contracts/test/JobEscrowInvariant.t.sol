// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Vm} from "./utils/Vm.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {JobEscrow} from "../src/JobEscrow.sol";

/// @notice Drives one escrow through random sequences of every call, by several buyers that
///         reuse each other's job ids, against a reference model of when each call may
///         succeed. Any disagreement is recorded in `violation` (the handler never reverts, so
///         the invariant runner keeps going and the invariants report it).
contract EscrowHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant UNIT = 1e6;

    Stablecoin internal immutable token;
    JobEscrow internal immutable escrow;
    address internal immutable governor;

    address[3] internal buyers = [address(0xB1), address(0xB2), address(0xB3)];
    address[2] internal sellers = [address(0x51), address(0x52)];
    address[2] internal arbiters = [address(0xA1), address(0xA2)];

    /// The escrow ids created so far, and each one's job id.
    bytes32[] public ids;
    mapping(bytes32 escrowId => bytes32) internal jobIdOf;

    /// The time the next call runs at (warps do not carry over between invariant calls).
    uint256 public now_;

    /// The first disagreement with the model ("" while there is none).
    string public violation;

    /// How often each kind of call succeeded, so the run shows every path was taken.
    mapping(bytes4 selector => uint256) public successes;

    constructor(Stablecoin token_, JobEscrow escrow_, address governor_, uint256 start) {
        token = token_;
        escrow = escrow_;
        governor = governor_;
        now_ = start;
    }

    function buyerCount() external pure returns (uint256) {
        return 3;
    }

    function buyer(uint256 i) external view returns (address) {
        return buyers[i];
    }

    function seller(uint256 i) external view returns (address) {
        return sellers[i];
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    // ------------------------------------------------------------------ actions

    function warp(uint32 seconds_) external {
        now_ += uint256(seconds_) % 4 hours;
    }

    function lock(uint8 who, uint8 jobSeed, uint8 toSeller, uint32 amount, uint32 due, uint32 rw)
        external
    {
        vm.warp(now_);
        address b = buyers[who % 3];
        bytes32 jobId = bytes32(uint256(jobSeed % 8)); // few ids: buyers reuse each other's
        bytes32 expected = keccak256(abi.encode(b, jobId));
        bool existed = escrow.stateOf(expected) != JobEscrow.State.None;
        uint256 value = 1 + uint256(amount) % (50 * UNIT);
        uint64 deadline = uint64(now_ + 1 + uint256(due) % 12 hours);
        uint32 review = uint32(uint256(rw) % 6 hours);
        vm.prank(b);
        try escrow.lock(jobId, sellers[toSeller % 2], value, deadline, review) returns (
            bytes32 got
        ) {
            if (existed) _violate("lock reused an escrow");
            if (got != expected) _violate("lock returned a wrong escrow id");
            ids.push(got);
            jobIdOf[got] = jobId;
            successes[escrow.lock.selector]++;
        } catch {
            if (!existed) _violate("lock of a fresh job id failed");
        }
    }

    function deliver(uint256 idx, bytes32 result) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Locked);
        if (!ok) return;
        result = keccak256(abi.encode(result)); // never zero in practice
        bool allowed = j.state == JobEscrow.State.Locked && now_ <= j.deadline;
        vm.prank(j.seller);
        try escrow.deliver(id, result) {
            _expect(allowed, "deliver");
            successes[escrow.deliver.selector]++;
        } catch {
            _expectNot(allowed, "deliver");
        }
    }

    function accept(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Delivered);
        if (!ok) return;
        bool allowed = j.state == JobEscrow.State.Delivered;
        (uint256 b0, uint256 s0) = _balances(j);
        vm.prank(j.buyer);
        try escrow.accept(id) {
            _expect(allowed, "accept");
            _paid(j, b0, s0, 0, j.amount);
            successes[escrow.accept.selector]++;
        } catch {
            _expectNot(allowed, "accept");
        }
    }

    function release(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Delivered);
        if (!ok) return;
        bool allowed = j.state == JobEscrow.State.Delivered && now_ >= j.releaseAfter;
        (uint256 b0, uint256 s0) = _balances(j);
        try escrow.release(id) {
            _expect(allowed, "release");
            _paid(j, b0, s0, 0, j.amount);
            successes[escrow.release.selector]++;
        } catch {
            _expectNot(allowed, "release");
        }
    }

    function refund(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Locked);
        if (!ok) return;
        bool allowed = j.state == JobEscrow.State.Locked && now_ > j.deadline;
        (uint256 b0, uint256 s0) = _balances(j);
        try escrow.refund(id) {
            _expect(allowed, "refund");
            _paid(j, b0, s0, j.amount, 0);
            successes[escrow.refund.selector]++;
        } catch {
            _expectNot(allowed, "refund");
        }
    }

    function dispute(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Delivered);
        if (!ok) return;
        bool allowed = j.state == JobEscrow.State.Delivered && now_ < j.releaseAfter;
        vm.prank(j.buyer);
        try escrow.dispute(id, bytes32(idx)) {
            _expect(allowed, "dispute");
            successes[escrow.dispute.selector]++;
        } catch {
            _expectNot(allowed, "dispute");
        }
    }

    function resolve(uint256 idx, uint256 toBuyer) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Disputed);
        // The arbiter never looks at a third of the escrows, so that their disputes time out.
        if (!ok || uint256(id) % 3 == 0) return;
        toBuyer %= j.amount + 1;
        bool allowed = j.state == JobEscrow.State.Disputed && now_ <= j.disputeDeadline;
        (uint256 b0, uint256 s0) = _balances(j);
        vm.prank(escrow.arbiter());
        try escrow.resolveDispute(id, toBuyer) {
            _expect(allowed, "resolveDispute");
            _paid(j, b0, s0, toBuyer, j.amount - toBuyer);
            successes[escrow.resolveDispute.selector]++;
        } catch {
            _expectNot(allowed, "resolveDispute");
        }
    }

    function settleExpired(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Disputed);
        if (!ok) return;
        bool allowed = j.state == JobEscrow.State.Disputed && now_ > j.disputeDeadline;
        (uint256 b0, uint256 s0) = _balances(j);
        try escrow.settleExpiredDispute(id) {
            _expect(allowed, "settleExpiredDispute");
            _paid(j, b0, s0, 0, j.amount);
            successes[escrow.settleExpiredDispute.selector]++;
        } catch {
            _expectNot(allowed, "settleExpiredDispute");
        }
    }

    function rotateArbiter(uint8 which) external {
        vm.prank(governor);
        escrow.setArbiter(arbiters[which % 2]);
    }

    /// Tries every call, each by the party entitled to it, on a settled escrow: all must fail.
    function pokeSettled(uint256 idx) external {
        (bool ok, bytes32 id, JobEscrow.Job memory j) = _pick(idx, JobEscrow.State.Released);
        if (!ok) return;
        if (
            j.state != JobEscrow.State.Released && j.state != JobEscrow.State.Refunded
                && j.state != JobEscrow.State.Resolved
        ) return;
        successes[this.pokeSettled.selector]++;
        vm.prank(j.seller);
        try escrow.deliver(id, bytes32(uint256(1))) {
            _violate("deliver after settlement");
        } catch {}
        vm.prank(j.buyer);
        try escrow.accept(id) {
            _violate("accept after settlement");
        } catch {}
        try escrow.release(id) {
            _violate("release after settlement");
        } catch {}
        try escrow.refund(id) {
            _violate("refund after settlement");
        } catch {}
        vm.prank(j.buyer);
        try escrow.dispute(id, bytes32(0)) {
            _violate("dispute after settlement");
        } catch {}
        vm.prank(escrow.arbiter());
        try escrow.resolveDispute(id, 0) {
            _violate("resolve after settlement");
        } catch {}
        try escrow.settleExpiredDispute(id) {
            _violate("settle after settlement");
        } catch {}
        vm.prank(j.buyer);
        try escrow.lock(jobIdOf[id], j.seller, 1, uint64(now_ + 1), 0) {
            _violate("lock again after settlement");
        } catch {}
    }

    // ------------------------------------------------------------------ helpers

    /// An escrow to act on: for an even `idx`, the first from `idx` on in state `want` (so
    /// that calls which need a state get to run), else the one at `idx`.
    function _pick(uint256 idx, JobEscrow.State want)
        internal
        returns (bool, bytes32, JobEscrow.Job memory j)
    {
        vm.warp(now_);
        uint256 n = ids.length;
        if (n == 0) return (false, bytes32(0), j);
        uint256 first = idx % n;
        bytes32 id = ids[first];
        if (idx % 2 == 0) {
            for (uint256 k; k < n; ++k) {
                bytes32 candidate = ids[(first + k) % n];
                JobEscrow.State st = escrow.stateOf(candidate);
                bool settled = st == JobEscrow.State.Released || st == JobEscrow.State.Refunded
                    || st == JobEscrow.State.Resolved;
                if (st == want || (want == JobEscrow.State.Released && settled)) {
                    id = candidate;
                    break;
                }
            }
        }
        return (true, id, escrow.getJob(id));
    }

    function _balances(JobEscrow.Job memory j) internal view returns (uint256, uint256) {
        return (token.balanceOf(j.buyer), token.balanceOf(j.seller));
    }

    function _paid(JobEscrow.Job memory j, uint256 b0, uint256 s0, uint256 toB, uint256 toS)
        internal
    {
        if (token.balanceOf(j.buyer) != b0 + toB) _violate("buyer paid the wrong amount");
        if (token.balanceOf(j.seller) != s0 + toS) _violate("seller paid the wrong amount");
    }

    function _expect(bool allowed, string memory what) internal {
        if (!allowed) _violate(string.concat(what, " succeeded where the model forbids it"));
    }

    function _expectNot(bool allowed, string memory what) internal {
        if (allowed) _violate(string.concat(what, " failed where the model allows it"));
    }

    function _violate(string memory what) internal {
        if (bytes(violation).length == 0) violation = what;
    }
}

contract JobEscrowInvariantTest is TestBase {
    Stablecoin internal token;
    JobEscrow internal escrow;
    EscrowHandler internal handler;
    uint256 internal total;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        escrow = new JobEscrow(token, address(0xA1), governor, 6 hours);
        handler = new EscrowHandler(token, escrow, governor, START);
        for (uint256 i; i < handler.buyerCount(); ++i) {
            address b = handler.buyer(i);
            token.transfer(b, 100_000 * UNIT);
            vm.prank(b);
            token.approve(address(escrow), type(uint256).max);
        }
        total = _tracked();
    }

    /// Only the handler is called.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// 1. The escrow holds exactly the amounts of its open (Locked, Delivered, Disputed)
    ///    escrows: every settlement paid out exactly what it held.
    /// 2. No money appears or disappears between buyers, sellers and the escrow.
    /// 3. Every call succeeded exactly when the model allows it, paid the right amounts, and
    ///    nothing succeeded on a settled escrow.
    function invariant_escrow() public view {
        uint256 open;
        uint256 n = handler.idCount();
        for (uint256 i; i < n; ++i) {
            JobEscrow.Job memory j = escrow.getJob(handler.ids(i));
            if (
                j.state == JobEscrow.State.Locked || j.state == JobEscrow.State.Delivered
                    || j.state == JobEscrow.State.Disputed
            ) open += j.amount;
        }
        vm.assertEq(token.balanceOf(address(escrow)), open, "escrow balance == open escrows");
        vm.assertEq(_tracked(), total, "conserved");
        vm.assertEq(handler.violation(), "", "model");
    }

    function _tracked() internal view returns (uint256 sum) {
        sum = token.balanceOf(address(escrow));
        for (uint256 i; i < handler.buyerCount(); ++i) {
            sum += token.balanceOf(handler.buyer(i));
        }
        sum += token.balanceOf(handler.seller(0)) + token.balanceOf(handler.seller(1));
    }
}
