// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {JobEscrow} from "./JobEscrow.sol";

/// @title Reputation
/// @notice Feedback on sellers, one entry per settled escrow, given by that escrow's buyer.
/// @dev Entries are keyed by the escrow id, `keccak256(abi.encode(buyer, jobId))` (see
///      `JobEscrow.escrowIdOf`), so a job id another buyer reused cannot collide with this
///      buyer's. An escrow is settled when its payment went to the seller (`Released`) or its
///      dispute was settled (`Resolved`, by the arbiter or by the default rule after the
///      dispute deadline): in both the seller delivered, so feedback cannot be farmed against
///      a seller who never accepted the job (a `Refunded` escrow gives none). Scores run
///      from 0 to 100 (ERC-8004 reputation convention). This contract keeps per-seller totals
///      so that a view can rank sellers without logs; the `FeedbackGiven` events carry every
///      entry in full. Governance (suspensions, kill switch, slashing) lives in
///      `AgentRegistry`; this contract has no admin.
contract Reputation {
    /// @notice Highest score.
    uint8 public constant MAX_SCORE = 100;

    /// @notice One feedback entry.
    /// @param given Whether feedback was given for the escrow.
    /// @param score 0 (worst) to 100 (best).
    /// @param seller The seller the feedback is about.
    /// @param feedbackHash Hash of the feedback document at `uri` (may be zero).
    /// @param uri Where a longer feedback document lives (may be empty).
    struct Feedback {
        bool given;
        uint8 score;
        address seller;
        bytes32 feedbackHash;
        string uri;
    }

    /// @notice Aggregate feedback on a seller.
    /// @param count Number of feedback entries.
    /// @param totalScore Sum of their scores.
    struct Summary {
        uint64 count;
        uint192 totalScore;
    }

    /// @notice The escrow contract whose settled escrows may receive feedback.
    JobEscrow public immutable escrow;

    mapping(bytes32 escrowId => Feedback) private _feedback;
    mapping(address seller => Summary) private _summaries;

    /// @notice The buyer of `escrowId` gave feedback on `seller`.
    event FeedbackGiven(
        bytes32 indexed escrowId,
        address indexed buyer,
        address indexed seller,
        uint8 score,
        string uri,
        bytes32 feedbackHash
    );

    /// @notice Only the escrow's buyer may give feedback.
    error NotJobBuyer(bytes32 escrowId, address caller);

    /// @notice The escrow is not settled (Released or Resolved).
    error JobNotSettled(bytes32 escrowId, JobEscrow.State state);

    /// @notice Feedback for this escrow was already given.
    error FeedbackAlreadyGiven(bytes32 escrowId);

    /// @notice The score exceeds `MAX_SCORE`.
    error ScoreOutOfRange(uint8 score);

    /// @param escrow_ The escrow contract whose settled escrows may receive feedback.
    constructor(JobEscrow escrow_) {
        escrow = escrow_;
    }

    /// @notice Records the caller's feedback on the seller of a settled escrow, once per escrow.
    /// @param escrowId The escrow, which the caller bought and which is Released or Resolved.
    /// @param score 0 (worst) to 100 (best).
    /// @param uri Where a longer feedback document lives (may be empty).
    /// @param feedbackHash Hash of that document (may be zero).
    function giveFeedback(bytes32 escrowId, uint8 score, string calldata uri, bytes32 feedbackHash)
        external
    {
        if (score > MAX_SCORE) revert ScoreOutOfRange(score);
        JobEscrow.Job memory job = escrow.getJob(escrowId);
        if (msg.sender != job.buyer) revert NotJobBuyer(escrowId, msg.sender);
        if (job.state != JobEscrow.State.Released && job.state != JobEscrow.State.Resolved) {
            revert JobNotSettled(escrowId, job.state);
        }
        Feedback storage entry = _feedback[escrowId];
        if (entry.given) revert FeedbackAlreadyGiven(escrowId);
        entry.given = true;
        entry.score = score;
        entry.seller = job.seller;
        entry.feedbackHash = feedbackHash;
        entry.uri = uri;
        Summary storage summary = _summaries[job.seller];
        summary.count += 1;
        summary.totalScore += score;
        emit FeedbackGiven(escrowId, msg.sender, job.seller, score, uri, feedbackHash);
    }

    /// @notice The feedback given for an escrow (all zero if none).
    /// @param escrowId The escrow.
    /// @return The entry.
    function feedbackOf(bytes32 escrowId) external view returns (Feedback memory) {
        return _feedback[escrowId];
    }

    /// @notice Aggregate feedback on a seller.
    /// @param seller The seller.
    /// @return count Number of feedback entries.
    /// @return totalScore Sum of their scores.
    /// @return average Mean score rounded down (0 when there is none).
    function summaryOf(address seller)
        external
        view
        returns (uint256 count, uint256 totalScore, uint256 average)
    {
        Summary memory s = _summaries[seller];
        count = s.count;
        totalScore = s.totalScore;
        average = count == 0 ? 0 : totalScore / count;
    }
}
