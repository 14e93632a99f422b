//! The x402 buyer on the embedded chain: an Agora agent pays an Agora seller through
//! its spending policy, a lost answer is re-sent with the same payment and charged
//! once, a purchase id is one payment forever, the policy's limits and token pins
//! refuse what they do not allow with nothing signed or moved, both journals audit
//! clean against the chain; and the agent pays the official Python Flask seller
//! middleware, settled by the x402 package's reference facilitator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use negotiation::audit::{audit, ChainCheck};
use negotiation::journal::JournalBody;
use negotiation::{service_fn, ServiceOutput, SharedJournal};
use registry::devnet::{dev_key, dev_wallet};
use serde_json::{json, Value};
use wallets::{Amount, Journal, Limits, SpendingPolicy, Wallet};
use x402::buyer::{BuyError, Method};
use x402::test_utils::{python, serve_script};
use x402::{BuyerConfig, PricedService, Purchase, X402Buyer};

use crate::support::{flask_seller, Setup, Shop, PRICE, TOKEN};

const SKILL: &str = "echo";

/// An agent that buys: its wallet, policy, journal and buyer, under `dir`.
struct Agent {
    wallet: Arc<Wallet>,
    journal: std::path::PathBuf,
    buyer: X402Buyer,
}

impl Agent {
    /// A fresh wallet holding `funds` base units, behind `limits`, pinned to the setup's
    /// token unless `pin` is false.
    async fn open(
        s: &Setup,
        dir: &std::path::Path,
        funds: u128,
        limits: Limits,
        pin: bool,
    ) -> Self {
        let wallet = Arc::new(Wallet::random());
        if funds > 0 {
            s.minter
                .mint(wallet.address(), Amount::from_base_units(funds))
                .await
                .unwrap();
        }
        let mut policy = SpendingPolicy::open(dir.join("spend"), wallet.clone(), limits).unwrap();
        if pin {
            policy = policy.pin_token(s.domain(TOKEN));
        }
        let journal = dir.join("buyer.journal");
        let shared = SharedJournal::new(Journal::open(&journal, wallet.clone()).unwrap());
        let buyer = X402Buyer::open(
            Arc::new(policy),
            shared,
            BuyerConfig::new(dir.join("purchases")),
        )
        .unwrap();
        Self {
            wallet,
            journal,
            buyer,
        }
    }

    fn kinds(&self) -> Vec<String> {
        wallets::journal::read_entries(&self.journal)
            .map(|entries| entries.into_iter().map(|e| e.kind).collect())
            .unwrap_or_default()
    }
}

/// A service that answers its task (the request's body, as text) back.
fn echo() -> PricedService {
    let service =
        service_fn(|task: String| async move { Ok(ServiceOutput::new(json!({"echo": task}))) });
    let schema = json!({"type": "string"});
    PricedService::new(
        SKILL,
        Amount::from_base_units(PRICE),
        service,
        schema.clone(),
        schema,
    )
}

fn usdc(base_units: u128) -> Option<Amount> {
    Some(Amount::from_base_units(base_units))
}

