//! x402 seller benchmark, each figure beside its baselines measured in the same run.
//!
//! `cargo bench -p x402 --bench seller` sells the weather skill (the offline
//! climatology provider) on the embedded devnet over loopback HTTP and prints
//! requests per second of:
//! - **paid x402 requests**: a fresh payment each, verified (offline checks, then
//!   `authorizationState`, the domain, the balance and an `eth_call` simulation),
//!   settled on chain by the seller's wallet, recorded three times (fsynced), journaled
//!   twice (signed, fsynced) and served; one at a time and 8 in flight;
//! - **replays**: the same paid request again (the recorded answer);
//! - **plain HTTP**: the same skill on a plain axum route, no payment;
//! - **signature and settlement alone**: the same checks and `transferWithAuthorization`
//!   called directly, no HTTP, no record, no journal, one at a time.
//!
//! Set `AGORA_BENCH_QUICK=1` for a short run.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::sync::Arc;
use std::time::Instant;

use agent_sdk::{AgentBuilder, Host, HostConfig};
use futures::StreamExt;
use negotiation::Service;
use registry::chain::{self, DeployConfig, Deployment, Eip3009Token};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use wallets::{Amount, Limits, Payment, SpendingPolicy, TransferWithAuthorization, Wallet, B256};
use x402::wire::{self, ExactEvmAuthorization, ExactEvmPayload, PaymentPayload};
use x402::{PricedService, SellerConfig, X402Seller};

const TOKEN: &str = "USD Coin";
const PRICE: u128 = 950_000;
const QUERY: &str = r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":3}"#;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn weather() -> weather::WeatherService {
    weather::WeatherService::new(Arc::new(weather::ClimatologyProvider::new().unwrap()))
}

