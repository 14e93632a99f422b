//! The real x402 clients: the official Python Flask seller middleware (PyPI `x402`
//! 2.25), pointed at our facilitator over loopback, is paid by the official Python
//! requests client, on the embedded chain; and our seller, selling forecasts, is paid
//! by the official requests and httpx clients. The Python side is two small scripts in
//! `skills/x402/tests/interop/`, run from the venv `bash .ci/prereqs` installs
//! (`AGORA_X402_VENV`, default `/var/cache/agora/venv-x402`).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use registry::devnet::{dev_key, dev_wallet};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use wallets::Amount;
use x402::test_utils::{drain, python, run_buyer, script};
use x402::wire::{self, VerifyRequest};

use crate::support::{flask_seller, Setup, PRICE};

#[tokio::test(flavor = "multi_thread")]
async fn the_python_flask_middleware_settles_through_our_facilitator() {
    let python = python();
    let s = Setup::start().await;
    let server = x402::facilitator::serve(s.facilitator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let buyer = dev_wallet(5).address();
    s.minter
        .mint(buyer, Amount::from_base_units(10 * PRICE))
        .await
        .unwrap();
    let network = format!("eip155:{}", s.addresses.chain_id);
    let asset = s.stablecoin().to_string();

    // The seller: Flask + the official middleware, our facilitator behind it.
    let mut seller = flask_seller(&python, &s, &server.url()).await;
    let (url, seller_log) = (seller.url.clone(), seller.log.clone());

    let before = (s.balance(buyer).await, s.balance(s.seller).await);

    // The buyer: the official requests client, paying once, then replaying.
    let mut child = tokio::process::Command::new(&python)
        .arg(script("buyer.py"))
        .args(["--url", &format!("{url}/weather")])
        .args(["--network", &network])
        .args(["--asset", &asset])
        .args(["--max-amount", &PRICE.to_string()])
        .env("BUYER_KEY", hex::encode(dev_key(5)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let buyer_log = drain(child.stderr.take().unwrap());
    let mut stdout = String::new();
    let mut out_pipe = child.stdout.take().unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(300), async {
        out_pipe.read_to_string(&mut stdout).await.unwrap();
        child.wait().await.unwrap()
    })
    .await;
    let logs = || {
        format!(
            "buyer stderr:\n{}\nseller stderr:\n{}",
            buyer_log.lock().unwrap(),
            seller_log.lock().unwrap()
        )
    };
    let status = finished.unwrap_or_else(|_| panic!("buyer.py hung; {}", logs()));
    assert!(status.success(), "buyer.py failed: {stdout}\n{}", logs());
    let out: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("buyer.py printed {stdout:?} ({e}); {}", logs()));

    // Out of the box, the client does not pay a token outside its built-in list (the
    // requests adapter wraps the NoMatchingRequirementsError in a PaymentError).
    assert_eq!(out["default"]["error"], "PaymentError", "{out}");
    assert!(
        out["default"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("spend_controls"),
        "{out}"
    );

    // Allow-listed, it pays: the resource is served, the settlement reported, and the
    // money moved to the base unit.
    let paid = &out["paid"];
    assert_eq!(paid["status"], 200, "{out}\n{}", logs());
    assert_eq!(paid["body"]["forecast"], "sunny", "{out}");
    assert_eq!(paid["body"]["served"], 1, "{out}");
    let receipt = &paid["paymentResponse"];
    assert_eq!(receipt["success"], true, "{out}");
    assert_eq!(receipt["network"], network.as_str(), "{out}");
    let tx = receipt["transaction"].as_str().unwrap_or("").to_owned();
    assert!(tx.starts_with("0x") && tx.len() == 66, "{out}");
    assert_eq!(
        (s.balance(buyer).await, s.balance(s.seller).await),
        (before.0 - PRICE, before.1 + PRICE)
    );
    let block = s.node.block_number().await;

    // The client's PAYMENT-SIGNATURE header decodes, and re-encodes to the same JSON.
    let header = paid["paymentSignature"].as_str().unwrap();
    let payload = wire::decode_payment_signature(header.as_bytes()).unwrap();
    let raw: Value = serde_json::from_slice(&base64_decode(header)).unwrap();
    assert_eq!(serde_json::to_value(&payload).unwrap(), raw);
    assert_eq!(payload.accepted.amount, PRICE.to_string());
    assert_eq!(
        wire::parse_address("payTo", &payload.accepted.pay_to).unwrap(),
        s.seller
    );

    // The same PAYMENT-SIGNATURE again is not paid again: our verify says the nonce is
    // used, and the middleware answers 402 with that reason.
    let replayed = &out["replayed"];
    assert_eq!(replayed["status"], 402, "{out}");
    assert_eq!(
        replayed["paymentRequired"]["error"], "invalid_exact_evm_nonce_already_used",
        "{out}"
    );
    assert_eq!(
        (s.balance(buyer).await, s.balance(s.seller).await),
        (before.0 - PRICE, before.1 + PRICE)
    );
    assert_eq!(s.node.block_number().await, block);

    // And a resource server that settles it again gets the first settlement back.
    let again = s
        .facilitator
        .settle(&VerifyRequest {
            x402_version: 2,
            payment_requirements: payload.accepted.clone(),
            payment_payload: payload,
        })
        .await;
    assert!(again.success, "{again:?}");
    assert_eq!(again.transaction, tx);
    assert_eq!(s.node.block_number().await, block);

    seller.child.kill().await.unwrap();
    server.shutdown().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_clients_buy_a_forecast_from_our_seller() {
    let python = python();
    let s = Setup::start().await;
    let forecast = x402::PricedService::typed::<weather::ForecastQuery, weather::Forecast>(
        weather::FORECAST_KIND,
        Amount::from_base_units(PRICE),
        weather::WeatherService::new(Arc::new(weather::ClimatologyProvider::new().unwrap())),
    )
    .description("daily climate normals of a city")
    .example(
        serde_json::json!({"place": {"city": {"name": "Lisbon"}}, "start": "2026-07-30", "days": 1}),
        None,
    );
    let shop = crate::support::Shop::open(&s, s.dir.path(), vec![forecast]).await;
    let buyer = dev_wallet(5).address();
    s.minter
        .mint(buyer, Amount::from_base_units(10 * PRICE))
        .await
        .unwrap();
    let network = format!("eip155:{}", s.addresses.chain_id);
    let before = (s.balance(buyer).await, s.balance(shop.address()).await);

    let query = r#"{"place":{"city":{"name":"Lisbon"}},"start":"2026-07-30","days":3}"#;
    let other = r#"{"place":{"city":{"name":"Porto"}},"start":"2026-07-30","days":3}"#;
    let out = run_buyer(
        &python,
        "pay_seller.py",
        &[
            "--url".into(),
            shop.url(weather::FORECAST_KIND),
            "--network".into(),
            network.clone(),
            "--asset".into(),
            s.stablecoin().to_string(),
            "--max-amount".into(),
            PRICE.to_string(),
            "--body".into(),
            query.into(),
            "--other-body".into(),
            other.into(),
        ],
        &dev_key(5),
    )
    .await;

    // The 402 and its bazaar extension, as the package's own code reads them.
    let unpaid = &out["unpaid"];
    assert_eq!(unpaid["status"], 402, "{out}");
    assert_eq!(unpaid["bazaarSpecValid"], true, "{out}");
    assert_eq!(unpaid["bazaarKind"], "BodyDiscoveryExtension", "{out}");
    assert_eq!(unpaid["bazaarSchemaValid"], true, "{unpaid}");

    // Paid by the requests client: the forecast, the settlement, the money.
    let paid = &out["paid"];
    assert_eq!(paid["status"], 200, "{out}");
    assert_eq!(paid["body"]["location"]["name"], "Lisbon", "{out}");
    assert_eq!(paid["body"]["days"].as_array().map(Vec::len), Some(3));
    let receipt = &paid["paymentResponse"];
    assert_eq!(receipt["success"], true, "{out}");
    assert_eq!(receipt["network"], network.as_str());
    let tx = receipt["transaction"].as_str().unwrap_or("");
    assert!(tx.starts_with("0x") && tx.len() == 66, "{out}");

    // The same PAYMENT-SIGNATURE again: the same forecast and settlement, no charge;
    // with another body, refused.
    let replayed = &out["replayed"];
    assert_eq!(replayed["status"], 200, "{out}");
    assert_eq!(replayed["body"], paid["body"]);
    assert_eq!(replayed["paymentResponse"], *receipt);
    assert_eq!(out["otherBody"]["status"], 409, "{out}");
    assert_eq!(out["otherBody"]["body"]["error"], "request_mismatch");

    // A second sale through the httpx client.
    let second = &out["httpx"];
    assert_eq!(second["status"], 200, "{out}");
    assert_eq!(second["body"], paid["body"]);
    assert_ne!(
        second["paymentResponse"]["transaction"],
        receipt["transaction"]
    );

    // Two sales, paid to the base unit.
    assert_eq!(
        (s.balance(buyer).await, s.balance(shop.address()).await),
        (before.0 - 2 * PRICE, before.1 + 2 * PRICE)
    );

    // The seller's journal audits clean against the chain.
    let check = negotiation::audit::ChainCheck::new(s.node.http_url(), s.addresses);
    let report = negotiation::audit::audit(std::slice::from_ref(&shop.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.sales.len(), 2, "{}", report.to_table());
    assert!(report
        .sales
        .iter()
        .all(|sale| sale.stage == "delivered" && sale.buyer == buyer));
    shop.close().await;
}