/// A loopback HTTP proxy to `upstream` that loses the answer to the first paid request:
/// it forwards the request, lets the seller settle and answer, then breaks the
/// connection instead of passing the answer on.
async fn lossy_proxy(upstream: String) -> (String, tokio::task::JoinHandle<()>) {
    async fn forward(
        State((upstream, lost)): State<(String, Arc<AtomicBool>)>,
        request: Request,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let url = format!("{upstream}{}", parts.uri);
        let mut out = reqwest::Client::new().request(parts.method, url).body(body);
        for (name, value) in &parts.headers {
            if name != "host" {
                out = out.header(name, value);
            }
        }
        let answer = out.send().await.unwrap();
        let paid = parts.headers.contains_key("PAYMENT-SIGNATURE");
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        let bytes = answer.bytes().await.unwrap();
        if paid && !lost.swap(true, Ordering::SeqCst) {
            // The seller has settled and answered; the buyer never hears it.
            let broken = futures::stream::once(async {
                Err::<axum::body::Bytes, _>(std::io::Error::other("answer lost"))
            });
            return response.body(Body::from_stream(broken)).unwrap();
        }
        response.body(Body::from(bytes)).unwrap()
    }
    let app = axum::Router::new()
        .fallback(forward)
        .with_state((upstream, Arc::new(AtomicBool::new(false))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_pays_an_x402_seller_once_even_when_the_answer_is_lost() {
    let s = Setup::start().await;
    let shop = Shop::open(&s, &s.dir.path().join("shop"), vec![echo()]).await;
    let limits = Limits {
        per_deal: usdc(1_000_000),
        daily: usdc(5_000_000),
        ..Limits::default()
    };
    let agent = Agent::open(&s, &s.dir.path().join("agent"), 3 * PRICE, limits, true).await;
    let (proxy, proxy_task) = lossy_proxy(shop.server.url()).await;
    let url = format!("{proxy}/x402/{SKILL}");
    let before = (
        s.balance(agent.wallet.address()).await,
        s.balance(shop.address()).await,
    );

    // The first paid answer is lost: the buyer re-sends the same payment and gets the
    // seller's stored answer; one charge.
    let purchase = Purchase::post_json(&url, &"lisbon")
        .unwrap()
        .id("trip-42-forecast-lisbon");
    let answer = agent.buyer.buy(purchase.clone()).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json::<Value>().unwrap(),
        json!({"echo": "\"lisbon\""})
    );
    assert!(!answer.from_store);
    let paid = answer.paid.clone().unwrap();
    assert_eq!(paid.sends, 2, "the lost answer was re-sent once");
    assert_eq!(paid.amount(), Amount::from_base_units(PRICE));
    let tx = paid
        .transaction()
        .expect("PAYMENT-RESPONSE names the settlement");
    assert_eq!(
        (
            s.balance(agent.wallet.address()).await,
            s.balance(shop.address()).await
        ),
        (before.0 - PRICE, before.1 + PRICE)
    );

    // The same purchase again: its stored answer, nothing sent, nothing paid.
    let again = agent.buyer.buy(purchase.clone()).await.unwrap();
    assert!(again.from_store);
    assert_eq!(again.body, answer.body);
    assert_eq!(again.paid.unwrap().transaction(), Some(tx));

    // The same id for another request is refused before anything is sent.
    let other = Purchase::post_json(&url, &"porto")
        .unwrap()
        .id("trip-42-forecast-lisbon");
    let err = agent.buyer.buy(other).await.unwrap_err();
    assert!(matches!(err, BuyError::IdReused { .. }), "{err}");
    assert!(err.to_string().contains("with another body"), "{err}");
    assert!(err.paid().is_none());

    // A new purchase (a fresh id) is a new payment.
    let second = agent
        .buyer
        .buy(Purchase::post_json(&url, &"porto").unwrap())
        .await
        .unwrap();
    assert_eq!(
        second.json::<Value>().unwrap(),
        json!({"echo": "\"porto\""})
    );
    assert_ne!(second.id, answer.id);
    assert_ne!(second.paid.unwrap().transaction(), Some(tx));
    assert_eq!(
        (
            s.balance(agent.wallet.address()).await,
            s.balance(shop.address()).await
        ),
        (before.0 - 2 * PRICE, before.1 + 2 * PRICE)
    );

    // Both journals audit clean against the chain, and name the same sales.
    assert_eq!(
        agent.kinds(),
        [
            "x402_purchase",
            "x402_answer",
            "x402_purchase",
            "x402_answer"
        ]
    );
    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(&[agent.journal.clone(), shop.journal.clone()], Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    let stages = |stage: &str| {
        let mut sales: Vec<_> = report
            .sales
            .iter()
            .filter(|x| x.stage == stage)
            .map(|x| (x.sale, x.buyer, x.seller, x.price.base_units()))
            .collect();
        sales.sort();
        sales
    };
    assert_eq!(stages("answered").len(), 2, "{}", report.to_table());
    assert_eq!(stages("answered"), stages("delivered"));

    // A journal claiming the agent's purchase, and an answer naming another sale's
    // transaction, do not audit clean.
    let entries = wallets::journal::read_entries(&agent.journal).unwrap();
    let body = |i: usize| JournalBody::parse(&entries[i].kind, &entries[i].body).unwrap();
    let JournalBody::X402Answer(mut answer) = body(1) else {
        panic!("not an answer: {:?}", entries[1].kind);
    };
    let JournalBody::X402Answer(other) = body(3) else {
        panic!("not an answer: {:?}", entries[3].kind);
    };
    answer.transaction = other.transaction;
    let forged = s.dir.path().join("forged.journal");
    let journal = SharedJournal::new(Journal::open(&forged, Arc::new(Wallet::random())).unwrap());
    journal.append(body(0)).await.unwrap();
    journal.append(answer).await.unwrap();
    let report = audit(std::slice::from_ref(&forged), Some(&check))
        .await
        .unwrap();
    let found: Vec<_> = report
        .discrepancies
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert!(
        found.iter().any(|r| r.contains("not the journal's signer")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|r| r.contains("did not use the x402 payment's authorization")),
        "{found:?}"
    );
    proxy_task.abort();
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_refuses_what_it_does_not_allow_and_nothing_moves() {
    let s = Setup::start().await;
    let shop = Shop::open(&s, &s.dir.path().join("shop"), vec![echo()]).await;
    let url = shop.url(SKILL);
    let dir = s.dir.path();

    // Above the per-deal limit: refused by the policy, nothing signed.
    let small = Limits {
        per_deal: usdc(PRICE - 1),
        ..Limits::default()
    };
    let agent = Agent::open(&s, &dir.join("small"), 3 * PRICE, small, true).await;
    let before = s.balance(agent.wallet.address()).await;
    let err = agent
        .buyer
        .buy(Purchase::post_json(&url, &"lisbon").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::Policy { .. }), "{err}");
    assert!(err.to_string().contains("per-deal"), "{err}");
    assert!(err.paid().is_none());
    assert_eq!(s.balance(agent.wallet.address()).await, before);
    assert!(
        agent.kinds().is_empty(),
        "nothing journaled: {:?}",
        agent.kinds()
    );

    // A daily budget of one and a half purchases: the second is refused.
    let daily = Limits {
        daily: usdc(PRICE + PRICE / 2),
        ..Limits::default()
    };
    let agent = Agent::open(&s, &dir.join("daily"), 3 * PRICE, daily, true).await;
    agent
        .buyer
        .buy(Purchase::post_json(&url, &"one").unwrap())
        .await
        .unwrap();
    let err = agent
        .buyer
        .buy(Purchase::post_json(&url, &"two").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::Policy { .. }), "{err}");
    assert!(err.to_string().contains("daily"), "{err}");
    assert_eq!(s.balance(agent.wallet.address()).await, 2 * PRICE);

    // A token the policy is not pinned to is no offer it can pay.
    let agent = Agent::open(
        &s,
        &dir.join("unpinned"),
        3 * PRICE,
        Limits::default(),
        false,
    )
    .await;
    let err = agent
        .buyer
        .buy(Purchase::post_json(&url, &"lisbon").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::NoAcceptableOffer { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is not a token the spending policy may pay in"),
        "{err}"
    );
    assert_eq!(s.balance(agent.wallet.address()).await, 3 * PRICE);

    // A payment the seller refuses (the payer cannot cover it) comes back with the
    // seller's reason; it stays counted until it expires.
    let broke = Agent::open(&s, &dir.join("broke"), 0, Limits::default(), true).await;
    let err = broke
        .buyer
        .buy(Purchase::post_json(&url, &"lisbon").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("insufficient_balance"), "{err}");
    assert!(err.paid().is_some());

    // An unreachable server, and a free resource.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = agent
        .buyer
        .buy(Purchase::get(format!(
            "http://{}/x402/echo",
            closed.local_addr().unwrap()
        )))
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::Unreachable { .. }), "{err}");
    assert!(err.to_string().ends_with("nothing was paid"), "{err}");
    let err = agent
        .buyer
        .buy(Purchase::new(Method::GET, &url))
        .await
        .unwrap_err();
    assert!(matches!(err, BuyError::Status { status: 405, .. }), "{err}");
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_pays_the_official_flask_seller_through_the_reference_facilitator() {
    let python = python();
    let s = Setup::start().await;
    let network = format!("eip155:{}", s.addresses.chain_id);
    // The x402 package's reference facilitator, relaying from dev account 2.
    let facilitator = serve_script(
        &python,
        "facilitator.py",
        &[
            "--rpc".into(),
            s.node.http_url(),
            "--network".into(),
            network.clone(),
        ],
        &[("RELAYER_KEY", hex::encode(dev_key(2)))],
    )
    .await;
    // The official Flask seller middleware, settling through it.
    let seller = flask_seller(&python, &s, &facilitator.url).await;
    let logs = || {
        format!(
            "facilitator:\n{}\nseller:\n{}",
            facilitator.log.lock().unwrap(),
            seller.log.lock().unwrap()
        )
    };
    let url = format!("{}/weather", seller.url);
    let limits = Limits {
        per_deal: usdc(PRICE),
        ..Limits::default()
    };
    let agent = Agent::open(&s, &s.dir.path().join("agent"), 3 * PRICE, limits, true).await;
    let relayer = dev_wallet(2).address();
    let before = (
        s.balance(agent.wallet.address()).await,
        s.balance(s.seller).await,
        s.balance(relayer).await,
    );

    let answer = agent
        .buyer
        .buy(Purchase::get(&url))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(answer.json::<Value>().unwrap()["forecast"], "sunny");
    let paid = answer.paid.unwrap();
    assert!(paid.transaction().is_some(), "{:?}", paid.settlement);
    assert_eq!(
        (
            s.balance(agent.wallet.address()).await,
            s.balance(s.seller).await,
            s.balance(relayer).await
        ),
        (before.0 - PRICE, before.1 + PRICE, before.2),
        "{}",
        logs()
    );

    // Above the policy: a second agent allowed less than the price pays nothing.
    let stingy = Limits {
        per_deal: usdc(PRICE / 2),
        ..Limits::default()
    };
    let other = Agent::open(&s, &s.dir.path().join("stingy"), 3 * PRICE, stingy, true).await;
    let err = other.buyer.buy(Purchase::get(&url)).await.unwrap_err();
    assert!(matches!(err, BuyError::Policy { .. }), "{err}");
    assert_eq!(s.balance(other.wallet.address()).await, 3 * PRICE);
    assert_eq!(s.balance(s.seller).await, before.1 + PRICE);

    // The buyer's journal audits clean against the chain.
    let check = ChainCheck::new(s.node.http_url(), s.addresses);
    let report = audit(std::slice::from_ref(&agent.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.sales.len(), 1, "{}", report.to_table());
    assert_eq!(report.sales[0].stage, "answered");
}
