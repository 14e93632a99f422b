//! An LLM seller of a deployment (`skills = ["llm"]`, `llm.complete`, `oracle =
//! true`), started by [`RunningAgent::start`] on the embedded chain with the real
//! default model: a negotiation buyer that re-runs every job pays it for completions
//! in a channel; the real x402 clients (PyPI `x402`, npm `@x402/fetch`) pay for some
//! over HTTP and check the `AGORA-ATTESTATION` header, and the A2A client (PyPI
//! `a2a-sdk`) checks the attestation in its task's artifact; the agent fulfils an
//! `InferenceOracle` request for its model; and the audit re-runs every attested
//! inference in the journals, the x402 sales' included.

use std::sync::Arc;

use agent_sdk::{Peer, StaticDirectory};
use deploy::config::Config;
use deploy::layout::agent_dir;
use deploy::RunningAgent;
use llm::oracle::{check_fulfilment, OracleSampling, PromptFetch, Verdict};
use llm::service::{check_served, rerun_journals, AttestationCheck, COMPLETE_KIND};
use llm::test_utils::market::task;
use llm::test_utils::{model_path, shared_engine};
use llm::SamplingParams;
use negotiation::audit::ChainCheck;
use negotiation::test_utils::{buyer_with, host, Chain, Node};
use negotiation::PaymentMode;
use registry::chain::{self, Deployment, NewInferenceRequest, OracleStatus, PromptSource};
use registry::devnet::{dev_key, dev_wallet};
use registry::discovery::Discovery;
use wallets::Amount;

const PASSWORD_ENV: &str = "AGORA_LLM_DEPLOY_TEST_PASSWORD";

