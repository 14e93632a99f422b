//! Where a host sends messages for a remote agent: learned routes only from
//! admitted envelopes, configured endpoints first, and a bounded table.

use std::sync::Arc;

use agent_core::{Error, HostConfig};
use serde_json::json;
use tokio::sync::mpsc;
use wallets::{Address, Wallet, B256};

use crate::support::{
    agent, agent_with, host, host_with, now_ms, recv, seal, Frame, Note, Notes, RawClient, CHAIN,
};

/// Which of two clients the next frame came to first.
async fn first_of(a: &mut RawClient, b: &mut RawClient) -> (&'static str, Frame) {
    tokio::select! {
        f = a.next() => ("first", f),
        f = b.next() => ("second", f),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_does_not_re_point_the_senders_route() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let bob = Wallet::random();
    let url = h.url().unwrap();
    // Bob's own host, and an attacker who recorded bob's traffic.
    let mut real = RawClient::connect(&url).await;
    let mut thief = RawClient::connect(&url).await;

    let d = B256::random();
    let ask = |seq: u64| {
        seal(
            &bob,
            alice.address(),
            d,
            seq,
            "ask/test.Missing",
            json!({}),
            now_ms() + 60_000,
        )
    };
    let recorded = ask(10);
    let lost = ask(9); // signed by bob, never delivered by him
    real.send(&recorded).await;
    let reply = real.envelope().await;
    assert_eq!(reply.recipient, bob.address());

    // The thief plays back the recorded envelope and the lost one: both refused.
    thief.send(&recorded).await;
    let why = thief.refusal().await;
    assert!(why.contains("duplicate"), "{why}");
    thief.send(&lost).await;
    let why = thief.refusal().await;
    assert!(why.contains("replayed"), "{why}");

    // Alice's next message for bob still goes to bob's connection.
    alice
        .context()
        .tell(
            bob.address(),
            Note {
                text: "for bob".into(),
            },
        )
        .await
        .unwrap();
    let (to, frame) = first_of(&mut real, &mut thief).await;
    let Frame::Envelope(got) = frame else {
        panic!("expected an envelope, got {frame:?}")
    };
    assert_eq!(
        to, "first",
        "alice's message for bob went to the thief's connection"
    );
    assert_eq!(
        (got.sender, got.recipient, got.kind.as_str()),
        (alice.address(), bob.address(), "tell/test.Note")
    );
    assert_eq!(h.edge_stats().refused, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_endpoint_wins_over_a_learned_route() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (host(dir.path(), "a"), host(dir.path(), "b"));
    let (to_alice, mut alice_got) = mpsc::unbounded_channel();
    let alice = agent(&a, "alice", vec![Arc::new(Notes(to_alice))]);
    let (to_bob, mut bob_got) = mpsc::unbounded_channel();
    let bob_wallet = Arc::new(Wallet::random());
    let bob = agent_with(
        &b,
        "bob",
        bob_wallet.clone(),
        vec![Arc::new(Notes(to_bob))],
        Default::default(),
    );
    // A relay that forwards bob's fresh envelopes to alice's host (it cannot sign
    // any itself, but it can pass on the genuine ones first).
    let mut relay = RawClient::connect(&a.url().unwrap()).await;
    let relayed = |seq: u64, text: &str| {
        seal(
            &bob_wallet,
            alice.address(),
            B256::random(),
            seq,
            "tell/test.Note",
            json!({"text": text}),
            now_ms() + 60_000,
        )
    };
    let bob_address = bob.address();
    let tell_bob = |text: &str| {
        let ctx = alice.context();
        let text = text.to_owned();
        async move { ctx.tell(bob_address, Note { text }).await }
    };

    // Before any endpoint is configured the relay's connection is bob's route.
    relay.send(&relayed(1, "relayed 1")).await;
    assert_eq!(recv(&mut alice_got).await, "relayed 1");

    // Configured now: it wins over the route learned before...
    a.add_peer(bob.address(), b.url().unwrap());
    tell_bob("one").await.unwrap();
    tokio::select! {
        text = recv(&mut bob_got) => assert_eq!(text, "one"),
        f = relay.next() => panic!("alice's message for bob went to the relay: {f:?}"),
    }

    // ...and over what bob's traffic through the relay would teach later.
    relay.send(&relayed(2, "relayed 2")).await;
    assert_eq!(recv(&mut alice_got).await, "relayed 2");
    tell_bob("two").await.unwrap();
    tokio::select! {
        text = recv(&mut bob_got) => assert_eq!(text, "two"),
        f = relay.next() => panic!("alice's message for bob went to the relay: {f:?}"),
    }
}

/// Tells `to` a note as `alice`, expecting it on `c`.
async fn tell_over(alice: &agent_core::AgentHandle, to: Address, c: &mut RawClient) {
    alice
        .context()
        .tell(to, Note { text: "hi".into() })
        .await
        .unwrap();
    let got = c.envelope().await;
    assert_eq!((got.recipient, got.kind.as_str()), (to, "tell/test.Note"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_routes_are_bounded_and_the_least_recently_used_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_with(HostConfig::new(CHAIN, dir.path().join("a")).max_learned_routes(8));
    let alice = agent(&h, "alice", vec![]);
    let mut c = RawClient::connect(&h.url().unwrap()).await;
    let bob = Wallet::random();
    let others: Vec<Wallet> = (0..10).map(|_| Wallet::random()).collect();

    c.introduce(&bob, alice.address()).await;
    for w in &others[..4] {
        c.introduce(w, alice.address()).await;
    }
    // Alice talks to bob: his route is now the most recently used.
    tell_over(&alice, bob.address(), &mut c).await;
    for w in &others[4..] {
        c.introduce(w, alice.address()).await;
    }

    // Eleven learned, eight kept: the three least recently learned went.
    let stats = h.edge_stats();
    assert_eq!((stats.learned_routes, stats.routes_evicted), (8, 3));
    for w in &others[..3] {
        let err = alice
            .context()
            .tell(w.address(), Note { text: "x".into() })
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NoRoute(a) if a == w.address()),
            "{err}"
        );
    }
    for w in &others[3..] {
        tell_over(&alice, w.address(), &mut c).await;
    }
    tell_over(&alice, bob.address(), &mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_identities_does_not_grow_the_routes_without_bound() {
    const DEFAULT_BOUND: usize = 4_096;
    const BATCH: usize = 256;
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let mut c = RawClient::connect(&h.url().unwrap()).await;
    let first = Wallet::random();
    c.introduce(&first, alice.address()).await;

    // As many fresh identities as the bound, each with one admitted ask; their
    // answers are read a batch at a time.
    let mut last = first.address();
    for _ in 0..DEFAULT_BOUND / BATCH {
        let wallets: Vec<Wallet> = (0..BATCH).map(|_| Wallet::random()).collect();
        for w in &wallets {
            let ask = seal(
                w,
                alice.address(),
                B256::random(),
                1,
                "ask/test.Missing",
                json!({}),
                now_ms() + 60_000,
            );
            c.send(&ask).await;
        }
        for _ in 0..BATCH {
            assert_eq!(c.envelope().await.kind, "reply");
        }
        last = wallets.last().unwrap().address();
    }

    // The first identity was forgotten to make room; the latest is routed.
    let err = alice
        .context()
        .tell(first.address(), Note { text: "x".into() })
        .await
        .expect_err("the oldest learned route is still kept");
    assert!(matches!(err, Error::NoRoute(_)), "{err}");
    tell_over(&alice, last, &mut c).await;
}
