// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";

/// @title JobEscrow
/// @notice Holds a buyer's stablecoin payment for one job until the seller delivers.
/// @dev State machine of a job (every transition emits an event):
///
///      None ──lock──▶ Locked ──deliver (seller, at or before deadline)──▶ Delivered
///      Locked ──refund (anyone, after deadline)──▶ Refunded        [buyer paid back]
///      Delivered ──accept (buyer)──▶ Released                       [seller paid]
///      Delivered ──release (anyone, from releaseAfter on)──▶ Released [seller paid]
///      Delivered ──dispute (buyer, before releaseAfter)──▶ Disputed
///      Disputed ──resolveDispute (arbiter)──▶ Resolved               [split as ruled]
///
///      `releaseAfter = delivery time + reviewWindow`. The time windows do not overlap
///      (deliver: t <= deadline, refund: t > deadline; dispute: t < releaseAfter, release:
///      t >= releaseAfter), and Released, Refunded and Resolved are final, so a job pays out
///      exactly once and neither side can take both. Job ids are chosen by the buyer (e.g.
///      derived from the signed agreement) and can be used once, ever.
contract JobEscrow {
    /// @notice Where a job stands.
    enum State {
        None,
        Locked,
        Delivered,
        Released,
        Refunded,
        Disputed,
        Resolved
    }

    /// @notice One job.
    /// @param buyer Who locked the payment.
    /// @param deadline Last timestamp (inclusive) at which the seller may deliver.
    /// @param state Where the job stands.
    /// @param seller Who is paid on release.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    /// @param releaseAfter From this timestamp on anyone may release (0 before delivery).
    /// @param amount Stablecoin base units held.
    /// @param resultHash Hash of the delivered result (0 before delivery).
    struct Job {
        address buyer;
        uint64 deadline;
        State state;
        address seller;
        uint32 reviewWindow;
        uint64 releaseAfter;
        uint256 amount;
        bytes32 resultHash;
    }

    /// @notice The token payments are held in.
    Stablecoin public immutable token;

    /// @notice Who rules on disputed jobs.
    address public immutable arbiter;

    mapping(bytes32 jobId => Job) private _jobs;

    /// @notice A buyer locked `amount` for a job.
    event JobLocked(
        bytes32 indexed jobId,
        address indexed buyer,
        address indexed seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    );

    /// @notice The seller delivered; anyone may release from `releaseAfter` on.
    event JobDelivered(
        bytes32 indexed jobId, address indexed seller, bytes32 resultHash, uint64 releaseAfter
    );

    /// @notice The payment went to the seller; `by` is the buyer (accept) or anyone (release).
    event JobReleased(bytes32 indexed jobId, address indexed seller, uint256 amount, address by);

    /// @notice The payment went back to the buyer after a missed deadline.
    event JobRefunded(bytes32 indexed jobId, address indexed buyer, uint256 amount);

    /// @notice The buyer disputed the delivery.
    event JobDisputed(bytes32 indexed jobId, address indexed buyer, bytes32 reasonHash);

    /// @notice The arbiter split the payment.
    event JobResolved(bytes32 indexed jobId, uint256 toBuyer, uint256 toSeller);

    /// @notice The job id was used before.
    error JobExists(bytes32 jobId);

    /// @notice No job has this id.
    error UnknownJob(bytes32 jobId);

    /// @notice The job is in `current`, where this call is not allowed.
    error InvalidState(bytes32 jobId, State current);

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

    /// @notice The result hash must not be zero.
    error EmptyResultHash();

    /// @notice Only the job's buyer may call this.
    error NotBuyer(address caller);

    /// @notice Only the job's seller may call this.
    error NotSeller(address caller);

    /// @notice Only the arbiter may call this.
    error NotArbiter(address caller);

    /// @notice The buyer's share exceeds the amount held.
    error InvalidSplit(uint256 toBuyer, uint256 amount);

    /// @notice The arbiter cannot be the zero address.
    error InvalidArbiter();

    /// @param token_ The stablecoin payments are held in.
    /// @param arbiter_ Who rules on disputed jobs.
    constructor(Stablecoin token_, address arbiter_) {
        if (arbiter_ == address(0)) revert InvalidArbiter();
        token = token_;
        arbiter = arbiter_;
    }

    /// @notice Locks `amount` from the caller (approve this escrow first) for a new job.
    /// @param jobId Unique job id chosen by the buyer.
    /// @param seller Who will deliver and be paid.
    /// @param amount Stablecoin base units (positive).
    /// @param deadline Last timestamp (inclusive) for delivery; must be in the future.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    function lock(
        bytes32 jobId,
        address seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    ) external {
        _lock(jobId, seller, amount, deadline, reviewWindow);
    }

    /// @notice `lock` in one transaction: first applies the buyer's EIP-2612 permit for
    ///         `amount` to this escrow. If the permit was already used (e.g. front-run) the
    ///         lock goes ahead as long as the allowance suffices; otherwise the permit's
    ///         error is rethrown.
    /// @param jobId Unique job id chosen by the buyer.
    /// @param seller Who will deliver and be paid.
    /// @param amount Stablecoin base units (positive), also the permit's value.
    /// @param deadline Last timestamp (inclusive) for delivery; must be in the future.
    /// @param reviewWindow Seconds the buyer has after delivery to accept or dispute.
    /// @param permitDeadline The permit's deadline.
    /// @param v Permit signature recovery id.
    /// @param r Permit signature r.
    /// @param s Permit signature s.
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
    ) external {
        try token.permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {}
        catch (bytes memory reason) {
            if (token.allowance(msg.sender, address(this)) < amount) {
                assembly ("memory-safe") {
                    revert(add(reason, 0x20), mload(reason))
                }
            }
        }
        _lock(jobId, seller, amount, deadline, reviewWindow);
    }

    /// @notice The seller records delivery of the result, at or before the deadline.
    /// @param jobId The job.
    /// @param resultHash Hash of the delivered result (not zero).
    function deliver(bytes32 jobId, bytes32 resultHash) external {
        Job storage job = _existing(jobId);
        if (msg.sender != job.seller) revert NotSeller(msg.sender);
        _requireState(jobId, job, State.Locked);
        if (block.timestamp > job.deadline) revert DeadlinePassed(job.deadline, block.timestamp);
        if (resultHash == bytes32(0)) revert EmptyResultHash();
        uint64 releaseAfter = uint64(block.timestamp) + job.reviewWindow;
        job.state = State.Delivered;
        job.releaseAfter = releaseAfter;
        job.resultHash = resultHash;
        emit JobDelivered(jobId, msg.sender, resultHash, releaseAfter);
    }

    /// @notice The buyer accepts the delivery and pays the seller.
    /// @param jobId The job.
    function accept(bytes32 jobId) external {
        Job storage job = _existing(jobId);
        if (msg.sender != job.buyer) revert NotBuyer(msg.sender);
        _requireState(jobId, job, State.Delivered);
        _release(jobId, job);
    }

    /// @notice Anyone pays the seller once the review window has passed without a dispute.
    /// @param jobId The job.
    function release(bytes32 jobId) external {
        Job storage job = _existing(jobId);
        _requireState(jobId, job, State.Delivered);
        if (block.timestamp < job.releaseAfter) {
            revert ReviewWindowOpen(job.releaseAfter, block.timestamp);
        }
        _release(jobId, job);
    }

    /// @notice Anyone pays the buyer back once the deadline has passed without delivery.
    /// @param jobId The job.
    function refund(bytes32 jobId) external {
        Job storage job = _existing(jobId);
        _requireState(jobId, job, State.Locked);
        if (block.timestamp <= job.deadline) {
            revert DeadlineNotPassed(job.deadline, block.timestamp);
        }
        job.state = State.Refunded;
        uint256 amount = job.amount;
        address buyer = job.buyer;
        emit JobRefunded(jobId, buyer, amount);
        token.transfer(buyer, amount);
    }

    /// @notice The buyer disputes the delivery within the review window; the arbiter rules.
    /// @param jobId The job.
    /// @param reasonHash Hash of the buyer's complaint (may be zero).
    function dispute(bytes32 jobId, bytes32 reasonHash) external {
        Job storage job = _existing(jobId);
        if (msg.sender != job.buyer) revert NotBuyer(msg.sender);
        _requireState(jobId, job, State.Delivered);
        if (block.timestamp >= job.releaseAfter) {
            revert ReviewWindowClosed(job.releaseAfter, block.timestamp);
        }
        job.state = State.Disputed;
        emit JobDisputed(jobId, msg.sender, reasonHash);
    }

    /// @notice The arbiter rules on a disputed job: `toBuyer` goes back to the buyer and the
    ///         rest to the seller.
    /// @param jobId The job.
    /// @param toBuyer Base units returned to the buyer (at most the amount held).
    function resolveDispute(bytes32 jobId, uint256 toBuyer) external {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        Job storage job = _existing(jobId);
        _requireState(jobId, job, State.Disputed);
        uint256 amount = job.amount;
        if (toBuyer > amount) revert InvalidSplit(toBuyer, amount);
        job.state = State.Resolved;
        uint256 toSeller;
        unchecked {
            toSeller = amount - toBuyer;
        }
        emit JobResolved(jobId, toBuyer, toSeller);
        if (toBuyer != 0) token.transfer(job.buyer, toBuyer);
        if (toSeller != 0) token.transfer(job.seller, toSeller);
    }

    /// @notice A job's record (all zero if unknown).
    /// @param jobId The job.
    /// @return The record.
    function getJob(bytes32 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @notice Where a job stands.
    /// @param jobId The job.
    /// @return The state (None if unknown).
    function stateOf(bytes32 jobId) external view returns (State) {
        return _jobs[jobId].state;
    }

    function _lock(
        bytes32 jobId,
        address seller,
        uint256 amount,
        uint64 deadline,
        uint32 reviewWindow
    ) private {
        Job storage job = _jobs[jobId];
        if (job.state != State.None) revert JobExists(jobId);
        if (seller == address(0) || seller == msg.sender) revert InvalidSeller(seller);
        if (amount == 0) revert ZeroAmount();
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        job.buyer = msg.sender;
        job.deadline = deadline;
        job.state = State.Locked;
        job.seller = seller;
        job.reviewWindow = reviewWindow;
        job.amount = amount;
        emit JobLocked(jobId, msg.sender, seller, amount, deadline, reviewWindow);
        token.transferFrom(msg.sender, address(this), amount);
    }

    function _release(bytes32 jobId, Job storage job) private {
        job.state = State.Released;
        uint256 amount = job.amount;
        address seller = job.seller;
        emit JobReleased(jobId, seller, amount, msg.sender);
        token.transfer(seller, amount);
    }

    function _existing(bytes32 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.state == State.None) revert UnknownJob(jobId);
    }

    function _requireState(bytes32 jobId, Job storage job, State expected) private view {
        State current = job.state;
        if (current != expected) revert InvalidState(jobId, current);
    }
}
