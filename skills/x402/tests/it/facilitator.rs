//! The facilitator on the embedded chain: each refusal and its reason, settlement
//! once and only once, and the HTTP API.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;
use wallets::{Address, Amount, Eip712Domain, Wallet};
use x402::wire::{SettleResponse, VerifyRequest};
use x402::{Facilitator, FacilitatorConfig};

use crate::support::{facilitator, unix_now, Payer, Setup, PRICE, TOKEN};

fn reason(answer: &x402::wire::VerifyResponse) -> &str {
    answer.invalid_reason.as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_refuses_each_bad_payment_with_the_reference_reason() {
    let s = Setup::start().await;
    let f = &s.facilitator;
    let now = unix_now();
    let req = s.requirements();

    let good = s.good_request();
    let answer = f.verify(&good).await;
    assert!(answer.is_valid, "{answer:?}");
    assert_eq!(
        answer.payer.as_deref(),
        Some(s.payer.address().to_string().as_str())
    );

    let sign = |transfer, domain: Eip712Domain| s.payer.sign(domain, transfer);
    let mut cases: Vec<(&str, VerifyRequest, &str)> = Vec::new();

    let elsewhere = Wallet::random().address();
    let signed = sign(s.transfer(elsewhere, PRICE, 0, now + 120), s.domain(TOKEN));
    cases.push((
        "wrong payee",
        s.request(&req, &signed),
        "invalid_exact_evm_payload_recipient_mismatch",
    ));

    for value in [PRICE - 1, PRICE + 1] {
        let signed = sign(s.transfer(s.seller, value, 0, now + 120), s.domain(TOKEN));
        cases.push((
            "wrong amount",
            s.request(&req, &signed),
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ));
    }

    let signed = sign(s.transfer(s.seller, PRICE, 0, now + 3), s.domain(TOKEN));
    cases.push((
        "expired",
        s.request(&req, &signed),
        "invalid_exact_evm_payload_authorization_valid_before",
    ));

    let signed = sign(
        s.transfer(s.seller, PRICE, now + 600, now + 1200),
        s.domain(TOKEN),
    );
    cases.push((
        "not yet valid",
        s.request(&req, &signed),
        "invalid_exact_evm_payload_authorization_valid_after",
    ));

    // The signature of another authorization of the same payer.
    let mut forged = s.good_request();
    forged.payment_payload.payload["signature"] =
        s.good_request().payment_payload.payload["signature"].clone();
    cases.push((
        "bad signature",
        forged,
        "invalid_exact_evm_payload_signature",
    ));

    // A seller that names the token wrongly: the payer signs in that domain, which is
    // not the token's.
    for (field, value, want) in [
        (
            "name",
            "Wrong Coin",
            "invalid_exact_evm_token_name_mismatch",
        ),
        ("version", "1", "invalid_exact_evm_token_version_mismatch"),
    ] {
        let mut wrong = req.clone();
        wrong.extra.as_mut().unwrap()[field] = Value::from(value);
        let domain = Eip712Domain::new(
            wrong.extra_str("name").unwrap(),
            wrong.extra_str("version").unwrap(),
            s.addresses.chain_id,
            s.stablecoin(),
        );
        let signed = sign(s.transfer(s.seller, PRICE, 0, now + 120), domain);
        cases.push(("wrong domain", s.request(&wrong, &signed), want));
    }

    let poor = Payer::new(s.dir.path().join("poor"), Wallet::random());
    s.minter
        .mint(poor.address(), Amount::from_base_units(PRICE - 1))
        .await
        .unwrap();
    let mut transfer = s.transfer(s.seller, PRICE, 0, now + 120);
    transfer.from = poor.address();
    let signed = poor.sign(s.domain(TOKEN), transfer);
    cases.push((
        "short balance",
        s.request(&req, &signed),
        "invalid_exact_evm_insufficient_balance",
    ));

    // Another asset than the facilitator settles (the registry contract).
    let mut other = req.clone();
    other.asset = format!("{:?}", s.addresses.registry);
    let domain = Eip712Domain::new(
        TOKEN,
        "2",
        s.addresses.chain_id,
        Address(s.addresses.registry.0),
    );
    let signed = sign(s.transfer(s.seller, PRICE, 0, now + 120), domain);
    cases.push((
        "other asset",
        s.request(&other, &signed),
        "invalid_exact_evm_failed_to_get_asset_info",
    ));

    let mut other = req.clone();
    other.network = "eip155:1".into();
    let mut r = s.good_request();
    r.payment_payload.accepted = other.clone();
    r.payment_requirements = other;
    cases.push((
        "other chain",
        r,
        "invalid_exact_evm_failed_to_get_network_config",
    ));

    let mut r = s.good_request();
    r.payment_payload.accepted.network = "eip155:1".into();
    cases.push(("network mismatch", r, "network_mismatch"));

    for (what, request, want) in &cases {
        let answer = f.verify(request).await;
        assert!(!answer.is_valid, "{what}: {answer:?}");
        assert_eq!(reason(&answer), *want, "{what}: {answer:?}");
        assert!(
            answer
                .invalid_message
                .as_deref()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {answer:?}"
        );
        // Settling it fails alike, and sends nothing.
        let settled = f.settle(request).await;
        assert!(!settled.success, "{what}: {settled:?}");
        assert_eq!(settled.error_reason.as_deref(), Some(*want), "{what}");
        assert_eq!(settled.transaction, "", "{what}");
        assert_eq!(
            settled.network, request.payment_requirements.network,
            "{what}"
        );
    }

    // A used nonce: settle the good payment, then verify it again.
    let settled = f.settle(&good).await;
    assert!(settled.success, "{settled:?}");
    let answer = f.verify(&good).await;
    assert_eq!(
        reason(&answer),
        "invalid_exact_evm_nonce_already_used",
        "{answer:?}"
    );

    // An asset address without code.
    let asset = Wallet::random().address();
    let codeless = Facilitator::connect(
        &s.node.http_url(),
        Arc::new(registry::devnet::dev_wallet(2)),
        FacilitatorConfig {
            assets: vec![asset],
            store: s.dir.path().join("codeless"),
            from_block: 0,
        },
    )
    .await
    .unwrap();
    let mut nowhere = req.clone();
    nowhere.asset = asset.to_string();
    let domain = Eip712Domain::new(TOKEN, "2", s.addresses.chain_id, asset);
    let signed = sign(s.transfer(s.seller, PRICE, 0, now + 120), domain);
    let answer = codeless.verify(&s.request(&nowhere, &signed)).await;
    assert_eq!(reason(&answer), "asset_not_deployed_contract", "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_settles_once_and_a_resettle_gets_the_first_answer() {
    let s = Setup::start().await;
    let f = &s.facilitator;
    let (payer, seller) = (
        s.balance(s.payer.address()).await,
        s.balance(s.seller).await,
    );
    let good = s.good_request();

    let first = f.settle(&good).await;
    assert!(first.success, "{first:?}");
    assert!(
        first.transaction.starts_with("0x") && first.transaction.len() == 66,
        "{first:?}"
    );
    assert_eq!(first.network.as_str(), "eip155:1337");
    assert_eq!(
        first.payer.as_deref(),
        Some(s.payer.address().to_string().as_str())
    );
    assert_eq!(first.amount.as_deref(), Some(PRICE.to_string().as_str()));
    assert_eq!(s.balance(s.payer.address()).await, payer - PRICE);
    assert_eq!(s.balance(s.seller).await, seller + PRICE);
    let block = s.node.block_number().await;

    // Again: the same answer, and no transaction.
    let again = f.settle(&good).await;
    assert_eq!(again, first);
    assert_eq!(s.node.block_number().await, block);
    assert_eq!(s.balance(s.payer.address()).await, payer - PRICE);

    // The same authorization offered for another payee is refused, not answered with
    // the first settlement.
    let mut other = good.clone();
    other.payment_requirements.pay_to = Wallet::random().address().to_string();
    other.payment_payload.accepted = other.payment_requirements.clone();
    let refused = f.settle(&other).await;
    assert!(!refused.success, "{refused:?}");
    assert_eq!(
        refused.error_reason.as_deref(),
        Some("invalid_exact_evm_nonce_already_used"),
        "{refused:?}"
    );
    assert_eq!(s.node.block_number().await, block);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_facilitator_remembers_what_it_settled() {
    let s = Setup::start().await;
    let store = s.dir.path().join("restarting");
    let good = s.good_request();
    let first = {
        let f = facilitator(&s.node, &s.addresses, &store).await;
        f.settle(&good).await
    };
    assert!(first.success, "{first:?}");
    let block = s.node.block_number().await;
    let f = facilitator(&s.node, &s.addresses, &store).await;
    assert_eq!(f.settle(&good).await, first);
    assert_eq!(s.node.block_number().await, block);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_settled_by_someone_else_answers_with_its_transaction() {
    let s = Setup::start().await;
    let now = unix_now();
    let signed = s
        .payer
        .sign(s.domain(TOKEN), s.transfer(s.seller, PRICE, 0, now + 120));
    // The seller's own node submits it first (or this facilitator did, and crashed
    // before it could record it).
    let mined = s.minter.transfer_with_authorization(&signed).await.unwrap();
    let block = s.node.block_number().await;
    let answer = s
        .facilitator
        .settle(&s.request(&s.requirements(), &signed))
        .await;
    assert!(answer.success, "{answer:?}");
    assert_eq!(answer.transaction, mined.tx_hash.to_string());
    assert_eq!(s.node.block_number().await, block);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_settles_each_pay_once() {
    let s = Setup::start().await;
    let payer = s.balance(s.payer.address()).await;
    let distinct: Vec<VerifyRequest> = (0..5).map(|_| s.good_request()).collect();
    let twice = s.good_request();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, request) in distinct
        .iter()
        .cloned()
        .map(|r| (false, r))
        .chain((0..4).map(|_| (true, twice.clone())))
        .enumerate()
    {
        let f = s.facilitator.clone();
        tasks.spawn(async move { (i, request.0, f.settle(&request.1).await) });
    }
    let mut answers: Vec<(usize, bool, SettleResponse)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }
    for (i, _, answer) in &answers {
        assert!(answer.success, "settle {i}: {answer:?}");
    }
    let mut distinct_txs: Vec<&str> = answers
        .iter()
        .filter(|a| !a.1)
        .map(|a| a.2.transaction.as_str())
        .collect();
    distinct_txs.sort_unstable();
    distinct_txs.dedup();
    assert_eq!(distinct_txs.len(), 5);
    let repeated: Vec<&str> = answers
        .iter()
        .filter(|a| a.1)
        .map(|a| a.2.transaction.as_str())
        .collect();
    assert!(repeated.iter().all(|tx| *tx == repeated[0]), "{repeated:?}");
    assert_eq!(s.balance(s.payer.address()).await, payer - 6 * PRICE);
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_answers_200_with_the_reason_in_the_body() {
    let s = Setup::start().await;
    let app = x402::facilitator::router(s.facilitator.clone());

    let (status, supported) = call(&app, "GET", "/supported", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(supported["kinds"][0]["x402Version"], 2);
    assert_eq!(supported["kinds"][0]["scheme"], "exact");
    assert_eq!(supported["kinds"][0]["network"], "eip155:1337");
    assert_eq!(
        supported["signers"]["eip155:*"][0],
        registry::devnet::dev_wallet(1).address().to_string()
    );

    for (path, body) in [
        ("/verify", b"not json".to_vec()),
        ("/settle", b"{\"x402Version\":2}".to_vec()),
        ("/verify", vec![b' '; x402::facilitator::MAX_BODY_BYTES + 1]),
        ("/settle", vec![b'{'; x402::facilitator::MAX_BODY_BYTES * 4]),
    ] {
        let (status, answer) = call(&app, "POST", path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        if path == "/verify" {
            assert_eq!(answer["isValid"], false, "{answer}");
            assert_eq!(answer["invalidReason"], "invalid_payload", "{answer}");
        } else {
            assert_eq!(answer["success"], false, "{answer}");
            assert_eq!(answer["errorReason"], "invalid_payload", "{answer}");
            assert_eq!(answer["transaction"], "", "{answer}");
            assert_eq!(answer["network"], "eip155:1337", "{answer}");
        }
        assert!(answer.to_string().len() < 1_000, "{answer}");
    }

    let good = serde_json::to_vec(&s.good_request()).unwrap();
    let (status, answer) = call(&app, "POST", "/verify", good.clone()).await;
    assert_eq!(
        (status, &answer["isValid"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{answer}"
    );
    let (_, answer) = call(&app, "POST", "/settle", good.clone()).await;
    assert_eq!(answer["success"], true, "{answer}");
    let (_, again) = call(&app, "POST", "/settle", good).await;
    assert_eq!(again, answer);
}
