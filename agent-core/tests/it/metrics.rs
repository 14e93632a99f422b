//! `/metrics` in the Prometheus text format, read by a Prometheus text parser
//! (`prometheus-parse`) as a scraper reads it: counters after known traffic,
//! rejections by reason, payments and the spending policy's headroom, latency
//! histograms, and metrics an upper layer registered.

use std::sync::Arc;

use agent_core::prometheus_client::metrics::counter::Counter;
use agent_core::{AgentLimits, AgentSpec, Host};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wallets::{
    Address, Eip712Domain, Limits, Payment, SpendingPolicy, TransferWithAuthorization, Wallet, B256,
};

use crate::support::{agent, host, now_ms, recv, seal, Echo, Echoer, Note, Notes, RawClient, WAIT};

/// `GET path` on the host's port: the content type and the body.
async fn get(h: &Host, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(h.local_addr().unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap()
        .to_owned();
    (content_type, body.to_owned())
}

/// `/metrics`, parsed.
async fn scrape(h: &Host) -> Vec<Sample> {
    let (content_type, body) = get(h, "/metrics").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap()
        .samples
}

/// The sample of `name` whose labels include `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// The value of the counter or gauge `name` with `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

/// The observation count of the histogram `name` with `labels` (its `+Inf` bucket).
fn observations(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, name, labels).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => buckets.last().unwrap().count,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_messages_rejections_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bob = agent(&h, "bob", vec![Arc::new(Notes(tx)), Arc::new(Echoer)]);
    let (a, b) = (alice.address().to_string(), bob.address().to_string());

    const N: u64 = 7;
    let ctx = alice.context();
    for i in 0..N {
        ctx.tell(
            bob.address(),
            Note {
                text: i.to_string(),
            },
        )
        .await
        .unwrap();
    }
    for _ in 0..N {
        recv(&mut rx).await;
    }
    // Asks: bob has timed his skill before his answer leaves.
    const M: u64 = 3;
    for i in 0..M {
        let text = format!("echo {i}");
        let echo = ctx.ask(bob.address(), Echo { text: text.clone() });
        assert_eq!(echo.await.unwrap(), Echo { text });
    }
    // The same envelope twice: the second is a duplicate.
    let mallory = Wallet::random();
    let once = seal(
        &mallory,
        bob.address(),
        B256::random(),
        1,
        "tell/test.Note",
        json!({"text": "once"}),
        now_ms() + 60_000,
    );
    let mut c = RawClient::connect(&h.url().unwrap()).await;
    c.send(&once).await;
    assert_eq!(recv(&mut rx).await, "once");
    c.send(&once).await;
    assert!(c.refusal().await.starts_with("duplicate"));
    get(&h, "/health").await;

    let m = scrape(&h).await;
    assert_eq!(value(&m, "agora_agents", &[]), 2.0);
    let sent = value(&m, "agora_messages_sent_total", &[("agent", &a)]);
    assert_eq!(sent, (N + M) as f64);
    let handled = value(&m, "agora_messages_handled_total", &[("agent", &b)]);
    assert_eq!(handled, (N + M + 1) as f64);
    let replies = value(&m, "agora_messages_handled_total", &[("agent", &a)]);
    assert_eq!(replies, M as f64);
    let duplicates = [("agent", b.as_str()), ("reason", "duplicate")];
    assert_eq!(value(&m, "agora_messages_rejected_total", &duplicates), 1.0);
    assert!(find(&m, "agora_messages_rejected_total", &[("agent", &a)]).is_none());
    let skill = [("agent", b.as_str()), ("skill", "test.Echo")];
    assert_eq!(
        observations(&m, "agora_skill_duration_seconds", &skill),
        M as f64
    );
    let health = [("route", "/health")];
    assert_eq!(
        observations(&m, "agora_http_request_duration_seconds", &health),
        1.0
    );
    assert_eq!(value(&m, "agora_edge_frames_total", &[]), 2.0);
    assert_eq!(value(&m, "agora_edge_connections_total", &[]), 1.0);

    // A second scrape sees the first one timed.
    let m = scrape(&h).await;
    let route = [("route", "/metrics")];
    assert_eq!(
        observations(&m, "agora_http_request_duration_seconds", &route),
        1.0
    );

    // Today's JSON stays, at `/metrics.json`.
    let (content_type, json) = get(&h, "/metrics.json").await;
    assert_eq!(content_type, "application/json");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["agents"][&b]["handled"], N + M + 1);
    assert_eq!(json["agents"][&b]["rejected"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_payments_policy_headroom_and_what_upper_layers_register() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let wallet = Arc::new(Wallet::random());
    let token = Eip712Domain::new("USD Coin", "2", 1337, Address([7; 20]));
    let limits = Limits {
        per_deal: Some("5 USDC".parse().unwrap()),
        daily: Some("20 USDC".parse().unwrap()),
        ..Limits::default()
    };
    let policy = SpendingPolicy::open(dir.path().join("spend"), wallet.clone(), limits)
        .unwrap()
        .pin_token(token.clone());
    let buyer = h
        .spawn_agent(AgentSpec {
            name: "buyer".into(),
            wallet: wallet.clone(),
            handlers: vec![],
            policy: Some(Arc::new(policy)),
            directory: None,
            limits: AgentLimits::default(),
        })
        .unwrap();
    let who = buyer.address().to_string();
    let pay = |value: &str| Payment::Authorization {
        domain: token.clone(),
        transfer: TransferWithAuthorization {
            from: wallet.address(),
            to: Address([9; 20]),
            value: value.parse().unwrap(),
            valid_after: 0,
            valid_before: u64::MAX,
            nonce: B256::random(),
        },
    };
    let ctx = buyer.context();
    ctx.pay(pay("2.5 USDC")).await.unwrap();
    ctx.pay_unflushed(pay("1 USDC")).await.unwrap();
    ctx.pay(pay("7 USDC")).await.unwrap_err();

    // What the host cannot see, an upper layer counts and registers.
    let deals = Counter::<u64>::default();
    h.register_metrics(|r| r.register("agora_deals_closed", "Deals closed", deals.clone()));
    deals.inc();

    let m = scrape(&h).await;
    let signed = [("agent", who.as_str()), ("outcome", "signed")];
    let refused = [("agent", who.as_str()), ("outcome", "refused")];
    assert_eq!(value(&m, "agora_payments_total", &signed), 2.0);
    assert_eq!(value(&m, "agora_payments_total", &refused), 1.0);
    let agent = [("agent", who.as_str())];
    let spent = "agora_policy_spent_daily_base_units";
    assert_eq!(value(&m, spent, &agent), 3_500_000.0);
    let daily = "agora_policy_daily_limit_base_units";
    assert_eq!(value(&m, daily, &agent), 20_000_000.0);
    let headroom = "agora_policy_daily_headroom_base_units";
    assert_eq!(value(&m, headroom, &agent), 16_500_000.0);
    let per_deal = "agora_policy_per_deal_limit_base_units";
    assert_eq!(value(&m, per_deal, &agent), 5_000_000.0);
    assert_eq!(value(&m, "agora_deals_closed_total", &[]), 1.0);

    // The JSON has the policy too, in base units as strings (the dashboard reads it).
    let (_, json) = get(&h, "/metrics.json").await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["policies"][&who],
        serde_json::json!({"spentDaily": "3500000", "daily": "20000000", "perDeal": "5000000"})
    );
}
