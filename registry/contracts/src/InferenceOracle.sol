// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";
import {AgentRegistry} from "./AgentRegistry.sol";
import {ModelRegistry} from "./ModelRegistry.sol";

/// @title InferenceOracle
/// @notice On-chain requests for LLM inference, fulfilled off chain by registered agents with a
///         signed attestation, open to challenge by anyone who re-runs the model.
///
///         1. A contract or an account `request`s an inference: a registered model fingerprint,
///            the prompt (the exact text the model reads, or its hash and a URI), the sampling
///            hash (every sampling parameter, the seed and the grammar, as Agora's
///            `SamplingParams::hash_with_grammar_at` computes it; the parameters themselves go
///            in the event as `sampling`), a fee in the stablecoin and a deadline.
///         2. By the deadline, anyone submits (`fulfil`) the output with an agent's EIP-712
///            `InferenceAttestation` over (model, prompt hash, sampling hash, output hash). The
///            signer must be an active agent of `AgentRegistry` registered with that model,
///            with at least `minFulfillerStake` bonded, and neither it nor the model suspended.
///            The signer is the fulfiller, whoever sends the transaction.
///         3. For `challengeWindow` seconds anyone may `challenge` with the hash of their own
///            re-run's output and a `challengeBond`. Without a challenge, anyone may `finalize`
///            afterwards: the fee goes to the fulfiller and the answer is final.
///         4. The registry's governor rules within `resolutionWindow`: a proven mismatch
///            refunds the fee, returns the bond, slashes up to `slashAmount` of the fulfiller's
///            stake (to the registry's treasury) and suspends the model fingerprint in
///            `AgentRegistry` (the kill switch: no agent of that model is listed or may fulfil
///            until the governor reinstates it). A rejected challenge pays the fee and the
///            bond to the fulfiller. Without a ruling in time, anyone may
///            `settleExpiredChallenge`: the fee goes to the fulfiller, the bond back.
///         5. Consumers read `answer(id)`, as they would read a price feed: the output, when it
///            was given, and whether it is final.
///
///         The attestation's EIP-712 domain is Agora's: name "Agora Inference", version "1",
///         this chain's id, no verifying contract, so the same signature an agent attaches to
///         an off-chain delivery fulfils a request here.
/// @dev The oracle must be an adjudicator of `AgentRegistry` (`setAdjudicator`) for upheld
///      challenges to slash and suspend. Keep `challengeWindow + resolutionWindow` below the
///      registry's `unbondingPeriod`, so a fulfiller cannot withdraw its stake ahead of a
///      ruling.
contract InferenceOracle {
    // ------------------------------------------------------------------ types

    /// @notice Where a request stands.
    enum Status {
        None,
        Open,
        Fulfilled,
        Challenged,
        Final,
        Overturned,
        Refunded
    }

    /// @notice One request.
    /// @param requester Who asked, paid the fee and gets it back on a refund.
    /// @param status Where it stands.
    /// @param deadline Last second a fulfilment is accepted.
    /// @param fulfiller The agent whose attestation fulfilled it.
    /// @param fulfilledAt When it was fulfilled.
    /// @param challenger Who challenged it.
    /// @param challengedAt When it was challenged.
    /// @param model The model fingerprint asked for.
    /// @param promptHash Keccak-256 of the exact text the model reads.
    /// @param samplingHash Hash of the sampling parameters, seed and grammar.
    /// @param outputHash Keccak-256 of the output given.
    /// @param challengeOutputHash Keccak-256 of the challenger's re-run output.
    /// @param fee Stablecoin base units paid to the fulfiller once final.
    struct Request {
        address requester;
        Status status;
        uint64 deadline;
        address fulfiller;
        uint64 fulfilledAt;
        address challenger;
        uint64 challengedAt;
        bytes32 model;
        bytes32 promptHash;
        bytes32 samplingHash;
        bytes32 outputHash;
        bytes32 challengeOutputHash;
        uint256 fee;
    }

    // ------------------------------------------------------------------ constants

    /// @notice EIP-712 type hash of the attestation agents sign.
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256(
        "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)"
    );

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId)");
    bytes32 private constant NAME_HASH = keccak256("Agora Inference");
    bytes32 private constant VERSION_HASH = keccak256("1");
    uint256 private constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice Most bytes of a prompt given in full.
    uint256 public constant MAX_PROMPT = 32_768;

    /// @notice Most bytes of an output given in full (it is stored for consumers).
    uint256 public constant MAX_OUTPUT = 8_192;

    // ------------------------------------------------------------------ state

    /// @notice The token fees, bonds and stakes are in.
    Stablecoin public immutable token;

    /// @notice Agents, their models, stakes and governance.
    AgentRegistry public immutable agents;

    /// @notice Model provenance: requests name registered fingerprints only.
    ModelRegistry public immutable models;

    /// @notice Seconds after a fulfilment in which it may be challenged.
    uint64 public immutable challengeWindow;

    /// @notice Seconds after a challenge in which the governor may rule on it.
    uint64 public immutable resolutionWindow;

    /// @notice Stablecoin base units a challenger deposits.
    uint256 public immutable challengeBond;

    /// @notice Least bonded stake (base units) an agent needs to fulfil.
    uint256 public immutable minFulfillerStake;

    /// @notice Most stake (base units) an upheld challenge slashes.
    uint256 public immutable slashAmount;

    /// @notice Requests made so far; ids run from 1 to `requestCount`.
    uint256 public requestCount;

    mapping(uint256 id => Request) private _requests;
    mapping(uint256 id => bytes) private _outputs;

    // ------------------------------------------------------------------ events

    /// @notice A request was made (its prompt and sampling parameters are in `RequestDetails`).
    event Requested(
        uint256 indexed id,
        address indexed requester,
        bytes32 indexed model,
        bytes32 promptHash,
        bytes32 samplingHash,
        uint256 fee,
        uint64 deadline
    );

    /// @notice What a fulfiller needs to run request `id`: the prompt text (empty when only
    ///         its hash was given), where to get it, and the sampling parameters as the
    ///         requester encoded them (Agora: JSON `{"params":…,"grammar":…,"specVersion":…}`).
    event RequestDetails(uint256 indexed id, bytes prompt, string promptURI, bytes sampling);

    /// @notice Request `id` was fulfilled by the agent `fulfiller` (the attestation's signer).
    event Fulfilled(
        uint256 indexed id,
        address indexed fulfiller,
        bytes32 outputHash,
        bytes output,
        string outputURI
    );

    /// @notice Request `id` was challenged; the challenger's re-run gave `rerunOutputHash`.
    event Challenged(uint256 indexed id, address indexed challenger, bytes32 rerunOutputHash);

    /// @notice The governor ruled: `upheld` (mismatch proven; `slashed` base units taken) or not.
    event ChallengeResolved(uint256 indexed id, bool upheld, uint256 slashed, string reason);

    /// @notice The governor did not rule in time; the answer stands and the bond went back.
    event ChallengeLapsed(uint256 indexed id);

    /// @notice Request `id` is final and its fulfiller was paid `paid`.
    event Finalized(uint256 indexed id, address indexed fulfiller, uint256 paid);

    /// @notice Request `id` expired unfulfilled; its fee went back to the requester.
    event Refunded(uint256 indexed id, address indexed requester, uint256 fee);

    // ------------------------------------------------------------------ errors

    /// @notice A constructor argument is zero or inconsistent (named).
    error InvalidConfiguration(string what);

    /// @notice No request with this id.
    error UnknownRequest(uint256 id);

    /// @notice The request is not in the state this call needs.
    error InvalidStatus(uint256 id, Status status);

    /// @notice The model fingerprint is not in the `ModelRegistry`.
    error ModelNotRegistered(bytes32 model);

    /// @notice The model fingerprint is suspended in the `AgentRegistry`.
    error ModelIsSuspended(bytes32 model);

    /// @notice The prompt is empty (or its hash zero).
    error EmptyPrompt();

    /// @notice The prompt is longer than `MAX_PROMPT` bytes.
    error PromptTooLong(uint256 length, uint256 max);

    /// @notice The output is longer than `MAX_OUTPUT` bytes.
    error OutputTooLong(uint256 length, uint256 max);

    /// @notice The fee must be positive.
    error ZeroFee();

    /// @notice The deadline must be in the future.
    error DeadlineInPast(uint64 deadline, uint256 timestamp);

    /// @notice The request's deadline passed.
    error DeadlinePassed(uint256 id, uint64 deadline);

    /// @notice The request's deadline has not passed yet.
    error DeadlineNotPassed(uint256 id, uint64 deadline);

    /// @notice The signature is not 65 bytes.
    error InvalidSignatureLength(uint256 length);

    /// @notice The signature's s is in the upper half of the curve order.
    error InvalidSignatureS(bytes32 s);

    /// @notice The signature's v is neither 27 nor 28.
    error InvalidSignatureV(uint8 v);

    /// @notice No address recovers from the signature.
    error InvalidSignature();

    /// @notice The signer is not an active agent (unregistered, suspended, or under the
    ///         registry's minimum stake).
    error FulfillerNotActive(address signer);

    /// @notice The signer is registered with another model.
    error WrongModel(address signer, bytes32 registered, bytes32 requested);

    /// @notice The signer's bonded stake is below `minFulfillerStake`.
    error InsufficientStake(address signer, uint256 bonded, uint256 needed);

    /// @notice The challenge window closed at `closedAt`.
    error ChallengeWindowClosed(uint256 id, uint256 closedAt);

    /// @notice The challenge window is still open until `closesAt`.
    error ChallengeWindowOpen(uint256 id, uint256 closesAt);

    /// @notice The challenger's output hash is the fulfilled one: nothing to dispute.
    error NoMismatch(uint256 id);

    /// @notice Only the registry's governor rules on challenges.
    error NotGovernor(address caller);

    /// @notice The time to rule on the challenge ended at `closedAt`.
    error ResolutionWindowClosed(uint256 id, uint256 closedAt);

    /// @notice The governor may still rule until `closesAt`.
    error ResolutionWindowOpen(uint256 id, uint256 closesAt);

    // ------------------------------------------------------------------ constructor

    /// @param token_ The stablecoin (the registry's stake token).
    /// @param agents_ The agent registry (this oracle must become its adjudicator).
    /// @param models_ The model registry.
    /// @param challengeWindow_ Seconds (positive) a fulfilment may be challenged.
    /// @param resolutionWindow_ Seconds (positive) the governor has to rule.
    /// @param challengeBond_ Base units a challenger deposits.
    /// @param minFulfillerStake_ Least bonded stake to fulfil.
    /// @param slashAmount_ Most stake an upheld challenge slashes.
    constructor(
        Stablecoin token_,
        AgentRegistry agents_,
        ModelRegistry models_,
        uint64 challengeWindow_,
        uint64 resolutionWindow_,
        uint256 challengeBond_,
        uint256 minFulfillerStake_,
        uint256 slashAmount_
    ) {
        if (address(models_) == address(0)) {
            revert InvalidConfiguration("models");
        }
        if (address(agents_) == address(0)) revert InvalidConfiguration("agents");
        if (address(agents_.token()) != address(token_)) revert InvalidConfiguration("token");
        if (challengeWindow_ == 0) revert InvalidConfiguration("challengeWindow");
        if (resolutionWindow_ == 0) revert InvalidConfiguration("resolutionWindow");
        token = token_;
        agents = agents_;
        models = models_;
        challengeWindow = challengeWindow_;
        resolutionWindow = resolutionWindow_;
        challengeBond = challengeBond_;
        minFulfillerStake = minFulfillerStake_;
        slashAmount = slashAmount_;
    }

    // ------------------------------------------------------------------ requests

    /// @notice Requests an inference on `prompt` (the exact text the model reads), paying
    ///         `fee` with `transferFrom` (approve this oracle first).
    /// @param model A registered, unsuspended model fingerprint.
    /// @param prompt The prompt text (1 to `MAX_PROMPT` bytes).
    /// @param samplingHash The sampling hash the attestation must carry.
    /// @param sampling The sampling parameters, for fulfillers (not checked here).
    /// @param fee Base units for the fulfiller (positive).
    /// @param deadline Last second a fulfilment is accepted (in the future).
    /// @return id The request id.
    function request(
        bytes32 model,
        bytes calldata prompt,
        bytes32 samplingHash,
        bytes calldata sampling,
        uint256 fee,
        uint64 deadline
    ) external returns (uint256 id) {
        if (prompt.length == 0) revert EmptyPrompt();
        if (prompt.length > MAX_PROMPT) revert PromptTooLong(prompt.length, MAX_PROMPT);
        id = _open(model, keccak256(prompt), samplingHash, fee, deadline);
        emit RequestDetails(id, prompt, "", sampling);
    }

    /// @notice As `request`, for a prompt given by its hash and a URI (long prompts).
    /// @param model A registered, unsuspended model fingerprint.
    /// @param promptHash Keccak-256 of the exact text the model reads (not zero).
    /// @param promptURI Where to get that text.
    /// @param samplingHash The sampling hash the attestation must carry.
    /// @param sampling The sampling parameters, for fulfillers.
    /// @param fee Base units for the fulfiller (positive).
    /// @param deadline Last second a fulfilment is accepted (in the future).
    /// @return id The request id.
    function requestByHash(
        bytes32 model,
        bytes32 promptHash,
        string calldata promptURI,
        bytes32 samplingHash,
        bytes calldata sampling,
        uint256 fee,
        uint64 deadline
    ) external returns (uint256 id) {
        if (promptHash == bytes32(0)) revert EmptyPrompt();
        id = _open(model, promptHash, samplingHash, fee, deadline);
        emit RequestDetails(id, "", promptURI, sampling);
    }

    /// @notice Gives the fee back to the requester of an unfulfilled request after its
    ///         deadline. Anyone may call it.
    /// @param id The request.
    function refund(uint256 id) external {
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Open);
        if (block.timestamp <= r.deadline) revert DeadlineNotPassed(id, r.deadline);
        r.status = Status.Refunded;
        emit Refunded(id, r.requester, r.fee);
        token.transfer(r.requester, r.fee);
    }

    // ------------------------------------------------------------------ fulfilment

    /// @notice Fulfils request `id` with `output` (stored for consumers) and the agent's
    ///         signature over the attestation (65 bytes r ‖ s ‖ v, low s). Anyone may send it;
    ///         the signer is the fulfiller.
    /// @param id An open request before its deadline.
    /// @param output The output text (at most `MAX_OUTPUT` bytes).
    /// @param signature The signer's EIP-712 signature of the attestation.
    function fulfil(uint256 id, bytes calldata output, bytes calldata signature) external {
        if (output.length > MAX_OUTPUT) revert OutputTooLong(output.length, MAX_OUTPUT);
        bytes32 outputHash = keccak256(output);
        address fulfiller = _fulfil(id, outputHash, signature);
        _outputs[id] = output;
        emit Fulfilled(id, fulfiller, outputHash, output, "");
    }

    /// @notice As `fulfil`, with the output's hash and a URI (long outputs; consumers read
    ///         only the hash on chain).
    /// @param id An open request before its deadline.
    /// @param outputHash Keccak-256 of the output.
    /// @param outputURI Where to get the output.
    /// @param signature The signer's EIP-712 signature of the attestation.
    function fulfilHash(
        uint256 id,
        bytes32 outputHash,
        string calldata outputURI,
        bytes calldata signature
    ) external {
        address fulfiller = _fulfil(id, outputHash, signature);
        emit Fulfilled(id, fulfiller, outputHash, "", outputURI);
    }

    /// @notice Pays the fulfiller once the challenge window has passed unchallenged. Anyone
    ///         may call it.
    /// @param id A fulfilled request.
    function finalize(uint256 id) external {
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Fulfilled);
        uint256 closesAt = uint256(r.fulfilledAt) + challengeWindow;
        if (block.timestamp < closesAt) revert ChallengeWindowOpen(id, closesAt);
        r.status = Status.Final;
        emit Finalized(id, r.fulfiller, r.fee);
        token.transfer(r.fulfiller, r.fee);
    }

    // ------------------------------------------------------------------ challenges

    /// @notice Challenges a fulfilment within the challenge window, with the hash of the
    ///         caller's re-run output, depositing `challengeBond` with `transferFrom`.
    /// @param id A fulfilled request.
    /// @param rerunOutputHash Keccak-256 of the re-run's output (not the fulfilled one).
    function challenge(uint256 id, bytes32 rerunOutputHash) external {
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Fulfilled);
        uint256 closedAt = uint256(r.fulfilledAt) + challengeWindow;
        if (block.timestamp >= closedAt) revert ChallengeWindowClosed(id, closedAt);
        if (rerunOutputHash == r.outputHash) revert NoMismatch(id);
        r.status = Status.Challenged;
        r.challenger = msg.sender;
        r.challengedAt = uint64(block.timestamp);
        r.challengeOutputHash = rerunOutputHash;
        emit Challenged(id, msg.sender, rerunOutputHash);
        token.transferFrom(msg.sender, address(this), challengeBond);
    }

    /// @notice The registry's governor rules on a challenge after re-running the inference.
    ///         Upheld: the fee back to the requester, the bond back to the challenger, up to
    ///         `slashAmount` of the fulfiller's stake slashed, the model suspended. Rejected:
    ///         fee and bond to the fulfiller.
    /// @param id A challenged request.
    /// @param upheld Whether the re-run proved the output wrong.
    /// @param reason Why, for the record (also the slash and suspension reason).
    function resolveChallenge(uint256 id, bool upheld, string calldata reason) external {
        if (msg.sender != agents.governor()) revert NotGovernor(msg.sender);
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Challenged);
        uint256 closedAt = uint256(r.challengedAt) + resolutionWindow;
        if (block.timestamp >= closedAt) revert ResolutionWindowClosed(id, closedAt);
        if (!upheld) {
            r.status = Status.Final;
            emit ChallengeResolved(id, false, 0, reason);
            token.transfer(r.fulfiller, r.fee + challengeBond);
            return;
        }
        r.status = Status.Overturned;
        uint256 stake = agents.getAgent(r.fulfiller).stake;
        uint256 slashed = stake < slashAmount ? stake : slashAmount;
        emit ChallengeResolved(id, true, slashed, reason);
        if (slashed != 0) agents.slash(r.fulfiller, slashed, reason);
        if (!agents.modelSuspended(r.model)) agents.suspendModel(r.model, reason);
        token.transfer(r.requester, r.fee);
        token.transfer(r.challenger, challengeBond);
    }

    /// @notice Ends a challenge the governor did not rule on within `resolutionWindow`: the
    ///         answer stands, the fee goes to the fulfiller and the bond back to the
    ///         challenger. Anyone may call it.
    /// @param id A challenged request.
    function settleExpiredChallenge(uint256 id) external {
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Challenged);
        uint256 closesAt = uint256(r.challengedAt) + resolutionWindow;
        if (block.timestamp < closesAt) revert ResolutionWindowOpen(id, closesAt);
        r.status = Status.Final;
        emit ChallengeLapsed(id);
        token.transfer(r.fulfiller, r.fee);
        token.transfer(r.challenger, challengeBond);
    }

    // ------------------------------------------------------------------ views

    /// @notice The answer to request `id`, for consumers: final when it was finalized, or
    ///         fulfilled and left unchallenged past the challenge window, and its model is not
    ///         suspended.
    /// @param id The request.
    /// @return isFinal Whether the answer can be relied on.
    /// @return output The output (empty when it was given by hash or not at all).
    /// @return outputHash Keccak-256 of the output (zero if not fulfilled).
    /// @return fulfilledAt When it was fulfilled (0 if not).
    function answer(uint256 id)
        external
        view
        returns (bool isFinal, bytes memory output, bytes32 outputHash, uint64 fulfilledAt)
    {
        Request storage r = _existing(id);
        Status s = r.status;
        isFinal =
            (s == Status.Final
                    || (s == Status.Fulfilled
                        && block.timestamp >= uint256(r.fulfilledAt) + challengeWindow))
                && !agents.modelSuspended(r.model);
        return (isFinal, _outputs[id], r.outputHash, r.fulfilledAt);
    }

    /// @notice A request (reverts with `UnknownRequest` if there is none).
    /// @param id The request.
    /// @return The request.
    function getRequest(uint256 id) external view returns (Request memory) {
        return _existing(id);
    }

    /// @notice The EIP-712 domain separator of attestations on this chain.
    /// @return The separator.
    function attestationDomainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid));
    }

    /// @notice The digest an agent signs to attest an inference.
    /// @param model The model fingerprint.
    /// @param promptHash Keccak-256 of the prompt text.
    /// @param samplingHash The sampling hash.
    /// @param outputHash Keccak-256 of the output.
    /// @return The EIP-712 digest.
    function attestationDigest(
        bytes32 model,
        bytes32 promptHash,
        bytes32 samplingHash,
        bytes32 outputHash
    ) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(ATTESTATION_TYPEHASH, model, promptHash, samplingHash, outputHash)
        );
        return keccak256(abi.encodePacked(hex"1901", attestationDomainSeparator(), structHash));
    }

    // ------------------------------------------------------------------ internals

    function _open(
        bytes32 model,
        bytes32 promptHash,
        bytes32 samplingHash,
        uint256 fee,
        uint64 deadline
    ) private returns (uint256 id) {
        if (!models.isRegistered(model)) revert ModelNotRegistered(model);
        if (agents.modelSuspended(model)) revert ModelIsSuspended(model);
        if (fee == 0) revert ZeroFee();
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        id = ++requestCount;
        Request storage r = _requests[id];
        r.requester = msg.sender;
        r.status = Status.Open;
        r.deadline = deadline;
        r.model = model;
        r.promptHash = promptHash;
        r.samplingHash = samplingHash;
        r.fee = fee;
        emit Requested(id, msg.sender, model, promptHash, samplingHash, fee, deadline);
        token.transferFrom(msg.sender, address(this), fee);
    }

    function _fulfil(uint256 id, bytes32 outputHash, bytes calldata signature)
        private
        returns (address signer)
    {
        Request storage r = _existing(id);
        _requireStatus(id, r, Status.Open);
        if (block.timestamp > r.deadline) revert DeadlinePassed(id, r.deadline);
        bytes32 model = r.model;
        signer =
            _recover(attestationDigest(model, r.promptHash, r.samplingHash, outputHash), signature);
        if (agents.modelSuspended(model)) revert ModelIsSuspended(model);
        if (!agents.isActive(signer)) revert FulfillerNotActive(signer);
        bytes32 registered = agents.getAgent(signer).modelFingerprint;
        if (registered != model) revert WrongModel(signer, registered, model);
        uint256 bonded = agents.bondedStake(signer);
        if (bonded < minFulfillerStake) {
            revert InsufficientStake(signer, bonded, minFulfillerStake);
        }
        r.status = Status.Fulfilled;
        r.fulfiller = signer;
        r.fulfilledAt = uint64(block.timestamp);
        r.outputHash = outputHash;
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert InvalidSignatureLength(signature.length);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_CURVE_ORDER) revert InvalidSignatureS(s);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
        return recovered;
    }

    function _existing(uint256 id) private view returns (Request storage r) {
        r = _requests[id];
        if (r.status == Status.None) revert UnknownRequest(id);
    }

    function _requireStatus(uint256 id, Request storage r, Status expected) private view {
        if (r.status != expected) revert InvalidStatus(id, r.status);
    }
}
