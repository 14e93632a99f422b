//! The x402 seller on the embedded chain: the 402 and its schemas, a paid request
//! settled before the skill runs and served once, every bad payment refused with
//! nothing moved, retries, concurrency, a crash around the broadcast, and the
//! seller's journal audited against the chain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agent_sdk::SkillError;
use negotiation::audit::{audit, ChainCheck};
use negotiation::{service_fn, ServiceOutput};
use registry::chain::{self, Deployment};
use registry::devnet::dev_wallet;
use serde_json::{json, Value};
use wallets::{Amount, Payment, Wallet};
use x402::seller::{SaleRecord, SaleState, SaleStore};
use x402::wire::{self, PaymentRequirements};
use x402::PricedService;

use crate::support::{unix_now, Setup, Shop, FUNDS, PRICE, TOKEN};

const SKILL: &str = "echo";

/// What the echo service saw each time it ran: the task, and the seller's balance
/// at that moment.
type Runs = Arc<Mutex<Vec<(String, u128)>>>;

/// A service that answers its task back, recording the seller's balance when it ran;
/// it fails its first `failures` runs.
async fn echo(s: &Setup, seller: wallets::Address, failures: usize) -> (PricedService, Runs) {
    let client = chain::connect(&s.node.http_url(), Arc::new(Wallet::random()))
        .await
        .unwrap();
    let chain = Arc::new(Deployment::at(client, &s.addresses));
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let failed = Arc::new(AtomicUsize::new(0));
    let service = service_fn(move |task: String| {
        let (chain, seen, failed) = (chain.clone(), seen.clone(), failed.clone());
        async move {
            let balance = chain.balance_of(seller).await.unwrap().base_units();
            let n = {
                let mut runs = seen.lock().unwrap();
                runs.push((task.clone(), balance));
                runs.len()
            };
            if failed.fetch_add(1, Ordering::SeqCst) < failures {
                return Err(SkillError::internal("the skill fell over"));
            }
            Ok(ServiceOutput::new(json!({"echo": task, "run": n})))
        }
    });
    let schema = json!({"type": "object"});
    let priced = PricedService::new(
        SKILL,
        Amount::from_base_units(PRICE),
        service,
        schema.clone(),
        schema,
    );
    (priced, runs)
}