fn usdc(s: &str) -> Amount {
    format!("{s} USDC").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_llm_agent_sells_attested_completions_and_serves_the_oracle() {
    let python = x402::test_utils::python();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (site, mut setup, address) = crate::one_agent_site(
        dir,
        PASSWORD_ENV,
        "scribe",
        &format!(
            "skills = [\"llm\"]\nmodel = {:?}\noracle = true\n\
             services = [{{ skill = \"llm.complete\", price = \"0.02 USDC\", unit = \"completion\" }}]\n",
            model_path().display().to_string()
        ),
    )
    .await;
    assert!(Config::load(&site.config_path).unwrap().agents[0].oracle);
    let agent = RunningAgent::start(&site, "scribe").await.unwrap();
    assert_eq!(agent.address(), address);
    let engine = shared_engine();
    let model = engine.fingerprint().to_b256();
    let addresses = setup.addresses;
    let chain_id = addresses.chain_id;
    let price = usdc("0.02");

    // Registered with its model, which it anchored in the ModelRegistry for the oracle.
    let discovery = Arc::new(
        Discovery::open(dir.join("discovery"), &setup.url, addresses)
            .await
            .unwrap(),
    );
    discovery.sync().await.unwrap();
    let record = discovery.agent_at(address).unwrap().unwrap();
    assert_eq!(record.model_fingerprint, model.0);
    assert_eq!(record.services[0].skill, COMPLETE_KIND);
    let reader = Deployment::at(
        chain::connect(&setup.url, Arc::new(dev_wallet(0)))
            .await
            .unwrap(),
        &addresses,
    );
    assert_eq!(
        reader.model_record(model).await.unwrap().unwrap().publisher,
        address
    );

    // 1. A negotiation buyer that checks every attestation and re-runs every job.
    let chain = Chain {
        node: Node::Devnet(setup.node.take().unwrap()),
        addresses,
        minter: reader,
    };
    let buyer_host = host(dir, "buyer-host", chain_id);
    let directory = StaticDirectory::default().with(
        COMPLETE_KIND,
        Peer {
            address,
            endpoint: Some(agent.url().to_owned()),
            price: None,
        },
    );
    let buyer_wallet = Arc::new(dev_wallet(4));
    let mut buyer = buyer_with(
        &buyer_host,
        dir,
        &chain,
        usdc("1"),
        directory,
        buyer_wallet.clone(),
    )
    .await;
    buyer.buyer = buyer
        .buyer
        .clone()
        .with_settlement(chain.settlement(buyer_wallet).await)
        .with_channel_orders(5)
        .with_delivery_check(AttestationCheck::new(discovery).with_rerun(engine.clone(), 1.0));
    chain
        .minter
        .mint(buyer.handle.address(), usdc("10"))
        .await
        .unwrap();
    for i in 0..3u32 {
        let deal = buyer
            .buyer
            .hire(
                &buyer.handle.context(),
                &task(i, "Name a colour.").to_task(),
                COMPLETE_KIND,
                usdc("0.5"),
                PaymentMode::Channel,
            )
            .await
            .unwrap();
        assert_eq!(deal.agreement.agreement.seller, address);
        assert!(deal.delivery.attestation.is_some());
        assert!(!deal.result()["output"].as_str().unwrap().is_empty());
    }

    // 2. The real x402 client pays for a completion and checks the attestation.
    let x402_buyer = dev_wallet(5).address();
    chain.minter.mint(x402_buyer, usdc("1")).await.unwrap();
    let before = chain.balance(x402_buyer).await;
    let seller_before = chain.balance(address).await;
    let url = format!(
        "{}/x402/{COMPLETE_KIND}",
        agent.url().replacen("ws://", "http://", 1)
    );
    let network = format!("eip155:{chain_id}");
    let asset = wallets::Address(addresses.stablecoin.0).to_string();
    let out = x402::test_utils::run_buyer(
        &python,
        "pay_seller.py",
        &crate::client_args(
            &url,
            &network,
            &asset,
            price,
            &[
                (
                    "--body",
                    r#"{"prompt":"Name a fruit.","seed":3,"maxTokens":8}"#,
                ),
                (
                    "--other-body",
                    r#"{"prompt":"Name a tree.","seed":3,"maxTokens":8}"#,
                ),
            ],
        ),
        &dev_key(5),
    )
    .await;
    let offer = &out["unpaid"]["paymentRequired"]["accepts"][0];
    assert_eq!(offer["payTo"], address.to_string(), "{out}");
    assert_eq!(offer["amount"], price.base_units().to_string(), "{out}");
    assert_eq!(out["unpaid"]["bazaarSchemaValid"], true, "{out}");
    let paid = &out["paid"];
    assert_eq!(paid["status"], 200, "{out}");
    let signed = check_served(&paid["attestation"], &paid["body"], address, chain_id).unwrap();
    assert_eq!(signed.attestation.model_fingerprint, model);
    // The attestation is bound to the output: another output does not check.
    let mut altered = paid["body"].clone();
    altered["output"] = format!("{} (altered)", paid["body"]["output"].as_str().unwrap()).into();
    assert!(
        check_served(&paid["attestation"], &altered, address, chain_id)
            .unwrap_err()
            .contains("output")
    );
    // A replay gets the same answer and attestation, and is not charged.
    assert_eq!(out["replayed"]["status"], 200, "{out}");
    assert_eq!(out["replayed"]["attestation"], paid["attestation"]);
    assert_eq!(out["otherBody"]["status"], 409, "{out}");
    let httpx = &out["httpx"];
    assert_eq!(httpx["status"], 200, "{out}");
    check_served(&httpx["attestation"], &httpx["body"], address, chain_id).unwrap();
    let twice = Amount::from_base_units(2 * price.base_units());
    assert_eq!(
        chain.balance(x402_buyer).await,
        before.checked_sub(twice).unwrap()
    );
    assert_eq!(
        chain.balance(address).await,
        seller_before.checked_add(twice).unwrap()
    );

    // The TypeScript client (@x402/fetch with viem) reads the header too.
    let ts_buyer = dev_wallet(7).address();
    chain.minter.mint(ts_buyer, usdc("1")).await.unwrap();
    let ts = x402::test_utils::run_node_buyer(
        "pay_seller.mjs",
        &crate::client_args(
            &url,
            &network,
            &asset,
            price,
            &[(
                "--body",
                r#"{"prompt":"Name a river.","seed":5,"maxTokens":8}"#,
            )],
        ),
        &dev_key(7),
    )
    .await;
    assert_eq!(ts["paid"]["status"], 200, "{ts}");
    check_served(
        &ts["paid"]["attestation"],
        &ts["paid"]["body"],
        address,
        chain_id,
    )
    .unwrap();
    assert_eq!(ts["replayed"]["attestation"], ts["paid"]["attestation"]);

    // The A2A client (a2a-sdk) hires it, paying on its task with A2A's x402
    // extension; the attestation is in the artifact's metadata.
    let a2a_buyer = dev_wallet(8).address();
    chain.minter.mint(a2a_buyer, usdc("1")).await.unwrap();
    let a2a_url = agent.url().replacen("ws://", "http://", 1);
    let a2a = x402::test_utils::run(
        &a2a::test_utils::python(),
        &a2a::test_utils::script("pay_agent.py"),
        &crate::client_args(
            &a2a_url,
            &network,
            &asset,
            price,
            &[(
                "--request",
                r#"{"prompt":"Name a mountain.","seed":9,"maxTokens":8}"#,
            )],
        ),
        &dev_key(8),
    )
    .await;
    assert_eq!(a2a["card"]["skills"][0]["id"], COMPLETE_KIND, "{a2a}");
    for way in ["plain", "stream"] {
        let events = a2a[way]["paid"].as_array().unwrap();
        let done = &events
            .iter()
            .rev()
            .find(|e| e.get("task").is_some())
            .unwrap()["task"];
        assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{a2a}");
        let artifact = &done["artifacts"][0];
        check_served(
            &artifact["metadata"][a2a::paid::ATTESTATION_KEY],
            &artifact["parts"][0]["data"],
            address,
            chain_id,
        )
        .unwrap_or_else(|e| panic!("{e}: {a2a}"));
    }

    // 3. A dApp asks the oracle; the agent fulfils it with its model.
    let requester_wallet = Arc::new(dev_wallet(6));
    let fee = usdc("0.25");
    chain
        .minter
        .mint(requester_wallet.address(), fee)
        .await
        .unwrap();
    registry::anvil::cast_approve_from_dev(
        &setup.url,
        6,
        wallets::Address(addresses.stablecoin.0),
        wallets::Address(addresses.inference_oracle.0),
        fee,
    )
    .unwrap();
    let requester = Deployment::at(
        chain::connect(&setup.url, requester_wallet).await.unwrap(),
        &addresses,
    );
    let sampling = OracleSampling::new(
        SamplingParams::greedy().with_seed(7).with_max_tokens(12),
        None,
    );
    let prompt = "The capital of Portugal is";
    let client = requester.inference_oracle.client();
    let now = chain::chain_time(&client).await.unwrap();
    let (id, _) = requester
        .request_inference(&NewInferenceRequest {
            model,
            prompt: PromptSource::Text(prompt.as_bytes().to_vec()),
            sampling_hash: sampling.hash(),
            sampling: sampling.to_bytes(),
            fee,
            deadline: now + 600,
        })
        .await
        .unwrap();
    let fulfilled = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            let state = requester.inference_request(id).await.unwrap();
            if state.status != OracleStatus::Open {
                return state.status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the agent fulfils the request within two minutes");
    assert_eq!(fulfilled, OracleStatus::Fulfilled);
    let verdict = check_fulfilment(
        &engine,
        &requester,
        addresses.deployed_at,
        id,
        &PromptFetch::new(),
    )
    .await
    .unwrap();
    assert!(
        matches!(verdict, Verdict::Matches { .. }),
        "a re-run agrees: {verdict:?}"
    );

    // The agent's host counts its journal's entries on /metrics (Prometheus text,
    // read with a Prometheus parser): 3 deliveries in the channel, 5 x402 sales.
    let metrics = reqwest::get(format!(
        "{}/metrics",
        agent.url().replacen("ws://", "http://", 1)
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let entries = |kind: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "agora_journal_entries_total"
                    && s.labels.get("agent") == Some("scribe")
                    && s.labels.get("kind") == Some(kind)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                ref other => panic!("{other:?}"),
            })
    };
    assert_eq!(entries("delivery"), Some(3.0), "{metrics}");
    assert_eq!(entries("x402_payment"), Some(5.0), "{metrics}");
    assert_eq!(entries("x402_delivery"), Some(5.0), "{metrics}");

    // 4. The audit re-runs every attested inference: 3 deals, 5 x402 sales (2 by
    // the Python client, 1 by the TypeScript one, 2 on A2A tasks).
    let journals = vec![
        buyer.journal.clone(),
        agent_dir(&site.state_dir, "scribe").join("journal"),
    ];
    let check = ChainCheck::new(setup.url.clone(), addresses);
    let report = rerun_journals(&journals, Some(&check), engine.clone())
        .await
        .unwrap();
    assert!(report.discrepancies.is_empty(), "{report:?}");
    let checked = report.attestations.as_ref().unwrap().checked;
    assert_eq!(checked, 3 + 3 + 5, "both sides of 3 deals, 5 x402 sales");
    agent.shutdown().await;
}
