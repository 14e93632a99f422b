// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IdentityRegistry} from "./IdentityRegistry.sol";
import {ReputationRegistry} from "./ReputationRegistry.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {PaymentChannel} from "./PaymentChannel.sol";

/// @title SettledFeedback
/// @notice Agora's reviewer in the ERC-8004 Reputation Registry: it gives feedback on an agent
///         only for a settled deal in which the caller paid the agent's wallet, once per deal.
///         In the registry this contract is the `clientAddress` of every entry it writes, so
///         an indexer that lists only this client (`getSummary(agentId, [SettledFeedback],
///         ...)`) reads payment-backed reputation, free of Sybil reviews that cost nothing.
/// @dev A deal is settled, and the caller's payment to the agent proved, when:
///      - Escrow (`giveEscrowFeedback`): the `JobEscrow` escrow's buyer is the caller, its
///        seller is the agent's ERC-8004 wallet (`getAgentWallet`), and it is `Released`
///        (the payment went to the seller) or `Resolved` (the seller delivered, the buyer
///        disputed, and the arbiter's split or the default rule settled it: the feedback is
///        on that outcome, as in `Reputation`). A refunded, disputed or open escrow gives
///        none.
///      - Channel (`giveChannelFeedback`): the `PaymentChannel` channel's payer is the caller,
///        its payee is the agent's wallet, and the payee settled a positive amount (`paid >
///        0`; open, closed or expired alike). A channel carries many small deals but counts
///        as one for feedback.
///      The caller may not own or operate the agent (no rating oneself through a payment to
///      oneself), and the agent's wallet must be set (a transferred agent's is cleared until
///      its new owner verifies one). The deal's key (escrow id or channel id) is used once:
///      a second feedback, also after a revocation, reverts `AlreadyReviewed`. The buyer can
///      revoke its feedback through `revokeFeedback`, since in the registry only this
///      contract can.
///
///      The value, decimals, tags, endpoint, URI and hash are the buyer's, passed through
///      unchanged (Agora's agents rate with tag1 "starred", 0 to 100, 0 decimals).
contract SettledFeedback {
    /// @notice What kind of deal backs a feedback entry.
    enum DealKind {
        Escrow,
        Channel
    }

    /// @notice The feedback a deal backed.
    /// @param reviewer The buyer who gave it (zero if none).
    /// @param feedbackIndex Its index in the Reputation Registry (this contract's entries on
    ///        the agent).
    /// @param revoked Whether the buyer revoked it.
    /// @param agentId The agent rated.
    struct Review {
        address reviewer;
        uint64 feedbackIndex;
        bool revoked;
        uint256 agentId;
    }

    /// @notice The feedback a buyer gives, as `ReputationRegistry.giveFeedback` takes it.
    /// @param value Signed fixed-point value.
    /// @param valueDecimals Its decimals (0 to 18).
    /// @param tag1 First tag (e.g. "starred").
    /// @param tag2 Second tag.
    /// @param endpoint The endpoint rated.
    /// @param feedbackURI Where a feedback file is.
    /// @param feedbackHash keccak256 of that file.
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        string tag1;
        string tag2;
        string endpoint;
        string feedbackURI;
        bytes32 feedbackHash;
    }

    /// @notice The ERC-8004 identity registry of the agents rated.
    IdentityRegistry public immutable identityRegistry;

    /// @notice The ERC-8004 reputation registry written to.
    ReputationRegistry public immutable reputationRegistry;

    /// @notice The escrow whose settled escrows back feedback.
    JobEscrow public immutable escrow;

    /// @notice The channel contract whose settled channels back feedback.
    PaymentChannel public immutable channel;

    mapping(DealKind kind => mapping(bytes32 dealId => Review)) private _reviews;

    /// @notice `buyer` rated `agentId` (whose wallet `seller` it paid) for deal `dealId`; the
    ///         entry is this contract's feedback number `feedbackIndex` on the agent.
    event SettledFeedbackGiven(
        bytes32 indexed dealId,
        DealKind kind,
        address indexed buyer,
        uint256 indexed agentId,
        address seller,
        uint64 feedbackIndex
    );

    /// @notice The buyer revoked its feedback for deal `dealId`.
    event SettledFeedbackRevoked(
        bytes32 indexed dealId, DealKind kind, uint256 indexed agentId, uint64 feedbackIndex
    );

    /// @notice A constructor argument is the zero address, or the reputation registry rates
    ///         the agents of another identity registry.
    error InvalidConfiguration();

    /// @notice The deal is not the caller's: it is not the escrow's buyer or the channel's
    ///         payer.
    error NotPayer(DealKind kind, bytes32 dealId, address caller);

    /// @notice The escrow is not settled (Released or Resolved).
    error EscrowNotSettled(bytes32 escrowId, JobEscrow.State state);

    /// @notice The channel's payee has not been paid anything.
    error ChannelNotSettled(bytes32 channelId);

    /// @notice The deal paid `payee`, which is not the agent's wallet `agentWallet`.
    error NotAgentWallet(uint256 agentId, address payee, address agentWallet);

    /// @notice The caller owns or operates the agent.
    error SelfFeedback(address caller, uint256 agentId);

    /// @notice The deal already backed a feedback entry.
    error AlreadyReviewed(DealKind kind, bytes32 dealId);

    /// @notice The deal backs no feedback entry of the caller's (or it was revoked).
    error NoReview(DealKind kind, bytes32 dealId, address caller);

    /// @param identityRegistry_ The ERC-8004 identity registry.
    /// @param reputationRegistry_ The ERC-8004 reputation registry of that identity registry.
    /// @param escrow_ The escrow contract.
    /// @param channel_ The payment channel contract.
    constructor(
        IdentityRegistry identityRegistry_,
        ReputationRegistry reputationRegistry_,
        JobEscrow escrow_,
        PaymentChannel channel_
    ) {
        if (
            address(identityRegistry_) == address(0) || address(escrow_) == address(0)
                || address(channel_) == address(0) || address(reputationRegistry_) == address(0)
                || reputationRegistry_.getIdentityRegistry() != address(identityRegistry_)
        ) revert InvalidConfiguration();
        identityRegistry = identityRegistry_;
        reputationRegistry = reputationRegistry_;
        escrow = escrow_;
        channel = channel_;
    }

    /// @notice Rates `agentId` for a settled escrow the caller paid its wallet through.
    /// @param escrowId The escrow (the caller is its buyer; Released or Resolved).
    /// @param agentId The agent whose wallet is the escrow's seller.
    /// @param feedback The feedback.
    /// @return feedbackIndex The entry's index in the Reputation Registry.
    function giveEscrowFeedback(bytes32 escrowId, uint256 agentId, Feedback calldata feedback)
        external
        returns (uint64 feedbackIndex)
    {
        JobEscrow.Job memory job = escrow.getJob(escrowId);
        if (msg.sender != job.buyer) revert NotPayer(DealKind.Escrow, escrowId, msg.sender);
        if (job.state != JobEscrow.State.Released && job.state != JobEscrow.State.Resolved) {
            revert EscrowNotSettled(escrowId, job.state);
        }
        return _give(DealKind.Escrow, escrowId, agentId, job.seller, feedback);
    }

    /// @notice Rates `agentId` for a channel through which the caller paid its wallet.
    /// @param channelId The channel (the caller is its payer; some amount settled).
    /// @param agentId The agent whose wallet is the channel's payee.
    /// @param feedback The feedback.
    /// @return feedbackIndex The entry's index in the Reputation Registry.
    function giveChannelFeedback(bytes32 channelId, uint256 agentId, Feedback calldata feedback)
        external
        returns (uint64 feedbackIndex)
    {
        PaymentChannel.Channel memory c = channel.getChannel(channelId);
        if (msg.sender != c.payer) revert NotPayer(DealKind.Channel, channelId, msg.sender);
        if (c.paid == 0) revert ChannelNotSettled(channelId);
        return _give(DealKind.Channel, channelId, agentId, c.payee, feedback);
    }

    /// @notice Revokes the caller's feedback for a deal (in the Reputation Registry, where
    ///         this contract is the client).
    /// @param kind The deal's kind.
    /// @param dealId The escrow or channel id.
    function revokeFeedback(DealKind kind, bytes32 dealId) external {
        Review storage review = _reviews[kind][dealId];
        if (review.reviewer != msg.sender || review.revoked) {
            revert NoReview(kind, dealId, msg.sender);
        }
        review.revoked = true;
        reputationRegistry.revokeFeedback(review.agentId, review.feedbackIndex);
        emit SettledFeedbackRevoked(dealId, kind, review.agentId, review.feedbackIndex);
    }

    /// @notice The feedback a deal backed (all zero if none).
    /// @param kind The deal's kind.
    /// @param dealId The escrow or channel id.
    /// @return The review.
    function reviewOf(DealKind kind, bytes32 dealId) external view returns (Review memory) {
        return _reviews[kind][dealId];
    }

    function _give(
        DealKind kind,
        bytes32 dealId,
        uint256 agentId,
        address payee,
        Feedback calldata feedback
    ) private returns (uint64 feedbackIndex) {
        Review storage review = _reviews[kind][dealId];
        if (review.reviewer != address(0)) revert AlreadyReviewed(kind, dealId);
        // Reverts ERC721NonexistentToken for an unknown agent.
        if (identityRegistry.isAuthorizedOrOwner(msg.sender, agentId)) {
            revert SelfFeedback(msg.sender, agentId);
        }
        // A cleared wallet (zero) never matches: payees and sellers are never zero.
        address wallet = identityRegistry.getAgentWallet(agentId);
        if (payee != wallet) revert NotAgentWallet(agentId, payee, wallet);
        feedbackIndex = reputationRegistry.getLastIndex(agentId, address(this)) + 1;
        review.reviewer = msg.sender;
        review.feedbackIndex = feedbackIndex;
        review.agentId = agentId;
        _forward(agentId, feedback);
        emit SettledFeedbackGiven(dealId, kind, msg.sender, agentId, payee, feedbackIndex);
    }

    /// @dev Writes `feedback` on `agentId` to the Reputation Registry as this contract.
    function _forward(uint256 agentId, Feedback calldata feedback) private {
        reputationRegistry.giveFeedback(
            agentId,
            feedback.value,
            feedback.valueDecimals,
            feedback.tag1,
            feedback.tag2,
            feedback.endpoint,
            feedback.feedbackURI,
            feedback.feedbackHash
        );
    }
}