/// The requirements of the seller's 402 for `skill`.
async fn requirements(shop: &Shop, skill: &str) -> PaymentRequirements {
    let r = shop.post(skill, None, "{}").await;
    assert_eq!(r.status(), 402);
    let header = r.headers()["PAYMENT-REQUIRED"].as_bytes().to_vec();
    let required = wire::decode_payment_required(&header).unwrap();
    required.accepts.into_iter().next().unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A good payment of `req` by the setup's payer, valid for two minutes.
fn pay(s: &Setup, req: &PaymentRequirements, shop: &Shop) -> String {
    let t = s.transfer(shop.address(), PRICE, 0, unix_now() + 120);
    s.payment_header(req, t, TOKEN)
}

async fn balances(s: &Setup, shop: &Shop) -> (u128, u128) {
    (
        s.balance(s.payer.address()).await,
        s.balance(shop.address()).await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_payment_gets_the_requirements_and_the_schemas() {
    let s = Setup::start().await;
    let weather = PricedService::typed::<weather::ForecastQuery, weather::Forecast>(
        weather::FORECAST_KIND,
        Amount::from_base_units(PRICE),
        weather::WeatherService::new(Arc::new(weather::ClimatologyProvider::new().unwrap())),
    )
    .description("a forecast");
    let shop = Shop::open(&s, s.dir.path(), vec![weather]).await;

    let r = shop.post(weather::FORECAST_KIND, None, "").await;
    assert_eq!(r.status(), 402);
    let raw = header(&r, "PAYMENT-REQUIRED").unwrap();
    let required = wire::decode_payment_required(raw.as_bytes()).unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(serde_json::to_value(&required).unwrap(), body);
    assert_eq!(required.x402_version, 2);
    assert_eq!(
        required.error.as_deref(),
        Some("PAYMENT-SIGNATURE header is required")
    );
    let resource = required.resource.as_ref().unwrap();
    assert_eq!(resource.url, shop.url(weather::FORECAST_KIND));
    assert_eq!(resource.description.as_deref(), Some("a forecast"));
    let [offer] = required.accepts.as_slice() else {
        panic!("one offer: {required:?}");
    };
    assert_eq!(offer.scheme, "exact");
    assert_eq!(offer.network.chain_id().unwrap(), s.addresses.chain_id);
    assert_eq!(offer.amount, PRICE.to_string());
    assert_eq!(
        wire::parse_address("asset", &offer.asset).unwrap(),
        s.stablecoin()
    );
    assert_eq!(
        wire::parse_address("payTo", &offer.pay_to).unwrap(),
        shop.address()
    );
    assert_eq!(offer.extra_str("name"), Some(TOKEN));
    assert_eq!(offer.extra_str("version"), Some("2"));

    // The bazaar extension: a JSON POST body of the forecast query, answering a
    // forecast, with the definitions both refer to at the schema's root.
    let bazaar = &required.extensions.as_ref().unwrap()["bazaar"];
    assert_eq!(bazaar["info"]["input"]["method"], "POST");
    assert_eq!(bazaar["info"]["input"]["bodyType"], "json");
    let props = &bazaar["schema"]["properties"];
    let input = &props["input"]["properties"]["body"];
    assert!(input["properties"]["place"].is_object(), "{input}");
    let output = &props["output"]["properties"]["example"];
    assert!(output["properties"]["days"].is_object(), "{output}");
    let text = bazaar.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let name = r.split('"').next().unwrap();
        let name = name.strip_prefix("#/$defs/").unwrap();
        assert!(bazaar["schema"]["$defs"][name].is_object(), "{name}");
    }
    // The header stays well under what clients accept.
    assert!(raw.len() < 12 * 1024, "{} bytes", raw.len());

    // Other methods, other skills.
    let r = shop
        .http
        .get(shop.url(weather::FORECAST_KIND))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = shop.post("nothing.here", None, "").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_skill");
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_request_is_settled_before_the_skill_runs_and_served_once() {
    let s = Setup::start().await;
    let seller = dev_wallet(3).address();
    let (echo, runs) = echo(&s, seller, 0).await;
    let shop = Shop::open(&s, s.dir.path(), vec![echo]).await;
    let req = requirements(&shop, SKILL).await;
    let before = balances(&s, &shop).await;
    let payment = pay(&s, &req, &shop);

    let r = shop.post(SKILL, Some(&payment), "\"hello\"").await;
    assert_eq!(r.status(), 200);
    let receipt = header(&r, "PAYMENT-RESPONSE").unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"echo": "\"hello\"", "run": 1})
    );
    let settled = wire::decode_payment_response(receipt.as_bytes()).unwrap();
    assert!(settled.success);
    assert_eq!(settled.transaction.len(), 66);
    assert_eq!(settled.payer, Some(s.payer.address().to_string()));
    assert_eq!(settled.amount, Some(PRICE.to_string()));
    // Paid to the base unit, and paid before the skill ran.
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE)
    );
    assert_eq!(
        runs.lock().unwrap().as_slice(),
        &[("\"hello\"".to_owned(), before.1 + PRICE)]
    );
    assert_eq!(shop.journaled(), ["x402_payment", "x402_delivery"]);
    let block = s.node.block_number().await;

    // The same payment again: the same answer, nothing charged, the skill not run.
    for _ in 0..2 {
        let r = shop.post(SKILL, Some(&payment), "\"hello\"").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "PAYMENT-RESPONSE").unwrap(), receipt);
        assert_eq!(r.text().await.unwrap(), body);
    }
    // With another body: no free work.
    let r = shop.post(SKILL, Some(&payment), "\"more\"").await;
    assert_eq!(r.status(), 409);
    assert_eq!(header(&r, "PAYMENT-RESPONSE").unwrap(), receipt);
    let refusal: Value = r.json().await.unwrap();
    assert_eq!(refusal["error"], "request_mismatch");
    assert_eq!(runs.lock().unwrap().len(), 1);
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE)
    );
    assert_eq!(s.node.block_number().await, block);
    assert_eq!(shop.journaled(), ["x402_payment", "x402_delivery"]);

    // The seller's journal audits clean against the chain.
    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&shop.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    let [sale] = report.sales.as_slice() else {
        panic!("{}", report.to_table());
    };
    assert_eq!(sale.stage, "delivered");
    assert!(sale.clean);
    assert_eq!(
        (sale.buyer, sale.seller, sale.price.base_units()),
        (s.payer.address(), seller, PRICE)
    );
    assert_eq!(sale.tx_hash.to_string(), settled.transaction);
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_payments_are_refused_with_their_reason_and_move_nothing() {
    let s = Setup::start().await;
    let seller = dev_wallet(3).address();
    let (echo, runs) = echo(&s, seller, 0).await;
    let weather = PricedService::typed::<weather::ForecastQuery, weather::Forecast>(
        weather::FORECAST_KIND,
        Amount::from_base_units(PRICE),
        weather::WeatherService::new(Arc::new(weather::ClimatologyProvider::new().unwrap())),
    );
    let shop = Shop::open(&s, s.dir.path(), vec![echo, weather]).await;
    let req = requirements(&shop, SKILL).await;
    let now = unix_now();
    let to = shop.address();

    // One payment settled first, whose nonce the "used nonce" case reuses: signed by
    // a second payer with the same key (a spending policy signs a nonce once).
    let twin = |dir: &str| crate::support::Payer::new(s.dir.path().join(dir), dev_wallet(6));
    let (payer, again) = (twin("twin-a"), twin("twin-b"));
    s.minter
        .mint(payer.address(), Amount::from_base_units(FUNDS))
        .await
        .unwrap();
    let header_by = |p: &crate::support::Payer, mut t: wallets::TransferWithAuthorization| {
        t.from = p.address();
        let signed = p.sign(s.domain(TOKEN), t);
        wire::encode_header(&s.request(&req, &signed).payment_payload).unwrap()
    };
    let first = s.transfer(to, PRICE, 0, now + 120);
    let used_nonce = first.nonce;
    let r = shop.post(SKILL, Some(&header_by(&payer, first)), "1").await;
    assert_eq!(r.status(), 200);
    let twin_balance = s.balance(payer.address()).await;
    let before = balances(&s, &shop).await;
    let journaled = shop.journaled();
    let block = s.node.block_number().await;

    let poor = crate::support::Payer::new(s.dir.path().join("poor"), Wallet::random());
    let poor_payment = header_by(&poor, s.transfer(to, PRICE, 0, now + 120));
    let mut reused = s.transfer(to, PRICE, 0, now + 119);
    reused.nonce = used_nonce;
    let mut wrong_accepted =
        wire::decode_payment_signature(pay(&s, &req, &shop).as_bytes()).unwrap();
    wrong_accepted.accepted.amount = "1".into();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong amount",
            s.payment_header(&req, s.transfer(to, PRICE - 1, 0, now + 120), TOKEN),
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ),
        (
            "wrong payee",
            s.payment_header(
                &req,
                s.transfer(Wallet::random().address(), PRICE, 0, now + 120),
                TOKEN,
            ),
            "invalid_exact_evm_payload_recipient_mismatch",
        ),
        (
            "expired",
            s.payment_header(&req, s.transfer(to, PRICE, 0, now + 3), TOKEN),
            "invalid_exact_evm_payload_authorization_valid_before",
        ),
        (
            "not yet valid",
            s.payment_header(&req, s.transfer(to, PRICE, now + 600, now + 900), TOKEN),
            "invalid_exact_evm_payload_authorization_valid_after",
        ),
        (
            "signed in another domain",
            s.payment_header(&req, s.transfer(to, PRICE, 0, now + 120), "USDC"),
            "invalid_exact_evm_payload_signature",
        ),
        (
            "used nonce",
            header_by(&again, reused),
            "invalid_exact_evm_nonce_already_used",
        ),
        (
            "short balance",
            poor_payment,
            "invalid_exact_evm_insufficient_balance",
        ),
        (
            "accepted another offer",
            wire::encode_header(&wrong_accepted).unwrap(),
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ),
    ];
    for (what, payment, reason) in cases {
        let r = shop.post(SKILL, Some(&payment), "2").await;
        assert_eq!(r.status(), 402, "{what}");
        let required =
            wire::decode_payment_required(header(&r, "PAYMENT-REQUIRED").unwrap().as_bytes())
                .unwrap();
        assert_eq!(required.error.as_deref(), Some(reason), "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], reason, "{what}");
        assert!(
            body["invalidMessage"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }

    // Not payments at all, and bodies that are not requests.
    let big_header = "A".repeat(20_000);
    let good = pay(&s, &req, &shop);
    for (what, skill, payment, body, status, error) in [
        (
            "garbage header",
            SKILL,
            "%%% not base64",
            "3",
            400,
            "invalid_payment_header",
        ),
        (
            "JSON of nothing",
            SKILL,
            "e30=",
            "3",
            400,
            "invalid_payment_header",
        ),
        (
            "oversized header",
            SKILL,
            big_header.as_str(),
            "3",
            400,
            "invalid_payment_header",
        ),
        (
            "not a forecast query",
            weather::FORECAST_KIND,
            good.as_str(),
            "{\"city\": 1}",
            400,
            "invalid_request",
        ),
    ] {
        let r = shop.post(skill, Some(payment), body).await;
        assert_eq!(r.status(), status, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], error, "{what}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = shop
        .post(
            SKILL,
            Some(&good),
            &"x".repeat(x402::seller::DEFAULT_MAX_BODY_BYTES + 1),
        )
        .await;
    assert_eq!(r.status(), 413);

    // Nothing moved, nothing ran, nothing was journaled.
    assert_eq!(balances(&s, &shop).await, before);
    assert_eq!(s.balance(poor.address()).await, 0);
    assert_eq!(s.balance(payer.address()).await, twin_balance);
    assert_eq!(s.node.block_number().await, block);
    assert_eq!(shop.journaled(), journaled);
    assert_eq!(runs.lock().unwrap().len(), 1);

    // And the seller still sells.
    let r = shop.post(SKILL, Some(&good), "4").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE)
    );
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_with_one_payment_pay_once() {
    let s = Setup::start().await;
    let (echo, runs) = echo(&s, dev_wallet(3).address(), 0).await;
    let shop = Shop::open(&s, s.dir.path(), vec![echo]).await;
    let req = requirements(&shop, SKILL).await;
    let before = balances(&s, &shop).await;
    let payment = pay(&s, &req, &shop);
    let answers = futures::future::join_all((0..8).map(|_| async {
        let r = shop.post(SKILL, Some(&payment), "\"once\"").await;
        (
            r.status().as_u16(),
            header(&r, "PAYMENT-RESPONSE"),
            r.text().await.unwrap(),
        )
    }))
    .await;
    let first = answers[0].clone();
    assert_eq!(first.0, 200, "{first:?}");
    for a in &answers {
        assert_eq!(a, &first);
    }
    assert_eq!(runs.lock().unwrap().len(), 1);
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE)
    );
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skill_that_fails_after_payment_runs_again_without_a_second_charge() {
    let s = Setup::start().await;
    let (echo, runs) = echo(&s, dev_wallet(3).address(), 1).await;
    let shop = Shop::open(&s, s.dir.path(), vec![echo]).await;
    let req = requirements(&shop, SKILL).await;
    let before = balances(&s, &shop).await;
    let payment = pay(&s, &req, &shop);

    let r = shop.post(SKILL, Some(&payment), "\"try\"").await;
    assert_eq!(r.status(), 502);
    let receipt = header(&r, "PAYMENT-RESPONSE").unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "skill_failed");
    // The skill's own words stay on the host (they may name its files or upstream
    // services); the client is told where the operator finds them.
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("fell over"), "{message}");
    assert!(
        message.contains("its host's log has the details (payment transaction 0x"),
        "{message}"
    );
    assert_eq!(shop.journaled(), ["x402_payment"]);
    let paid = (before.0 - PRICE, before.1 + PRICE);
    assert_eq!(balances(&s, &shop).await, paid);

    // Retried, with a corrected body: served, not charged again.
    let r = shop.post(SKILL, Some(&payment), "\"again\"").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "PAYMENT-RESPONSE").unwrap(), receipt);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"echo": "\"again\"", "run": 2}));
    assert_eq!(balances(&s, &shop).await, paid);
    assert_eq!(runs.lock().unwrap().len(), 2);
    assert_eq!(shop.journaled(), ["x402_payment", "x402_delivery"]);
    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&shop.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    shop.close().await;
}

