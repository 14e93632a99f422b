// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";
import {InferenceOracle} from "./InferenceOracle.sol";

/// @title InferenceConsumer
/// @notice An example of a contract that asks `InferenceOracle` a question and reads the answer
///         the way it would read a price feed: `latestAnswer()` returns the last final answer
///         and when it was given, and reverts while there is none.
/// @dev One model and one sampling setting, fixed at deployment, as a feed reader fixes its
///      feed. `ask` pulls the fee from the caller (approve this contract first), so whoever
///      wants a fresh answer pays for it.
contract InferenceConsumer {
    /// @notice The oracle asked.
    InferenceOracle public immutable oracle;

    /// @notice The token fees are paid in.
    Stablecoin public immutable token;

    /// @notice The model fingerprint every question names.
    bytes32 public immutable model;

    /// @notice The sampling hash every question names.
    bytes32 public immutable samplingHash;

    /// @notice The sampling parameters behind `samplingHash`, as fulfillers read them.
    bytes public sampling;

    /// @notice The latest question's request id (0: none asked yet).
    uint256 public latestRequest;

    /// @notice The last final answer read by `update`.
    bytes public lastAnswer;

    /// @notice When the last final answer was given (0: none yet).
    uint256 public lastUpdatedAt;

    /// @notice A question was asked.
    event Asked(uint256 indexed requestId, address indexed payer, uint256 fee);

    /// @notice A final answer was read from the oracle and kept.
    event Updated(uint256 indexed requestId, bytes answer, uint256 updatedAt);

    /// @notice The latest question has no final answer yet.
    error NoFinalAnswer(uint256 requestId);

    /// @notice No answer was kept yet.
    error NoAnswerYet();

    /// @param oracle_ The oracle.
    /// @param model_ The model fingerprint to ask.
    /// @param samplingHash_ The sampling hash to ask with.
    /// @param sampling_ The sampling parameters behind it.
    constructor(
        InferenceOracle oracle_,
        bytes32 model_,
        bytes32 samplingHash_,
        bytes memory sampling_
    ) {
        oracle = oracle_;
        token = oracle_.token();
        model = model_;
        samplingHash = samplingHash_;
        sampling = sampling_;
    }

    /// @notice Asks the oracle `prompt`, paying `fee` from the caller.
    /// @param prompt The exact text the model reads.
    /// @param fee Base units for the fulfiller.
    /// @param deadline Last second a fulfilment is accepted.
    /// @return requestId The oracle's request id.
    function ask(bytes calldata prompt, uint256 fee, uint64 deadline)
        external
        returns (uint256 requestId)
    {
        token.transferFrom(msg.sender, address(this), fee);
        token.approve(address(oracle), fee);
        requestId = oracle.request(model, prompt, samplingHash, sampling, fee, deadline);
        latestRequest = requestId;
        emit Asked(requestId, msg.sender, fee);
    }

    /// @notice Keeps the latest question's answer once it is final. Anyone may call it.
    function update() external {
        uint256 id = latestRequest;
        (bool isFinal, bytes memory output,, uint64 fulfilledAt) = oracle.answer(id);
        if (!isFinal) revert NoFinalAnswer(id);
        lastAnswer = output;
        lastUpdatedAt = fulfilledAt;
        emit Updated(id, output, fulfilledAt);
    }

    /// @notice The last final answer and when it was given, like a feed's latest round.
    /// @return answer The answer text.
    /// @return updatedAt When the oracle was given it.
    function latestAnswer() external view returns (string memory answer, uint256 updatedAt) {
        if (lastUpdatedAt == 0) revert NoAnswerYet();
        return (string(lastAnswer), lastUpdatedAt);
    }
}
