//! The host's clock decides every wall-clock fact: a test moves a manual clock
//! instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use agent_core::{AgentLimits, HostConfig};
use serde_json::json;
use wallets::{Wallet, B256};

use crate::support::{agent, host_with, manual_clock, seal, Echo, Echoer, RawClient, CHAIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_expired_by_the_hosts_clock_is_refused_and_replies_expire_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).clock(&clock));
    let bob = agent(&h, "bob", vec![Arc::new(Echoer)]);
    let me = Wallet::random();
    let d = B256::random();
    let t0 = h.clock().unix_ms();
    let ask = |seq: u64, expiry: u64| {
        seal(
            &me,
            bob.address(),
            d,
            seq,
            "ask/test.Echo",
            json!({"text": "hi"}),
            expiry,
        )
    };
    let mut c = RawClient::connect(&h.url().unwrap()).await;

    // Valid for a minute by the host's clock (long expired by the system's): answered,
    // and the reply expires one message TTL after the host's now.
    c.send(&ask(1, t0 + 60_000)).await;
    let reply = c.envelope().await;
    assert_eq!(reply.payload, json!({"re": 1, "ok": {"text": "hi"}}));
    let ttl = u64::try_from(AgentLimits::default().message_ttl.as_millis()).unwrap();
    assert_eq!(reply.expiry, t0 + ttl);

    // Sealed now, arriving once the host's clock passed its expiry: refused, with
    // both times.
    let late = ask(2, t0 + 60_000);
    clock.advance(Duration::from_secs(61));
    c.send(&late).await;
    let why = c.refusal().await;
    assert_eq!(
        why,
        format!("expired at {} ms, now {} ms", t0 + 60_000, t0 + 61_000)
    );
    assert_eq!(bob.stats().handled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advancing_the_clock_lets_an_agent_prune_replay_records_that_protect_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).clock(&clock));
    let bob = agent(&h, "bob", vec![Arc::new(Echoer)]);
    let me = Wallet::random();
    let t0 = h.clock().unix_ms();
    let first = seal(
        &me,
        bob.address(),
        B256::random(),
        1,
        "ask/test.Echo",
        json!({"text": "once"}),
        t0 + 60_000,
    );
    let mut c = RawClient::connect(&h.url().unwrap()).await;
    c.send(&first).await;
    c.envelope().await;

    // While the envelope is valid its replay record stays, and refuses it again.
    assert_eq!(bob.prune_replay().await.unwrap(), 0);
    c.send(&first).await;
    assert!(c.refusal().await.starts_with("duplicate"));

    // Once it has expired by the host's clock, the record goes; the expiry check
    // alone refuses the envelope now.
    clock.advance(Duration::from_secs(60));
    assert_eq!(bob.prune_replay().await.unwrap(), 1);
    assert_eq!(bob.prune_replay().await.unwrap(), 0);
    c.send(&first).await;
    assert!(c.refusal().await.starts_with("expired"));
    assert_eq!(bob.stats().handled, 1);
}

#[tokio::test]
async fn agents_of_one_host_stamp_and_check_expiries_by_its_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).clock(&clock));
    let bob = agent(&h, "bob", vec![Arc::new(Echoer)]);
    let alice = agent(&h, "alice", vec![]);
    let ctx = alice.context();
    assert_eq!(ctx.clock().now(), clock.now());
    // Far from the system's time, and no time passes on the host's clock: both
    // sides agree the messages are fresh.
    let echo = ctx
        .ask(bob.address(), Echo { text: "now".into() })
        .await
        .unwrap();
    assert_eq!(echo.text, "now");
    clock.advance(Duration::from_secs(3_600));
    let echo = ctx
        .ask(
            bob.address(),
            Echo {
                text: "later".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.text, "later");
    assert_eq!(bob.stats().rejected, 0);
}
