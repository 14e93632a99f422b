// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";

/// @title JobEscrow
/// @notice Holds a buyer's stablecoin payment for one job until the seller delivers.
/// @dev Escrows are keyed by
///
///          escrowId = keccak256(abi.encode(buyer, jobId))
///
///      (`buyer` an address, `jobId` a bytes32, both ABI-encoded as 32-byte words; see
///      `escrowIdOf`). The job id is chosen by the buyer (e.g. derived from the signed
///      agreement), so it is only unique per buyer: another buyer locking the same job id gets
///      a different escrow and cannot block or fake this buyer's payment. `lock` returns the
///      escrow id and `JobLocked` carries it with the buyer and job id; every later call names
///      the escrow id. A buyer can use each of its job ids once, ever.
///
///      State machine of an escrow (every transition emits an event):
///
///      None ──lock──▶ Locked ──deliver (seller, at or before deadline)──▶ Delivered
///      Locked ──refund (anyone, after deadline)──▶ Refunded        [buyer paid back]
///      Delivered ──accept (buyer)──▶ Released                       [seller paid]
///      Delivered ──release (anyone, from releaseAfter on)──▶ Released [seller paid]
///      Delivered ──dispute (buyer, before releaseAfter)──▶ Disputed
///      Disputed ──resolveDispute (arbiter, until disputeDeadline)──▶ Resolved [split as ruled]
///      Disputed ──settleExpiredDispute (anyone, after disputeDeadline)──▶ Resolved [seller paid]
///
///      `releaseAfter = delivery time + reviewWindow`; `disputeDeadline = dispute time +
///      disputeWindow`. The time windows do not overlap (deliver: t <= deadline, refund:
///      t > deadline; dispute: t < releaseAfter, release: t >= releaseAfter; ruling:
///      t <= disputeDeadline, default settlement: t > disputeDeadline), and Released, Refunded
///      and Resolved are final, so an escrow pays out exactly once and neither side can take
///      both.
///
///      Default rule when the arbiter does not rule in time: the seller is paid in full. The
///      seller delivered by the deadline, which is all the escrow itself can check, and
///      without the dispute the payment would have been released. Any other default would
///      let a buyer keep a delivered result and claw money back by disputing and hoping the
///      arbiter stays silent; a dispute only buys the buyer `disputeWindow` seconds of the
///      arbiter's attention. The governor guards against an absent arbiter by rotating it
///      (`setArbiter`, effective at once and for open disputes too, whose deadlines stay).
contract JobEscrow {
    /// @notice Where an escrow stands.
    enum State {
        None,
        Locked,
        Delivered,
        Released,
        Refunded,
        Disputed,
        Resolved
    }

    /// @notice One escrow.
    /// @param buyer Who locked the payment.
    /// @param deadline Last timestamp (inclusive) at which the seller may deliver.
    /// @param state Where the escrow stands.
    /// @param seller Who is paid on release.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    /// @param releaseAfter From this timestamp on anyone may release (0 before delivery).
    /// @param amount Stablecoin base units held.
    /// @param resultHash Hash of the delivered result (0 before delivery).
    /// @param disputeDeadline Last timestamp (inclusive) at which the arbiter may rule; after
    ///        it anyone may settle by the default rule (0 unless disputed).
    struct Job {
        address buyer;
        uint64 deadline;
        State state;
        address seller;
        uint32 reviewWindow;
        uint64 releaseAfter;
        uint256 amount;
        bytes32 resultHash;
        uint64 disputeDeadline;
    }

    /// @notice The token payments are held in.
    Stablecoin public immutable token;

    /// @notice Seconds the arbiter has to rule on a dispute, counted from the dispute.
    uint64 public immutable disputeWindow;

    /// @notice Who rules on disputed escrows; the governor may replace it.
    address public arbiter;

    /// @notice Who may replace the arbiter.
    address public governor;

    /// @notice Proposed next governor; becomes governor by calling `acceptGovernance`.
    address public pendingGovernor;

    mapping(bytes32 escrowId => Job) private _jobs;

    /// @notice `buyer` locked `amount` for its job `jobId`, kept under `escrowId`.
    event JobLocked(
        bytes32 indexed escrowId,
        address indexed buyer,
        address indexed seller,
        bytes32 jobId,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    );

    /// @notice The seller delivered; anyone may release from `releaseAfter` on.
    event JobDelivered(
        bytes32 indexed escrowId, address indexed seller, bytes32 resultHash, uint64 releaseAfter
    );

    /// @notice The payment went to the seller; `by` is the buyer (accept) or anyone (release).
    event JobReleased(bytes32 indexed escrowId, address indexed seller, uint256 amount, address by);

    /// @notice The payment went back to the buyer after a missed deadline.
    event JobRefunded(bytes32 indexed escrowId, address indexed buyer, uint256 amount);

    /// @notice The buyer disputed the delivery; the arbiter may rule until `disputeDeadline`.
    event JobDisputed(
        bytes32 indexed escrowId, address indexed buyer, bytes32 reasonHash, uint64 disputeDeadline
    );

    /// @notice A dispute was settled: by the arbiter `by` as ruled (`byDefault` false), or,
    ///         after the dispute deadline, by `by` (anyone) paying the seller in full
    ///         (`byDefault` true).
    event JobResolved(
        bytes32 indexed escrowId,
        uint256 toBuyer,
        uint256 toSeller,
        address indexed by,
        bool byDefault
    );

    /// @notice The arbiter changed.
    event ArbiterChanged(address indexed previousArbiter, address indexed newArbiter);

    /// @notice The governor proposed `pendingGovernor` as its successor.
    event GovernanceTransferStarted(address indexed governor, address indexed pendingGovernor);

    /// @notice The governor changed.
    event GovernorChanged(address indexed previousGovernor, address indexed newGovernor);

    /// @notice The buyer used this job id before (the escrow exists).
    error JobExists(bytes32 escrowId);

    /// @notice No escrow has this id.
    error UnknownJob(bytes32 escrowId);

    /// @notice The escrow is in `current`, where this call is not allowed.
    error InvalidState(bytes32 escrowId, State current);

    /// @notice The seller must be a non-zero address other than the buyer.
    error InvalidSeller(address seller);

    /// @notice The amount must be positive.
    error ZeroAmount();

    /// @notice The delivery deadline must lie in the future.
    error DeadlineInPast(uint64 deadline, uint256 timestamp);

    /// @notice The delivery deadline has passed.
    error DeadlinePassed(uint64 deadline, uint256 timestamp);

    /// @notice The delivery deadline has not passed yet.
    error DeadlineNotPassed(uint64 deadline, uint256 timestamp);

    /// @notice The review window is open until `releaseAfter`.
    error ReviewWindowOpen(uint64 releaseAfter, uint256 timestamp);

    /// @notice The review window closed at `releaseAfter`.
    error ReviewWindowClosed(uint64 releaseAfter, uint256 timestamp);

    /// @notice The arbiter may still rule (until `disputeDeadline`, inclusive).
    error DisputeWindowOpen(uint64 disputeDeadline, uint256 timestamp);

    /// @notice The arbiter's time to rule ended at `disputeDeadline`.
    error DisputeWindowClosed(uint64 disputeDeadline, uint256 timestamp);

    /// @notice The result hash must not be zero.
    error EmptyResultHash();

    /// @notice Only the escrow's buyer may call this.
    error NotBuyer(address caller);

    /// @notice Only the escrow's seller may call this.
    error NotSeller(address caller);

    /// @notice Only the arbiter may call this.
    error NotArbiter(address caller);

    /// @notice Only the governor may call this.
    error NotGovernor(address caller);

    /// @notice Only the pending governor may accept governance.
    error NotPendingGovernor(address caller);

    /// @notice The buyer's share exceeds the amount held.
    error InvalidSplit(uint256 toBuyer, uint256 amount);

    /// @notice The arbiter cannot be the zero address.
    error InvalidArbiter();

    /// @notice The governor cannot be the zero address.
    error InvalidGovernor();

    /// @notice The dispute window must be positive.
    error InvalidDisputeWindow();

    /// @param token_ The stablecoin payments are held in.
    /// @param arbiter_ Who rules on disputed escrows (not zero).
    /// @param governor_ Who may replace the arbiter (not zero; two-step transferable).
    /// @param disputeWindow_ Seconds the arbiter has to rule on a dispute (positive).
    constructor(Stablecoin token_, address arbiter_, address governor_, uint64 disputeWindow_) {
        if (arbiter_ == address(0)) revert InvalidArbiter();
        if (governor_ == address(0)) revert InvalidGovernor();
        if (disputeWindow_ == 0) revert InvalidDisputeWindow();
        token = token_;
        arbiter = arbiter_;
        governor = governor_;
        disputeWindow = disputeWindow_;
        emit ArbiterChanged(address(0), arbiter_);
        emit GovernorChanged(address(0), governor_);
    }

    // ------------------------------------------------------------------ buyer and seller

    /// @notice Locks `amount` from the caller (approve this escrow first) for a new job.
    /// @param jobId Job id chosen by the buyer, unique among the buyer's jobs.
    /// @param seller Who will deliver and be paid.
    /// @param amount Stablecoin base units (positive).
    /// @param deadline Last timestamp (inclusive) for delivery; must be in the future.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    /// @return escrowId `keccak256(abi.encode(msg.sender, jobId))`, which later calls name.
    function lock(
        bytes32 jobId,
        address seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    ) external returns (bytes32 escrowId) {
        return _lock(jobId, seller, amount, deadline, reviewWindow);
    }

    /// @notice `lock` in one transaction: first applies the buyer's EIP-2612 permit for
    ///         `amount` to this escrow. If the permit was already used (e.g. front-run) the
    ///         lock goes ahead as long as the allowance suffices; otherwise the permit's
    ///         error is rethrown.
    /// @param jobId Job id chosen by the buyer, unique among the buyer's jobs.
    /// @param seller Who will deliver and be paid.
    /// @param amount Stablecoin base units (positive), also the permit's value.
    /// @param deadline Last timestamp (inclusive) for delivery; must be in the future.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    /// @param permitDeadline The permit's deadline.
    /// @param v Permit signature recovery id.
    /// @param r Permit signature r.
    /// @param s Permit signature s.
    /// @return escrowId `keccak256(abi.encode(msg.sender, jobId))`, which later calls name.
    function lockWithPermit(
        bytes32 jobId,
        address seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 escrowId) {
        try token.permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {}
        catch (bytes memory reason) {
            if (token.allowance(msg.sender, address(this)) < amount) {
                assembly ("memory-safe") {
                    revert(add(reason, 0x20), mload(reason))
                }
            }
        }
        return _lock(jobId, seller, amount, deadline, reviewWindow);
    }

    /// @notice The seller records delivery of the result, at or before the deadline.
    /// @param escrowId The escrow.
    /// @param resultHash Hash of the delivered result (not zero).
    function deliver(bytes32 escrowId, bytes32 resultHash) external {
        Job storage job = _existing(escrowId);
        if (msg.sender != job.seller) revert NotSeller(msg.sender);
        _requireState(escrowId, job, State.Locked);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline, block.timestamp);
        if (resultHash == bytes32(0)) revert EmptyResultHash();
        uint64 releaseAfter = uint64(block.timestamp) + job.reviewWindow;
        job.state = State.Delivered;
        job.releaseAfter = releaseAfter;
        job.resultHash = resultHash;
        emit JobDelivered(escrowId, msg.sender, resultHash, releaseAfter);
    }

    /// @notice The buyer accepts the delivery and pays the seller.
    /// @param escrowId The escrow.
    function accept(bytes32 escrowId) external {
        Job storage job = _existing(escrowId);
        if (msg.sender != job.buyer) revert NotBuyer(msg.sender);
        _requireState(escrowId, job, State.Delivered);
        _release(escrowId, job);
    }

    /// @notice Anyone pays the seller once the review window has passed without a dispute.
    /// @param escrowId The escrow.
    function release(bytes32 escrowId) external {
        Job storage job = _existing(escrowId);
        _requireState(escrowId, job, State.Delivered);
        if (block.timestamp < job.releaseAfter) {
            revert ReviewWindowOpen(job.releaseAfter, block.timestamp);
        }
        _release(escrowId, job);
    }

    /// @notice Anyone pays the buyer back once the deadline has passed without delivery.
    /// @param escrowId The escrow.
    function refund(bytes32 escrowId) external {
        Job storage job = _existing(escrowId);
        _requireState(escrowId, job, State.Locked);
        if (block.timestamp <= job.deadline) {
            revert DeadlineNotPassed(job.deadline, block.timestamp);
        }
        job.state = State.Refunded;
        uint256 amount = job.amount;
        address buyer = job.buyer;
        emit JobRefunded(escrowId, buyer, amount);
        token.transfer(buyer, amount);
    }

    /// @notice The buyer disputes the delivery within the review window; the arbiter may rule
    ///         for `disputeWindow` seconds, after which the seller is paid by default.
    /// @param escrowId The escrow.
    /// @param reasonHash Hash of the buyer's complaint (may be zero).
    function dispute(bytes32 escrowId, bytes32 reasonHash) external {
        Job storage job = _existing(escrowId);
        if (msg.sender != job.buyer) revert NotBuyer(msg.sender);
        _requireState(escrowId, job, State.Delivered);
        if (block.timestamp >= job.releaseAfter) {
            revert ReviewWindowClosed(job.releaseAfter, block.timestamp);
        }
        uint64 disputeDeadline = uint64(block.timestamp) + disputeWindow;
        job.state = State.Disputed;
        job.disputeDeadline = disputeDeadline;
        emit JobDisputed(escrowId, msg.sender, reasonHash, disputeDeadline);
    }

    // ------------------------------------------------------------------ disputes

    /// @notice The arbiter rules on a disputed escrow, at the latest at its dispute deadline:
    ///         `toBuyer` goes back to the buyer and the rest to the seller.
    /// @param escrowId The escrow.
    /// @param toBuyer Base units returned to the buyer (at most the amount held).
    function resolveDispute(bytes32 escrowId, uint256 toBuyer) external {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        Job storage job = _existing(escrowId);
        _requireState(escrowId, job, State.Disputed);
        if (block.timestamp > job.disputeDeadline) {
            revert DisputeWindowClosed(job.disputeDeadline, block.timestamp);
        }
        uint256 amount = job.amount;
        if (toBuyer > amount) revert InvalidSplit(toBuyer, amount);
        uint256 toSeller;
        unchecked {
            toSeller = amount - toBuyer;
        }
        _resolve(escrowId, job, toBuyer, toSeller, false);
    }

    /// @notice Anyone settles a dispute the arbiter left unruled past its dispute deadline, by
    ///         the default rule: the seller, who delivered in time, is paid in full.
    /// @param escrowId The escrow.
    function settleExpiredDispute(bytes32 escrowId) external {
        Job storage job = _existing(escrowId);
        _requireState(escrowId, job, State.Disputed);
        if (block.timestamp <= job.disputeDeadline) {
            revert DisputeWindowOpen(job.disputeDeadline, block.timestamp);
        }
        _resolve(escrowId, job, 0, job.amount, true);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Replaces the arbiter, effective at once: the new arbiter rules on every open
    ///         dispute (their deadlines do not move) and the old one no longer can.
    /// @param newArbiter The new arbiter (not zero).
    function setArbiter(address newArbiter) external {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        if (newArbiter == address(0)) revert InvalidArbiter();
        emit ArbiterChanged(arbiter, newArbiter);
        arbiter = newArbiter;
    }

    /// @notice Proposes a new governor, who takes over by calling `acceptGovernance`.
    ///         Proposing the zero address cancels a pending proposal.
    /// @param newGovernor The proposed governor.
    function transferGovernance(address newGovernor) external {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        pendingGovernor = newGovernor;
        emit GovernanceTransferStarted(msg.sender, newGovernor);
    }

    /// @notice The pending governor takes over.
    function acceptGovernance() external {
        if (msg.sender != pendingGovernor || msg.sender == address(0)) {
            revert NotPendingGovernor(msg.sender);
        }
        emit GovernorChanged(governor, msg.sender);
        governor = msg.sender;
        pendingGovernor = address(0);
    }

    // ------------------------------------------------------------------ views

    /// @notice The escrow id of a buyer's job: `keccak256(abi.encode(buyer, jobId))`.
    /// @param buyer Who locks (or locked) the payment.
    /// @param jobId The buyer's job id.
    /// @return The escrow id.
    function escrowIdOf(address buyer, bytes32 jobId) public pure returns (bytes32) {
        return keccak256(abi.encode(buyer, jobId));
    }

    /// @notice An escrow's record (all zero if unknown).
    /// @param escrowId The escrow.
    /// @return The record.
    function getJob(bytes32 escrowId) external view returns (Job memory) {
        return _jobs[escrowId];
    }

    /// @notice Where an escrow stands.
    /// @param escrowId The escrow.
    /// @return The state (None if unknown).
    function stateOf(bytes32 escrowId) external view returns (State) {
        return _jobs[escrowId].state;
    }

    // ------------------------------------------------------------------ internals

    function _lock(
        bytes32 jobId,
        address seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    ) private returns (bytes32 escrowId) {
        escrowId = escrowIdOf(msg.sender, jobId);
        Job storage job = _jobs[escrowId];
        if (job.state != State.None) revert JobExists(escrowId);
        if (seller == address(0) || seller == msg.sender) revert InvalidSeller(seller);
        if (amount == 0) revert ZeroAmount();
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        job.buyer = msg.sender;
        job.deadline = deadline;
        job.state = State.Locked;
        job.seller = seller;
        job.reviewWindow = reviewWindow;
        job.amount = amount;
        emit JobLocked(escrowId, msg.sender, seller, jobId, amount, deadline, reviewWindow);
        token.transferFrom(msg.sender, address(this), amount);
    }

    function _release(bytes32 escrowId, Job storage job) private {
        job.state = State.Released;
        uint256 amount = job.amount;
        address seller = job.seller;
        emit JobReleased(escrowId, seller, amount, msg.sender);
        token.transfer(seller, amount);
    }

    function _resolve(
        bytes32 escrowId,
        Job storage job,
        uint256 toBuyer,
        uint256 toSeller,
        bool byDefault
    ) private {
        job.state = State.Resolved;
        emit JobResolved(escrowId, toBuyer, toSeller, msg.sender, byDefault);
        if (toBuyer != 0) token.transfer(job.buyer, toBuyer);
        if (toSeller != 0) token.transfer(job.seller, toSeller);
    }

    function _existing(bytes32 escrowId) private view returns (Job storage job) {
        job = _jobs[escrowId];
        if (job.state == State.None) revert UnknownJob(escrowId);
    }

    function _requireState(bytes32 escrowId, Job storage job, State expected) private view {
        State current = job.state;
        if (current != expected) revert InvalidState(escrowId, current);
    }
}