fn rate(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::var_os("AGORA_BENCH_QUICK").is_some();
    let n = if quick { 40 } else { 300 };
    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let deployer = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
        .await
        .unwrap();
    let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
        .await
        .unwrap();
    let asset = wallets::Address(addresses.stablecoin.0);
    let domain = addresses.token_domain(TOKEN);

    // The buyer: a spending policy without limits, funded for every payment.
    let buyer = Arc::new(Wallet::random());
    let policy = SpendingPolicy::open(dir.path().join("policy"), buyer.clone(), Limits::default())
        .unwrap()
        .pin_token(domain.clone());
    minter
        .mint(
            buyer.address(),
            Amount::from_base_units(PRICE * (4 * n as u128 + 10)),
        )
        .await
        .unwrap();

    // The seller: an agent, its wallet settling, its journal and sale store.
    let wallet = Arc::new(dev_wallet(3));
    let host = Host::spawn(HostConfig::new(addresses.chain_id, dir.path().join("host"))).unwrap();
    let agent = AgentBuilder::new("shop")
        .wallet(wallet.clone())
        .spawn(&host)
        .unwrap();
    let client = chain::connect(&node.http_url(), wallet.clone())
        .await
        .unwrap();
    let journal = negotiation::SharedJournal::new(
        wallets::Journal::open(dir.path().join("shop.journal"), wallet.clone()).unwrap(),
    );
    let seller = X402Seller::new(
        agent.context(),
        client.clone(),
        asset,
        journal,
        SellerConfig::new(dir.path().join("sales"), TOKEN),
    )
    .unwrap()
    .sell(PricedService::typed::<
        weather::ForecastQuery,
        weather::Forecast,
    >(
        weather::FORECAST_KIND,
        Amount::from_base_units(PRICE),
        weather(),
    ))
    .unwrap();
    let seller = Arc::new(seller);
    let server = x402::seller::serve(seller.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("{}/x402/{}", server.url(), weather::FORECAST_KIND);
    let http = reqwest::Client::new();

    // The requirements, from the 402.
    let r = http.post(&url).body(QUERY).send().await.unwrap();
    assert_eq!(r.status(), 402);
    let required =
        wire::decode_payment_required(r.headers()["PAYMENT-REQUIRED"].as_bytes()).unwrap();
    let requirements = required.accepts[0].clone();

    // Payments, signed before any clock starts.
    let sign = |_| {
        let transfer = TransferWithAuthorization {
            from: buyer.address(),
            to: wallet.address(),
            value: Amount::from_base_units(PRICE),
            valid_after: 0,
            valid_before: unix_now() + 3_600,
            nonce: B256::random(),
        };
        let signed = policy
            .authorize(&Payment::Authorization {
                domain: domain.clone(),
                transfer: transfer.clone(),
            })
            .unwrap();
        PaymentPayload {
            x402_version: 2,
            payload: serde_json::to_value(ExactEvmPayload {
                authorization: ExactEvmAuthorization {
                    from: transfer.from.to_string(),
                    to: transfer.to.to_string(),
                    value: PRICE.to_string(),
                    valid_after: "0".into(),
                    valid_before: transfer.valid_before.to_string(),
                    nonce: transfer.nonce.to_string(),
                },
                signature: signed.signature.to_string(),
            })
            .unwrap(),
            accepted: requirements.clone(),
            ..PaymentPayload::default()
        }
    };
    let payments: Vec<PaymentPayload> = (0..3 * n).map(sign).collect();
    let headers: Vec<String> = payments
        .iter()
        .map(|p| wire::encode_header(p).unwrap())
        .collect();
    let (one, rest) = headers.split_at(n);
    let (eight, _) = rest.split_at(n);
    let direct = &payments[2 * n..];

    let post = |header: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .header("PAYMENT-SIGNATURE", header)
                .body(QUERY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }
    };
    let blocks_before = node.block_number().await;

    // Paid, one at a time.
    let start = Instant::now();
    for h in one {
        post(h.clone()).await;
    }
    let paid_one = rate(n, start);

    // Paid, 8 in flight.
    let start = Instant::now();
    futures::stream::iter(eight.iter().cloned().map(post))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let paid_eight = rate(n, start);
    let settled = node.block_number().await - blocks_before;

    // Replays of one paid request.
    let start = Instant::now();
    for _ in 0..n {
        post(one[0].clone()).await;
    }
    let replays = rate(n, start);

    // Plain HTTP: the same skill, no payment.
    let service = Arc::new(weather());
    let ctx = agent.context();
    let plain = axum::Router::new().route(
        "/plain",
        axum::routing::post(move |body: String| {
            let (service, ctx) = (service.clone(), ctx.clone());
            async move {
                let out = service.perform(&ctx, &body).await.unwrap();
                axum::Json(out.result)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!("http://{}/plain", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, plain).await });
    let start = Instant::now();
    for _ in 0..n {
        let r = http.post(&plain_url).body(QUERY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let plain_rate = rate(n, start);

    // The signature and settlement work alone.
    let token = Eip3009Token::at(client, asset);
    let start = Instant::now();
    for p in direct {
        let payment =
            x402::verify::check(p, &requirements, addresses.chain_id, unix_now()).unwrap();
        x402::verify::check_on_chain(&token, &payment)
            .await
            .unwrap();
        let receipt = token
            .transfer_with_authorization(&payment.transfer, &payment.signature)
            .await
            .unwrap();
        assert!(receipt.success);
    }
    let settle_alone = rate(n, start);

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("x402 seller, weather.forecast (climatology), embedded devnet, loopback HTTP, {cores} cores, {n} requests each:");
    println!("  paid x402 requests, 1 in flight   {paid_one:>9.1} req/s");
    println!("  paid x402 requests, 8 in flight   {paid_eight:>9.1} req/s");
    println!("  replays of a paid request         {replays:>9.1} req/s");
    println!("  plain HTTP, no payment            {plain_rate:>9.1} req/s");
    println!("  signature + settlement alone      {settle_alone:>9.1} /s");
    println!(
        "  paid (1 in flight) / settlement alone = {:.2}; blocks mined by {} paid requests: {settled}",
        paid_one / settle_alone,
        2 * n
    );
    server.shutdown().await;
    drop(agent);
    let _ = tokio::task::spawn_blocking(move || host.shutdown()).await;
}