/// A `Settling` record of `transfer` in the store at `path`, as a seller that died
/// around its broadcast leaves it.
fn settling(s: &Setup, path: &std::path::Path, signed: &wallets::SignedPayment) {
    let Payment::Authorization { domain, transfer } = &signed.payment else {
        panic!("not an authorization");
    };
    let store = SaleStore::open(path).unwrap();
    let record = SaleRecord {
        skill: SKILL.into(),
        resource: "http://127.0.0.1/x402/echo".into(),
        price: Amount::from_base_units(PRICE),
        domain: domain.clone(),
        transfer: transfer.clone(),
        signature: signed.signature,
        request_hash: wallets::keccak256(b"\"crash\""),
        from_block: s.addresses.deployed_at,
        state: SaleState::Settling,
    };
    let key = x402::verify::payment_key(s.stablecoin(), transfer.from, transfer.nonce);
    store.put(&key, &record).unwrap();
}

/// Settles `signed` from another account (dev account 1), as the seller's broadcast
/// before a crash would have.
async fn settle_elsewhere(
    s: &Setup,
    signed: &wallets::SignedPayment,
) -> chain::AuthorizationReceipt {
    let relayer = chain::connect(&s.node.http_url(), Arc::new(dev_wallet(1)))
        .await
        .unwrap();
    let Payment::Authorization { transfer, .. } = &signed.payment else {
        unreachable!()
    };
    let receipt = chain::Eip3009Token::at(relayer, s.stablecoin())
        .transfer_with_authorization(transfer, &signed.signature)
        .await
        .unwrap();
    assert!(receipt.success);
    receipt
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_seller_reconciles_the_sales_left_settling() {
    let s = Setup::start().await;
    let seller = dev_wallet(3).address();
    let now = unix_now();
    let shop_dir = s.dir.path().join("shop");
    let store = shop_dir.join("sales");
    let (echo, runs) = echo(&s, seller, 0).await;
    let sign = |valid_before| {
        s.payer
            .sign(s.domain(TOKEN), s.transfer(seller, PRICE, 0, valid_before))
    };
    // Broadcast before the crash; never sent and still valid; never sent and expired.
    let (sent, waiting, expired) = (sign(now + 300), sign(now + 300), sign(now - 1));
    for signed in [&sent, &waiting, &expired] {
        settling(&s, &store, signed);
    }
    let receipt = settle_elsewhere(&s, &sent).await;
    let shop = Shop::open(&s, &shop_dir, vec![echo]).await;
    let before = balances(&s, &shop).await;
    let state = |signed: &wallets::SignedPayment| {
        let Payment::Authorization { transfer, .. } = &signed.payment else {
            unreachable!()
        };
        let sale = shop.seller.sale(transfer.from, transfer.nonce).unwrap();
        sale.map(|r| r.state)
    };

    let done = shop.seller.reconcile().await.unwrap();
    assert_eq!(
        done,
        x402::seller::Reconciled {
            settled: 1,
            forgotten: 1,
            pending: 1
        }
    );
    assert_eq!(
        state(&sent),
        Some(SaleState::Settled {
            settlement: receipt.tx
        })
    );
    assert_eq!(state(&waiting), Some(SaleState::Settling));
    assert_eq!(state(&expired), None);
    assert_eq!(shop.journaled(), ["x402_payment"]);
    // Nothing was sent or run; a second pass changes nothing.
    assert_eq!(balances(&s, &shop).await, before);
    assert!(runs.lock().unwrap().is_empty());
    let again = shop.seller.reconcile().await.unwrap();
    assert_eq!((again.settled, again.forgotten, again.pending), (0, 0, 1));
    assert_eq!(shop.journaled(), ["x402_payment"]);

    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&shop.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_left_settling_by_a_crash_is_resumed_from_the_chain() {
    let s = Setup::start().await;
    let seller = dev_wallet(3).address();
    let now = unix_now();
    let shop_dir = s.dir.path().join("shop");
    let store = shop_dir.join("sales");
    let (echo, runs) = echo(&s, seller, 0).await;

    // Died after recording Settling, before the broadcast: broadcast now, once.
    let never_sent = s
        .payer
        .sign(s.domain(TOKEN), s.transfer(seller, PRICE, 0, now + 300));
    settling(&s, &store, &never_sent);
    // Died after the broadcast, before recording Settled: the transaction is found.
    let sent = s
        .payer
        .sign(s.domain(TOKEN), s.transfer(seller, PRICE, 0, now + 300));
    settling(&s, &store, &sent);
    let receipt = settle_elsewhere(&s, &sent).await;
    // Died in Settling with an authorization now expired and never used: nothing
    // was paid, and the payment is refused like a new one.
    let expired = s
        .payer
        .sign(s.domain(TOKEN), s.transfer(seller, PRICE, 0, now + 3));
    settling(&s, &store, &expired);

    let shop = Shop::open(&s, &shop_dir, vec![echo]).await;
    let req = requirements(&shop, SKILL).await;
    let header_of = |signed: &wallets::SignedPayment| {
        wire::encode_header(&s.request(&req, signed).payment_payload).unwrap()
    };
    let before = balances(&s, &shop).await;

    let r = shop
        .post(SKILL, Some(&header_of(&never_sent)), "\"crash\"")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE)
    );
    let r = shop.post(SKILL, Some(&header_of(&sent)), "\"crash\"").await;
    assert_eq!(r.status(), 200);
    let settled =
        wire::decode_payment_response(header(&r, "PAYMENT-RESPONSE").unwrap().as_bytes()).unwrap();
    assert_eq!(settled.transaction, receipt.tx.tx_hash.to_string());
    assert_eq!(
        balances(&s, &shop).await,
        (before.0 - PRICE, before.1 + PRICE),
        "the payment settled before the crash is not charged again"
    );
    assert_eq!(runs.lock().unwrap().len(), 2);

    let r = shop
        .post(SKILL, Some(&header_of(&expired)), "\"crash\"")
        .await;
    assert_eq!(r.status(), 402);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "invalid_exact_evm_payload_authorization_valid_before"
    );
    let Payment::Authorization { transfer, .. } = &expired.payment else {
        unreachable!()
    };
    assert!(shop
        .seller
        .sale(transfer.from, transfer.nonce)
        .unwrap()
        .is_none());
    assert_eq!(runs.lock().unwrap().len(), 2);

    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&shop.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.sales.len(), 2);
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_sale_is_flagged_by_the_audit() {
    let s = Setup::start().await;
    let (echo, _) = echo(&s, dev_wallet(3).address(), 0).await;
    let shop = Shop::open(&s, s.dir.path(), vec![echo]).await;
    let req = requirements(&shop, SKILL).await;
    let r = shop.post(SKILL, Some(&pay(&s, &req, &shop)), "1").await;
    assert_eq!(r.status(), 200);
    let wallet = shop.wallet.clone();
    let journal = shop.journal.clone();
    shop.close().await;

    // The seller's journal re-signed by the seller, claiming a higher amount.
    let forged = s.dir.path().join("forged.journal");
    let mut j = wallets::Journal::open(&forged, wallet).unwrap();
    let mut index = None;
    for e in wallets::journal::read_entries(&journal).unwrap() {
        let mut body = e.body.clone();
        if e.kind == "x402_payment" {
            body["price"] = json!((2 * PRICE).to_string());
            body["payment"]["payment"]["transfer"]["value"] = json!((2 * PRICE).to_string());
            index = Some(e.index);
        }
        j.append(&e.kind, body).unwrap();
    }
    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&forged), Some(&check))
        .await
        .unwrap();
    let reasons: Vec<&str> = report
        .discrepancies
        .iter()
        .filter(|d| d.entry == index)
        .map(|d| d.reason.as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not recover the payer")),
        "{}",
        report.to_table()
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("moved no {} base units", 2 * PRICE))),
        "{}",
        report.to_table()
    );
    assert!(!report.sales[0].clean);
}
