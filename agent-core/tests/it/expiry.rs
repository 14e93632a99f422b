//! Envelopes expire at most the host's maximum TTL after they arrive.

use std::sync::Arc;
use std::time::Duration;

use agent_core::{AgentLimits, Error, HostConfig};
use serde_json::json;
use wallets::{Wallet, B256};

use crate::support::{
    agent, agent_with, host, host_with, manual_clock, seal, Echo, Echoer, RawClient, CHAIN,
};

/// The number after `label` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let rest = &text[text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text:?}"))
        + label.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_expiring_beyond_the_maximum_ttl_is_refused_naming_both_values() {
    const TEN_MINUTES: u64 = 10 * 60 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).clock(&clock));
    let alice = agent(&h, "alice", vec![Arc::new(Echoer)]);
    let now = h.clock().unix_ms();
    let me = Wallet::random();
    let d = B256::random();
    let ask = |seq: u64, expiry: u64| {
        seal(
            &me,
            alice.address(),
            d,
            seq,
            "ask/test.Echo",
            json!({"text": "hi"}),
            expiry,
        )
    };
    let mut c = RawClient::connect(&h.url().unwrap()).await;

    // Never expiring: its replay record could never be pruned. The latest accepted
    // expiry is exactly ten minutes after the host's now.
    c.send(&ask(1, u64::MAX)).await;
    let why = c.refusal().await;
    assert!(why.contains("too far in the future"), "{why}");
    assert_eq!(number_after(&why, "expiry "), u64::MAX, "{why}");
    assert_eq!(
        number_after(&why, "the latest accepted is "),
        now + TEN_MINUTES,
        "{why}"
    );

    // A millisecond beyond the default cap: refused too.
    c.send(&ask(2, now + TEN_MINUTES + 1)).await;
    let why = c.refusal().await;
    assert!(why.contains("too far in the future"), "{why}");

    // At the cap: answered.
    c.send(&ask(3, now + TEN_MINUTES)).await;
    let reply = c.envelope().await;
    assert_eq!(reply.payload, json!({"re": 3, "ok": {"text": "hi"}}));
    assert_eq!(h.edge_stats().refused, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_ttl_is_configurable_and_caps_the_hosts_own_messages() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3_600);
    let long_lived = AgentLimits {
        message_ttl: hour,
        ..AgentLimits::default()
    };
    // A host that accepts two hours, with an agent whose messages live one hour.
    let a = host_with(HostConfig::new(CHAIN, dir.path().join("a")).max_ttl(2 * hour));
    let alice = agent_with(&a, "alice", Arc::new(Wallet::random()), vec![], long_lived);
    // A host with the default ten minutes.
    let b = host(dir.path(), "b");
    let bob = agent(&b, "bob", vec![Arc::new(Echoer)]);
    a.add_peer(bob.address(), b.url().unwrap());

    // Bob's host refuses alice's hour-long ask, and says so in bob's name: the ask
    // fails at once, with the reason.
    let err = alice
        .context()
        .ask(bob.address(), Echo { text: "x".into() })
        .await
        .unwrap_err();
    match err {
        Error::Refused { peer, reason } => {
            assert_eq!(peer, bob.address());
            assert!(reason.contains("too far in the future"), "{reason}");
        }
        other => panic!("expected a refusal, got {other}"),
    }

    // An agent of bob's host with the same limits is capped to the host's ten
    // minutes, so its own host's agents accept its messages.
    let carol = agent_with(&b, "carol", Arc::new(Wallet::random()), vec![], long_lived);
    let echo = carol
        .context()
        .ask(bob.address(), Echo { text: "y".into() })
        .await
        .unwrap();
    assert_eq!(echo.text, "y");
    assert_eq!(bob.stats().rejected, 0);
}
