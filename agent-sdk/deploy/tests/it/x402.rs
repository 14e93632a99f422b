//! A weather agent of a deployment, started by [`RunningAgent::start`] on the
//! embedded chain, sells its forecast to the real x402 clients (PyPI `x402` 2.25,
//! requests and httpx; npm `@x402/fetch` 2.27 with viem) at
//! `POST /x402/weather.forecast` on its host port, and to the real A2A client (PyPI
//! `a2a-sdk` 1.3.0, paying with A2A's x402 extension) at `/agents/<address>/`: the
//! money moves to the base unit, a replayed payment charges nothing, and the agent's
//! journal audits clean against the chain.

use std::sync::Arc;

use deploy::layout::agent_dir;
use deploy::RunningAgent;
use negotiation::audit::{audit, ChainCheck};
use registry::chain::{self, Deployment};
use registry::devnet::{dev_key, dev_wallet};
use wallets::Amount;

const PASSWORD_ENV: &str = "AGORA_X402_DEPLOY_TEST_PASSWORD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x402_and_a2a_clients_pay_a_deployed_weather_agent() {
    let python = x402::test_utils::python();
    let dir = tempfile::tempdir().unwrap();
    let (site, chain, address) = crate::weather_site(dir.path(), PASSWORD_ENV).await;
    let state_dir = site.state_dir.clone();
    let agent = RunningAgent::start(&site, "weather").await.unwrap();
    assert_eq!(agent.address(), address);

    // A buyer with 10 USDC and nothing to do with Agora but its key.
    let minter = Deployment::at(
        chain::connect(&chain.url, Arc::new(dev_wallet(0)))
            .await
            .unwrap(),
        &chain.addresses,
    );
    let buyer = dev_wallet(5).address();
    let price: Amount = "0.95 USDC".parse().unwrap();
    minter
        .mint(buyer, "10 USDC".parse().unwrap())
        .await
        .unwrap();
    let balances = || async {
        (
            minter.balance_of(buyer).await.unwrap(),
            minter.balance_of(address).await.unwrap(),
        )
    };
    let before = balances().await;

    let url = format!(
        "{}/x402/weather.forecast",
        agent.url().replacen("ws://", "http://", 1)
    );
    let network = format!("eip155:{}", chain.addresses.chain_id);
    let asset = wallets::Address(chain.addresses.stablecoin.0).to_string();
    let query = r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":3}"#;
    let out = x402::test_utils::run_buyer(
        &python,
        "pay_seller.py",
        &crate::client_args(
            &url,
            &network,
            &asset,
            price,
            &[
                ("--body", query),
                (
                    "--other-body",
                    r#"{"place":{"city":{"name":"Porto"}},"start":"2026-07-30","days":3}"#,
                ),
            ],
        ),
        &dev_key(5),
    )
    .await;

    // The 402 names the agent, the price and the forecast's schemas.
    let unpaid = &out["unpaid"];
    assert_eq!(unpaid["status"], 402, "{out}");
    let offer = &unpaid["paymentRequired"]["accepts"][0];
    assert_eq!(offer["payTo"], address.to_string(), "{out}");
    assert_eq!(offer["amount"], price.base_units().to_string(), "{out}");
    assert_eq!(offer["network"], network.as_str(), "{out}");
    assert_eq!(unpaid["bazaarSchemaValid"], true, "{out}");

    // Paid: the forecast of the city asked for, and the settlement.
    let paid = &out["paid"];
    assert_eq!(paid["status"], 200, "{out}");
    assert_eq!(paid["body"]["location"]["name"], "Lisbon", "{out}");
    assert_eq!(paid["body"]["days"].as_array().map(Vec::len), Some(3));
    assert_eq!(paid["paymentResponse"]["success"], true, "{out}");
    // The same payment again: the same answer, no charge; another body is refused.
    assert_eq!(out["replayed"]["status"], 200, "{out}");
    assert_eq!(out["replayed"]["body"], paid["body"]);
    assert_eq!(out["replayed"]["paymentResponse"], paid["paymentResponse"]);
    assert_eq!(out["otherBody"]["status"], 409, "{out}");
    // A second sale, by the httpx client.
    assert_eq!(out["httpx"]["status"], 200, "{out}");

    // Two sales, to the base unit.
    let after = balances().await;
    let twice = Amount::from_base_units(2 * price.base_units());
    assert_eq!(after.0, before.0.checked_sub(twice).unwrap());
    assert_eq!(after.1, before.1.checked_add(twice).unwrap());

    // The TypeScript client (@x402/fetch 2.27 with viem) buys one too, from another
    // account, and its replayed payment charges nothing either.
    let ts_buyer = dev_wallet(6).address();
    minter
        .mint(ts_buyer, "10 USDC".parse().unwrap())
        .await
        .unwrap();
    let ts_before = minter.balance_of(ts_buyer).await.unwrap();
    let ts = x402::test_utils::run_node_buyer(
        "pay_seller.mjs",
        &crate::client_args(&url, &network, &asset, price, &[("--body", query)]),
        &dev_key(6),
    )
    .await;
    assert_eq!(ts["unpaid"]["status"], 402, "{ts}");
    assert_eq!(ts["paid"]["status"], 200, "{ts}");
    assert_eq!(ts["paid"]["body"], paid["body"], "{ts}");
    assert_eq!(ts["paid"]["paymentResponse"]["success"], true, "{ts}");
    assert_eq!(ts["replayed"]["status"], 200, "{ts}");
    assert_eq!(
        ts["replayed"]["paymentResponse"]["transaction"],
        ts["paid"]["paymentResponse"]["transaction"]
    );
    assert_eq!(
        minter.balance_of(ts_buyer).await.unwrap(),
        ts_before.checked_sub(price).unwrap()
    );
    assert_eq!(
        minter.balance_of(address).await.unwrap(),
        after.1.checked_add(price).unwrap()
    );

    // The A2A client hires the forecast twice (plain and streaming), paying each on
    // its task with A2A's x402 extension.
    let a2a_buyer = dev_wallet(7).address();
    minter
        .mint(a2a_buyer, "10 USDC".parse().unwrap())
        .await
        .unwrap();
    // Pointed at the agent's port, as a new user would: the host's card is the agent's.
    let a2a_url = agent.url().replacen("ws://", "http://", 1);
    let a2a = x402::test_utils::run(
        &a2a::test_utils::python(),
        &a2a::test_utils::script("pay_agent.py"),
        &crate::client_args(&a2a_url, &network, &asset, price, &[("--request", query)]),
        &dev_key(7),
    )
    .await;
    assert_eq!(a2a["card"]["skills"][0]["id"], "weather.forecast", "{a2a}");
    assert_eq!(
        a2a["card"]["supportedInterfaces"][0]["url"],
        format!("{a2a_url}/agents/{address}/")
    );
    assert_eq!(
        a2a["card"]["capabilities"]["extensions"][0]["uri"],
        a2a::paid::EXTENSION_URI
    );
    for way in ["plain", "stream"] {
        let asked = &a2a[way]["asked"][0]["task"];
        assert_eq!(
            asked["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
            "{a2a}"
        );
        let events = a2a[way]["paid"].as_array().unwrap();
        let done = &events
            .iter()
            .rev()
            .find(|e| e.get("task").is_some())
            .unwrap()["task"];
        assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{a2a}");
        // Data parts pass through protobuf `Value`: every number is a double there.
        assert_eq!(
            doubles(&done["artifacts"][0]["parts"][0]["data"]),
            doubles(&paid["body"]),
            "{a2a}"
        );
        let receipt = &done["status"]["message"]["metadata"]["x402.payment.receipts"][0];
        assert_eq!(receipt["success"], true, "{a2a}");
    }
    let twice = Amount::from_base_units(2 * price.base_units());
    assert_eq!(
        minter.balance_of(a2a_buyer).await.unwrap(),
        "10 USDC"
            .parse::<Amount>()
            .unwrap()
            .checked_sub(twice)
            .unwrap()
    );

    // The agent's one journal holds the five sales, and they audit clean on chain.
    let journal = agent_dir(&state_dir, "weather").join("journal");
    let check = ChainCheck::new(chain.url.clone(), chain.addresses);
    let report = audit(std::slice::from_ref(&journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.sales.len(), 5, "{}", report.to_table());
    assert_eq!(
        report.sales.iter().filter(|s| s.buyer == a2a_buyer).count(),
        2
    );
    assert_eq!(report.sales.iter().filter(|s| s.buyer == buyer).count(), 2);
    assert_eq!(
        report.sales.iter().filter(|s| s.buyer == ts_buyer).count(),
        1
    );

    agent.shutdown().await;
    chain.shutdown().await;
}

/// `v` with every number a double, as A2A data parts carry them.
fn doubles(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(a) => Value::Array(a.iter().map(doubles).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), doubles(v))).collect()),
        other => other.clone(),
    }
}
