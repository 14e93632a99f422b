// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {AgentRegistry} from "../src/AgentRegistry.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {InferenceOracle} from "../src/InferenceOracle.sol";
import {InferenceConsumer} from "../src/InferenceConsumer.sol";

contract InferenceOracleTest is TestBase {
    Stablecoin internal token;
    AgentRegistry internal agents;
    ModelRegistry internal models;
    InferenceOracle internal oracle;

    bytes32 internal constant MODEL = keccak256("smollm2-135m-instruct.gguf");
    bytes32 internal constant OTHER_MODEL = keccak256("other.gguf");
    bytes32 internal constant SAMPLING = keccak256("greedy, seed 7, no grammar");
    bytes internal constant PROMPT = "<|im_start|>user\nCapital of Portugal?<|im_end|>\n";
    bytes internal constant OUTPUT = "Lisbon";
    bytes internal constant SAMPLING_JSON = '{"params":{"seed":7}}';
    uint64 internal constant CHALLENGE = 1 hours;
    uint64 internal constant RULING = 1 days;
    uint256 internal constant BOND = 2 * UNIT;
    uint256 internal constant MIN_STAKE = 5 * UNIT;
    uint256 internal constant SLASH = 8 * UNIT;
    uint256 internal constant FEE = 3 * UNIT;
    uint64 internal constant DEADLINE = uint64(START + 10 minutes);

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        agents = new AgentRegistry(token, governor, treasury, 3 days, 1 days, 0);
        models = new ModelRegistry();
        oracle =
            new InferenceOracle(token, agents, models, CHALLENGE, RULING, BOND, MIN_STAKE, SLASH);
        vm.prank(governor);
        agents.setAdjudicator(address(oracle), true);
        models.register(MODEL, "SmolLM2", "0.1.2", "", new bytes32[](0));
        models.register(OTHER_MODEL, "Other", "1", "", new bytes32[](0));
        address[4] memory people = [alice, bob, carol, mallory];
        for (uint256 i; i < people.length; ++i) {
            token.transfer(people[i], 100 * UNIT);
            vm.startPrank(people[i]);
            token.approve(address(agents), type(uint256).max);
            token.approve(address(oracle), type(uint256).max);
            vm.stopPrank();
        }
        // alice serves MODEL with 10 staked; bob asks.
        registerAgent(alice, MODEL, 10 * UNIT);
    }

    // ------------------------------------------------------------------ helpers

    function registerAgent(address who, bytes32 model, uint256 stake) internal {
        vm.prank(who);
        agents.register("ws://127.0.0.1:9000", "", model, new AgentRegistry.Service[](0), stake);
    }

    function ask() internal returns (uint256 id) {
        id = askUntil(DEADLINE);
    }

    function askUntil(uint64 deadline) internal returns (uint256 id) {
        vm.prank(bob);
        id = oracle.request(MODEL, PROMPT, SAMPLING, SAMPLING_JSON, FEE, deadline);
    }

    /// The attestation digest computed here from first principles.
    function digest(bytes32 model, bytes32 promptHash, bytes32 outputHash)
        internal
        view
        returns (bytes32)
    {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId)"),
                keccak256("Agora Inference"),
                keccak256("1"),
                block.chainid
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)"
                ),
                model,
                promptHash,
                SAMPLING,
                outputHash
            )
        );
        return keccak256(abi.encodePacked(hex"1901", domain, structHash));
    }

    function attest(uint256 key, bytes memory output) internal view returns (bytes memory) {
        return signBytes(key, digest(MODEL, keccak256(PROMPT), keccak256(output)));
    }

    function fulfilAs(uint256 key, uint256 id, bytes memory output) internal {
        oracle.fulfil(id, output, attest(key, output));
    }

    function challengeBy(address who, uint256 id) internal {
        vm.prank(who);
        oracle.challenge(id, keccak256("Porto"));
    }

    function status(uint256 id) internal view returns (uint256) {
        return uint256(oracle.getRequest(id).status);
    }

    function invalidStatus(uint256 id, InferenceOracle.Status s)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeWithSelector(InferenceOracle.InvalidStatus.selector, id, s);
    }

    // ------------------------------------------------------------------ construction

    function test_constructor_checksConfiguration() public {
        bytes4 sel = InferenceOracle.InvalidConfiguration.selector;
        vm.expectRevert(abi.encodeWithSelector(sel, "models"));
        new InferenceOracle(token, agents, ModelRegistry(address(0)), 1, 1, 0, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(sel, "agents"));
        new InferenceOracle(token, AgentRegistry(address(0)), models, 1, 1, 0, 0, 0);
        Stablecoin otherToken = newToken(false);
        vm.expectRevert(abi.encodeWithSelector(sel, "token"));
        new InferenceOracle(otherToken, agents, models, 1, 1, 0, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(sel, "challengeWindow"));
        new InferenceOracle(token, agents, models, 0, 1, 0, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(sel, "resolutionWindow"));
        new InferenceOracle(token, agents, models, 1, 0, 0, 0, 0);
        vm.assertEq(address(oracle.token()), address(token), "token");
        vm.assertEq(address(oracle.agents()), address(agents), "agents");
        vm.assertEq(address(oracle.models()), address(models), "models");
        vm.assertEq(uint256(oracle.challengeWindow()), CHALLENGE, "challenge window");
        vm.assertEq(uint256(oracle.resolutionWindow()), RULING, "resolution window");
        vm.assertEq(oracle.challengeBond(), BOND, "bond");
        vm.assertEq(oracle.minFulfillerStake(), MIN_STAKE, "min stake");
        vm.assertEq(oracle.slashAmount(), SLASH, "slash");
    }

    function test_attestationDigest_matchesFirstPrinciples() public {
        bytes32 expected = digest(MODEL, keccak256(PROMPT), keccak256(OUTPUT));
        vm.assertEq(
            oracle.attestationDigest(MODEL, keccak256(PROMPT), SAMPLING, keccak256(OUTPUT)),
            expected,
            "digest"
        );
        vm.assertEq(
            oracle.ATTESTATION_TYPEHASH(),
            keccak256(
                "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)"
            ),
            "type hash"
        );
        vm.assertEq(
            oracle.attestationDomainSeparator(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId)"),
                    keccak256("Agora Inference"),
                    keccak256("1"),
                    block.chainid
                )
            ),
            "domain"
        );
        vm.chainId(8453);
        vm.assertTrue(
            oracle.attestationDigest(MODEL, keccak256(PROMPT), SAMPLING, keccak256(OUTPUT))
                != expected,
            "bound to the chain"
        );
    }

    // ------------------------------------------------------------------ requests

    function test_request_pullsFeeAndRecords() public {
        vm.expectEmit(true, true, true, true, address(oracle));
        emit InferenceOracle.Requested(1, bob, MODEL, keccak256(PROMPT), SAMPLING, FEE, DEADLINE);
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.RequestDetails(1, PROMPT, "", SAMPLING_JSON);
        uint256 id = ask();
        vm.assertEq(id, 1, "first id");
        vm.assertEq(oracle.requestCount(), 1, "count");
        vm.assertEq(token.balanceOf(address(oracle)), FEE, "fee held");
        vm.assertEq(token.balanceOf(bob), 100 * UNIT - FEE, "fee paid");
        InferenceOracle.Request memory r = oracle.getRequest(id);
        vm.assertEq(r.requester, bob, "requester");
        vm.assertEq(uint256(r.status), uint256(InferenceOracle.Status.Open), "open");
        vm.assertEq(uint256(r.deadline), DEADLINE, "deadline");
        vm.assertEq(r.model, MODEL, "model");
        vm.assertEq(r.promptHash, keccak256(PROMPT), "prompt hash");
        vm.assertEq(r.samplingHash, SAMPLING, "sampling hash");
        vm.assertEq(r.fee, FEE, "fee");

        bytes32 h = keccak256("a long prompt");
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.RequestDetails(2, "", "ipfs://prompt", SAMPLING_JSON);
        vm.prank(bob);
        id = oracle.requestByHash(MODEL, h, "ipfs://prompt", SAMPLING, SAMPLING_JSON, FEE, DEADLINE);
        vm.assertEq(oracle.getRequest(id).promptHash, h, "given hash");
    }

    function test_request_rejectsBadRequests() public {
        vm.startPrank(bob);
        vm.expectRevert(InferenceOracle.EmptyPrompt.selector);
        oracle.request(MODEL, "", SAMPLING, "", FEE, DEADLINE);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.PromptTooLong.selector, 32_769, 32_768)
        );
        oracle.request(MODEL, new bytes(32_769), SAMPLING, "", FEE, DEADLINE);
        vm.expectRevert(InferenceOracle.EmptyPrompt.selector);
        oracle.requestByHash(MODEL, bytes32(0), "", SAMPLING, "", FEE, DEADLINE);
        bytes32 unknown = keccak256("unknown.gguf");
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.ModelNotRegistered.selector, unknown)
        );
        oracle.request(unknown, PROMPT, SAMPLING, "", FEE, DEADLINE);
        vm.expectRevert(InferenceOracle.ZeroFee.selector);
        oracle.request(MODEL, PROMPT, SAMPLING, "", 0, DEADLINE);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.DeadlineInPast.selector, uint64(START), START)
        );
        oracle.request(MODEL, PROMPT, SAMPLING, "", FEE, uint64(START));
        vm.stopPrank();

        vm.prank(governor);
        agents.suspendModel(MODEL, "bad");
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.ModelIsSuspended.selector, MODEL));
        vm.prank(bob);
        oracle.request(MODEL, PROMPT, SAMPLING, "", FEE, DEADLINE);
        vm.assertEq(oracle.requestCount(), 0, "nothing opened");
    }

    function test_unknownRequest() public {
        bytes memory err = abi.encodeWithSelector(InferenceOracle.UnknownRequest.selector, 7);
        vm.expectRevert(err);
        oracle.getRequest(7);
        vm.expectRevert(err);
        oracle.answer(7);
        vm.expectRevert(err);
        oracle.refund(7);
        vm.expectRevert(err);
        oracle.fulfil(7, OUTPUT, "");
    }

    function test_refund_afterTheDeadlineOnly() public {
        uint256 id = ask();
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.DeadlineNotPassed.selector, id, DEADLINE)
        );
        oracle.refund(id);
        vm.warp(DEADLINE + 1);
        vm.expectEmit(true, true, false, true, address(oracle));
        emit InferenceOracle.Refunded(id, bob, FEE);
        oracle.refund(id);
        vm.assertEq(token.balanceOf(bob), 100 * UNIT, "fee back");
        vm.assertEq(status(id), uint256(InferenceOracle.Status.Refunded), "refunded");
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Refunded));
        oracle.refund(id);
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Refunded));
        fulfilAs(ALICE_KEY, id, OUTPUT);
    }

    // ------------------------------------------------------------------ fulfilment

    function test_fulfil_byAnyRelayer_paysTheSignerOnceFinal() public {
        uint256 id = ask();
        vm.expectEmit(true, true, false, true, address(oracle));
        emit InferenceOracle.Fulfilled(id, alice, keccak256(OUTPUT), OUTPUT, "");
        vm.prank(carol); // a relayer: the signer is the fulfiller
        fulfilAs(ALICE_KEY, id, OUTPUT);
        InferenceOracle.Request memory r = oracle.getRequest(id);
        vm.assertEq(r.fulfiller, alice, "fulfiller");
        vm.assertEq(uint256(r.fulfilledAt), START, "when");
        vm.assertEq(r.outputHash, keccak256(OUTPUT), "output hash");

        (bool isFinal, bytes memory output, bytes32 outputHash, uint64 at) = oracle.answer(id);
        vm.assertFalse(isFinal, "not final inside the window");
        vm.assertEq(output, OUTPUT, "output");
        vm.assertEq(outputHash, keccak256(OUTPUT), "hash");
        vm.assertEq(uint256(at), START, "at");

        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Fulfilled));
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.expectRevert(
            abi.encodeWithSelector(
                InferenceOracle.ChallengeWindowOpen.selector, id, START + CHALLENGE
            )
        );
        oracle.finalize(id);

        vm.warp(START + CHALLENGE);
        (isFinal,,,) = oracle.answer(id);
        vm.assertTrue(isFinal, "final once the window passed");
        vm.expectEmit(true, true, false, true, address(oracle));
        emit InferenceOracle.Finalized(id, alice, FEE);
        oracle.finalize(id);
        vm.assertEq(token.balanceOf(alice), 90 * UNIT + FEE, "fee to the signer");
        vm.assertEq(token.balanceOf(carol), 100 * UNIT, "relayer unpaid");
        (isFinal,,,) = oracle.answer(id);
        vm.assertTrue(isFinal, "final");
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Final));
        oracle.finalize(id);
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Final));
        oracle.challenge(id, bytes32(0));
    }

    function test_fulfilHash_keepsOnlyTheHash() public {
        uint256 id = ask();
        bytes32 h = keccak256(OUTPUT);
        bytes memory sig = attest(ALICE_KEY, OUTPUT);
        vm.expectEmit(true, true, false, true, address(oracle));
        emit InferenceOracle.Fulfilled(id, alice, h, "", "ipfs://out");
        oracle.fulfilHash(id, h, "ipfs://out", sig);
        (, bytes memory output, bytes32 outputHash,) = oracle.answer(id);
        vm.assertEq(output.length, 0, "no text");
        vm.assertEq(outputHash, h, "hash");
    }

    function test_fulfil_rejectsBadSignatures() public {
        uint256 id = ask();
        bytes32 d = digest(MODEL, keccak256(PROMPT), keccak256(OUTPUT));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_KEY, d);
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.InvalidSignatureLength.selector, 64));
        oracle.fulfil(id, OUTPUT, abi.encodePacked(r, s));
        (uint8 hv, bytes32 hr, bytes32 hs) = highS(v, r, s);
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.InvalidSignatureS.selector, hs));
        oracle.fulfil(id, OUTPUT, abi.encodePacked(hr, hs, hv));
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.InvalidSignatureV.selector, 29));
        oracle.fulfil(id, OUTPUT, abi.encodePacked(r, s, uint8(29)));
        vm.expectRevert(InferenceOracle.InvalidSignature.selector);
        oracle.fulfil(id, OUTPUT, abi.encodePacked(bytes32(0), s, v));
        // A signature over another output recovers to someone who is no agent.
        address stranger = ecrecover(digest(MODEL, keccak256(PROMPT), keccak256("Porto")), v, r, s);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.FulfillerNotActive.selector, stranger)
        );
        oracle.fulfil(id, "Porto", abi.encodePacked(r, s, v));
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.OutputTooLong.selector, 8_193, 8_192)
        );
        oracle.fulfil(id, new bytes(8_193), abi.encodePacked(r, s, v));
        vm.assertEq(status(id), uint256(InferenceOracle.Status.Open), "still open");
    }

    function test_fulfil_onlyByAnActiveStakedAgentOfThatModel() public {
        uint256 id = ask();
        // carol is no agent.
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.FulfillerNotActive.selector, carol));
        fulfilAs(CAROL_KEY, id, OUTPUT);
        // carol serves another model.
        registerAgent(carol, OTHER_MODEL, 10 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.WrongModel.selector, carol, OTHER_MODEL, MODEL)
        );
        fulfilAs(CAROL_KEY, id, OUTPUT);
        // mallory serves MODEL with too little stake.
        registerAgent(mallory, MODEL, 4 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                InferenceOracle.InsufficientStake.selector, mallory, 4 * UNIT, MIN_STAKE
            )
        );
        fulfilAs(MALLORY_KEY, id, OUTPUT);
        // alice, suspended.
        vm.prank(governor);
        agents.suspendAgent(alice, "spam");
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.FulfillerNotActive.selector, alice));
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.prank(governor);
        agents.reinstateAgent(alice);
        // The model, suspended (the kill switch).
        vm.prank(governor);
        agents.suspendModel(MODEL, "bad");
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.ModelIsSuspended.selector, MODEL));
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.prank(governor);
        agents.reinstateModel(MODEL);
        // Past the deadline.
        vm.warp(DEADLINE + 1);
        vm.expectRevert(
            abi.encodeWithSelector(InferenceOracle.DeadlinePassed.selector, id, DEADLINE)
        );
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.warp(DEADLINE);
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.assertEq(status(id), uint256(InferenceOracle.Status.Fulfilled), "at the deadline");
    }

    // ------------------------------------------------------------------ challenges

    function test_challenge_upheld_refundsSlashesAndSuspends() public {
        uint256 id = ask();
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.warp(START + CHALLENGE - 1);
        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.NoMismatch.selector, id));
        vm.prank(carol);
        oracle.challenge(id, keccak256(OUTPUT));
        vm.expectEmit(true, true, false, true, address(oracle));
        emit InferenceOracle.Challenged(id, carol, keccak256("Porto"));
        challengeBy(carol, id);
        vm.assertEq(token.balanceOf(carol), 100 * UNIT - BOND, "bond held");
        InferenceOracle.Request memory r = oracle.getRequest(id);
        vm.assertEq(r.challenger, carol, "challenger");
        vm.assertEq(r.challengeOutputHash, keccak256("Porto"), "re-run hash");
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Challenged));
        challengeBy(mallory, id);
        (bool isFinal,,,) = oracle.answer(id);
        vm.assertFalse(isFinal, "not final while challenged");

        vm.expectRevert(abi.encodeWithSelector(InferenceOracle.NotGovernor.selector, carol));
        vm.prank(carol);
        oracle.resolveChallenge(id, true, "");

        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.ChallengeResolved(id, true, SLASH, "re-run gave Porto");
        vm.prank(governor);
        oracle.resolveChallenge(id, true, "re-run gave Porto");
        vm.assertEq(status(id), uint256(InferenceOracle.Status.Overturned), "overturned");
        vm.assertEq(token.balanceOf(bob), 100 * UNIT, "fee refunded");
        vm.assertEq(token.balanceOf(carol), 100 * UNIT, "bond back");
        vm.assertEq(agents.getAgent(alice).stake, 2 * UNIT, "slashed");
        vm.assertEq(token.balanceOf(treasury), SLASH, "to the treasury");
        vm.assertTrue(agents.modelSuspended(MODEL), "kill switch");
        vm.assertEq(token.balanceOf(address(oracle)), 0, "nothing left");
        (isFinal,,,) = oracle.answer(id);
        vm.assertFalse(isFinal, "overturned answers are not final");
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Overturned));
        vm.prank(governor);
        oracle.resolveChallenge(id, false, "");
    }

    function test_challenge_upheldTwice_slashesWhatIsLeftAndSuspendsOnce() public {
        uint256 first = ask();
        uint256 second = ask();
        uint256 third = ask();
        fulfilAs(ALICE_KEY, first, OUTPUT);
        fulfilAs(ALICE_KEY, second, OUTPUT);
        fulfilAs(ALICE_KEY, third, OUTPUT);
        challengeBy(carol, first);
        challengeBy(carol, second);
        challengeBy(carol, third);
        vm.startPrank(governor);
        oracle.resolveChallenge(first, true, "mismatch");
        // 2 left of 10 staked; the model is suspended already.
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.ChallengeResolved(second, true, 2 * UNIT, "mismatch");
        oracle.resolveChallenge(second, true, "mismatch");
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.ChallengeResolved(third, true, 0, "mismatch");
        oracle.resolveChallenge(third, true, "mismatch");
        vm.stopPrank();
        vm.assertEq(agents.getAgent(alice).stake, 0, "all slashed");
        vm.assertEq(token.balanceOf(treasury), 10 * UNIT, "treasury");
        vm.assertEq(token.balanceOf(bob), 100 * UNIT, "every fee refunded");
        vm.assertEq(token.balanceOf(carol), 100 * UNIT, "every bond back");
    }

    function test_challenge_rejected_paysTheFulfillerFeeAndBond() public {
        uint256 id = ask();
        fulfilAs(ALICE_KEY, id, OUTPUT);
        challengeBy(carol, id);
        vm.warp(START + RULING - 1);
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.ChallengeResolved(id, false, 0, "re-run matches");
        vm.prank(governor);
        oracle.resolveChallenge(id, false, "re-run matches");
        vm.assertEq(status(id), uint256(InferenceOracle.Status.Final), "final");
        vm.assertEq(token.balanceOf(alice), 90 * UNIT + FEE + BOND, "fee and bond");
        vm.assertEq(token.balanceOf(carol), 100 * UNIT - BOND, "bond lost");
        vm.assertFalse(agents.modelSuspended(MODEL), "model fine");
        (bool isFinal, bytes memory output,,) = oracle.answer(id);
        vm.assertTrue(isFinal, "final");
        vm.assertEq(output, OUTPUT, "answer");
    }

    function test_challenge_windows() public {
        uint256 id = ask();
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Open));
        challengeBy(carol, id);
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Open));
        oracle.finalize(id);
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Fulfilled));
        oracle.settleExpiredChallenge(id);
        vm.expectRevert(invalidStatus(id, InferenceOracle.Status.Fulfilled));
        vm.prank(governor);
        oracle.resolveChallenge(id, true, "");
        vm.warp(START + CHALLENGE);
        vm.expectRevert(
            abi.encodeWithSelector(
                InferenceOracle.ChallengeWindowClosed.selector, id, START + CHALLENGE
            )
        );
        challengeBy(carol, id);

        uint256 other = askUntil(uint64(block.timestamp + 10 minutes));
        fulfilAs(ALICE_KEY, other, OUTPUT);
        uint256 challengedAt = block.timestamp;
        challengeBy(carol, other);
        vm.expectRevert(
            abi.encodeWithSelector(
                InferenceOracle.ResolutionWindowOpen.selector, other, challengedAt + RULING
            )
        );
        oracle.settleExpiredChallenge(other);
        vm.warp(challengedAt + RULING);
        vm.expectRevert(
            abi.encodeWithSelector(
                InferenceOracle.ResolutionWindowClosed.selector, other, challengedAt + RULING
            )
        );
        vm.prank(governor);
        oracle.resolveChallenge(other, true, "");
        vm.expectEmit(true, false, false, true, address(oracle));
        emit InferenceOracle.ChallengeLapsed(other);
        oracle.settleExpiredChallenge(other);
        vm.assertEq(status(other), uint256(InferenceOracle.Status.Final), "answer stands");
        vm.assertEq(token.balanceOf(carol), 100 * UNIT, "bond back");
        vm.assertEq(token.balanceOf(alice), 90 * UNIT + FEE, "fee to the fulfiller");
    }

    function test_answer_isNotFinalWhileItsModelIsSuspended() public {
        uint256 id = ask();
        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.warp(START + CHALLENGE);
        oracle.finalize(id);
        vm.prank(governor);
        agents.suspendModel(MODEL, "found out elsewhere");
        (bool isFinal,,,) = oracle.answer(id);
        vm.assertFalse(isFinal, "kill switch");
    }

    // ------------------------------------------------------------------ consumer

    function test_consumer_readsTheAnswerLikeAFeed() public {
        InferenceConsumer consumer = new InferenceConsumer(oracle, MODEL, SAMPLING, SAMPLING_JSON);
        vm.assertEq(address(consumer.token()), address(token), "token");
        vm.assertEq(consumer.model(), MODEL, "model");
        vm.assertEq(consumer.samplingHash(), SAMPLING, "sampling hash");
        vm.assertEq(consumer.sampling(), SAMPLING_JSON, "sampling");
        vm.expectRevert(InferenceConsumer.NoAnswerYet.selector);
        consumer.latestAnswer();

        vm.startPrank(bob);
        token.approve(address(consumer), FEE);
        vm.expectEmit(true, true, false, true, address(consumer));
        emit InferenceConsumer.Asked(1, bob, FEE);
        uint256 id = consumer.ask(PROMPT, FEE, DEADLINE);
        vm.stopPrank();
        vm.assertEq(consumer.latestRequest(), id, "latest");
        vm.assertEq(oracle.getRequest(id).requester, address(consumer), "the consumer asked");

        fulfilAs(ALICE_KEY, id, OUTPUT);
        vm.expectRevert(abi.encodeWithSelector(InferenceConsumer.NoFinalAnswer.selector, id));
        consumer.update();
        vm.warp(START + CHALLENGE);
        vm.expectEmit(true, false, false, true, address(consumer));
        emit InferenceConsumer.Updated(id, OUTPUT, START);
        consumer.update();
        (string memory answer, uint256 updatedAt) = consumer.latestAnswer();
        vm.assertEq(answer, "Lisbon", "answer");
        vm.assertEq(updatedAt, START, "updated at");
        vm.assertEq(consumer.lastAnswer(), OUTPUT, "kept");
        vm.assertEq(consumer.lastUpdatedAt(), START, "kept when");
    }
}
