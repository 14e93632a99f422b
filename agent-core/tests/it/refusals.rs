//! A `refused` frame fails an ask only when the agent asked signed it, and only on
//! the connection the ask left on.

use std::time::Duration;

use agent_core::envelope::{envelope_domain, Envelope, Refusal};
use agent_core::{AgentHandle, Error};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use wallets::{Signature, Wallet, B256};

use crate::support::{agent, host, now_ms, seal, Echo, RawClient, CHAIN};

/// A `refused` frame for the ask `sent`, saying `reason`, with `signature` if any.
fn refused(sent: &Envelope, reason: &str, signature: Option<&Signature>) -> Value {
    let mut frame = json!({
        "type": "refused",
        "sender": sent.sender,
        "recipient": sent.recipient,
        "dialogue": sent.dialogue,
        "sequence": sent.sequence,
        "reason": reason,
    });
    if let Some(sig) = signature {
        frame["signature"] = serde_json::to_value(sig).unwrap();
    }
    frame
}

type Asked = JoinHandle<agent_core::Result<Echo>>;

/// Alice asks bob, whose route is `relay`; returns the pending ask and the
/// envelope as it reached the relay.
async fn ask_through(
    alice: &AgentHandle,
    bob: &Wallet,
    relay: &mut RawClient,
) -> (Asked, Envelope) {
    let ctx = alice.context();
    let to = bob.address();
    let asked = tokio::spawn(async move {
        ctx.ask_in(
            B256::random(),
            to,
            Echo { text: "hi".into() },
            Duration::from_secs(10),
        )
        .await
    });
    let sent = relay.envelope().await;
    assert_eq!((sent.recipient, sent.kind.as_str()), (to, "ask/test.Echo"));
    (asked, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_refusals_do_not_fail_an_ask() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let bob = Wallet::random();
    // The connection bob's traffic comes over (a relay, say): his route.
    let mut relay = RawClient::connect(&h.url().unwrap()).await;
    relay.introduce(&bob, alice.address()).await;
    let (asked, sent) = ask_through(&alice, &bob, &mut relay).await;

    // Unsigned; signed by someone else; signed by bob, but not this refusal.
    let mallory = Wallet::random();
    let frames = [
        refused(&sent, "forged", None),
        refused(
            &sent,
            "forged",
            Some(&mallory.sign_message(b"refused").unwrap()),
        ),
        refused(
            &sent,
            "forged",
            Some(&bob.sign_message(b"refused").unwrap()),
        ),
    ];
    for frame in &frames {
        relay.send_text(frame).await;
    }
    // Frames of a connection are handled in order: once this round trip is done,
    // alice's host has dealt with the refusals.
    relay.introduce(&bob, alice.address()).await;

    // Bob's genuine answer still completes the ask.
    let answer = seal(
        &bob,
        alice.address(),
        sent.dialogue,
        sent.sequence,
        "reply",
        json!({"re": sent.sequence, "ok": {"text": "hi"}}),
        now_ms() + 60_000,
    );
    relay.send(&answer).await;
    let got = asked.await.unwrap();
    assert_eq!(
        got.map_err(|e| e.to_string())
            .expect("a forged refusal failed the ask"),
        Echo { text: "hi".into() }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_counts_only_signed_by_the_agent_asked_and_on_the_asks_connection() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let bob = Wallet::random();
    let url = h.url().unwrap();
    let mut relay = RawClient::connect(&url).await;
    relay.introduce(&bob, alice.address()).await;
    let (asked, sent) = ask_through(&alice, &bob, &mut relay).await;

    let refusal = Refusal {
        sender: alice.address(),
        recipient: bob.address(),
        dialogue: sent.dialogue,
        sequence: sent.sequence,
        chain_id: CHAIN,
        reason: "busy".into(),
    };
    let genuine = refusal.sign(&bob).unwrap();
    assert!(
        refusal.sign(&Wallet::random()).is_err(),
        "only bob signs it"
    );

    // Bob's own refusal, played on another connection than the ask left on.
    let mut other = RawClient::connect(&url).await;
    other
        .send_text(&refused(&sent, "busy", Some(&genuine)))
        .await;
    other.introduce(&Wallet::random(), alice.address()).await;
    // The refusal, in the right type and domain, signed by someone else.
    let mallory = Wallet::random();
    let forged = mallory
        .sign_typed(&envelope_domain(CHAIN), &refusal)
        .unwrap();
    relay
        .send_text(&refused(&sent, "busy", Some(&forged)))
        .await;
    // Bob's refusal with another reason than he signed.
    relay
        .send_text(&refused(&sent, "gone away", Some(&genuine)))
        .await;
    relay.introduce(&bob, alice.address()).await;
    assert_eq!(h.edge_stats().refusals_ignored, 3);

    // Bob's refusal on the ask's connection fails the ask at once, with his reason.
    relay
        .send_text(&refused(&sent, "busy", Some(&genuine)))
        .await;
    let err = asked.await.unwrap().unwrap_err();
    match err {
        Error::Refused { peer, reason } => {
            assert_eq!((peer, reason.as_str()), (bob.address(), "busy"));
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(h.edge_stats().refusals_ignored, 3);
}
