// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {JobEscrow} from "./JobEscrow.sol";

/// @title Reputation
/// @notice Feedback on sellers, one entry per settled escrow job, given by that job's buyer.
/// @dev A job is settled when its payment went to the seller (`Released`) or the arbiter ruled
///      on a dispute (`Resolved`): in both the seller took part, so feedback cannot be farmed
///      against a seller who never accepted the job (a `Refunded` job gives none). Scores run
///      from 0 to 100 (ERC-8004 reputation convention). This contract keeps per-seller totals
///      so that a view can rank sellers without logs; the `FeedbackGiven` events carry every
///      entry in full. Governance (suspensions, kill switch, slashing) lives in
///      `AgentRegistry`; this contract has no admin.
contract Reputation {
    /// @notice Highest score.
    uint8 public constant MAX_SCORE = 100;

    /// @notice One feedback entry.
    /// @param given Whether feedback was given for the job.
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

    /// @notice The escrow whose settled jobs may receive feedback.
    JobEscrow public immutable escrow;

    mapping(bytes32 jobId => Feedback) private _feedback;
    mapping(address seller => Summary) private _summaries;

    /// @notice The buyer of `jobId` gave feedback on `seller`.
    event FeedbackGiven(
        bytes32 indexed jobId,
        address indexed buyer,
        address indexed seller,
        uint8 score,
        string uri,
        bytes32 feedbackHash
    );

    /// @notice Only the job's buyer may give feedback.
    error NotJobBuyer(bytes32 jobId, address caller);

    /// @notice The job is not settled (Released or Resolved).
    error JobNotSettled(bytes32 jobId, JobEscrow.State state);

    /// @notice Feedback for this job was already given.
    error FeedbackAlreadyGiven(bytes32 jobId);

    /// @notice The score exceeds `MAX_SCORE`.
    error ScoreOutOfRange(uint8 score);

    /// @param escrow_ The escrow whose settled jobs may receive feedback.
    constructor(JobEscrow escrow_) {
        escrow = escrow_;
    }

    /// @notice Records the caller's feedback on the seller of a settled job, once per job.
    /// @param jobId The escrow job, which the caller bought and which is Released or Resolved.
    /// @param score 0 (worst) to 100 (best).
    /// @param uri Where a longer feedback document lives (may be empty).
    /// @param feedbackHash Hash of that document (may be zero).
    function giveFeedback(bytes32 jobId, uint8 score, string calldata uri, bytes32 feedbackHash)
        external
    {
        if (score > MAX_SCORE) revert ScoreOutOfRange(score);
        JobEscrow.Job memory job = escrow.getJob(jobId);
        if (msg.sender != job.buyer) revert NotJobBuyer(jobId, msg.sender);
        if (job.state != JobEscrow.State.Released && job.state != JobEscrow.State.Resolved) {
            revert JobNotSettled(jobId, job.state);
        }
        Feedback storage entry = _feedback[jobId];
        if (entry.given) revert FeedbackAlreadyGiven(jobId);
        entry.given = true;
        entry.score = score;
        entry.seller = job.seller;
        entry.feedbackHash = feedbackHash;
        entry.uri = uri;
        Summary storage summary = _summaries[job.seller];
        summary.count += 1;
        summary.totalScore += score;
        emit FeedbackGiven(jobId, msg.sender, job.seller, score, uri, feedbackHash);
    }

    /// @notice The feedback given for a job (all zero if none).
    /// @param jobId The escrow job.
    /// @return The entry.
    function feedbackOf(bytes32 jobId) external view returns (Feedback memory) {
        return _feedback[jobId];
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
