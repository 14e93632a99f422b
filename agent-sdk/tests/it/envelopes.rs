//! Hand-made envelopes against a host: each bad one is dropped with a reason that
//! comes back to the sender, and counted.

use agent_core::envelope::{Draft, Envelope};
use agent_sdk::prelude::*;
use agent_sdk::testing::{Echo, Echoer};
use serde_json::json;
use wallets::B256;

use crate::support::{ask, host, now_ms, Frame, RawClient, CHAIN};

#[tokio::test]
async fn tampered_replayed_expired_and_wrong_chain_envelopes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let b = AgentBuilder::new("b").skill(Echoer).spawn(&h).unwrap();
    let me = Wallet::random();
    let mut c = RawClient::connect(&h.url().unwrap()).await;
    let d = B256::random();
    let echo = |text: &str| json!({"text": text});

    // A valid ask gets a reply signed by b, in the same dialogue.
    let first = ask(&me, b.address(), d, 10, "test.Echo", echo("one"));
    c.send(&first).await;
    let Frame::Envelope(reply) = c.next().await else {
        panic!("expected a reply")
    };
    assert_eq!(
        (reply.sender, reply.recipient, reply.dialogue),
        (b.address(), me.address(), d)
    );
    assert_eq!(reply.kind, "reply");
    assert_eq!(reply.payload, json!({"re": 10, "ok": {"text": "one"}}));
    reply
        .signature
        .verify(&reply.signing_hash(), b.address())
        .unwrap();

    // A hand-made envelope from `me` with the given fields changed.
    let made = |seq: u64, expiry: u64, chain_id: u64, kind: &str, text: &str| {
        Envelope::seal(
            &me,
            Draft {
                recipient: b.address(),
                dialogue: d,
                sequence: seq,
                expiry,
                chain_id,
                kind: kind.into(),
                payload: echo(text),
            },
        )
        .unwrap()
    };
    let later = now_ms() + 60_000;
    let mut tampered = ask(&me, b.address(), d, 11, "test.Echo", echo("two"));
    tampered.payload = echo("three");
    let stranger = Wallet::random().address();
    let cases: [(Envelope, &str); 7] = [
        (first.clone(), "duplicate"),
        (
            ask(&me, b.address(), d, 9, "test.Echo", echo("older")),
            "replayed",
        ),
        (tampered, "bad signature"),
        (
            made(12, now_ms() - 1, CHAIN, "ask/test.Echo", "late"),
            "expired",
        ),
        (
            made(13, later, 1, "ask/test.Echo", "elsewhere"),
            "for chain 1",
        ),
        (
            ask(&me, stranger, d, 14, "test.Echo", echo("lost")),
            "not to this agent",
        ),
        (
            made(15, later, CHAIN, "shout/test.Echo", "odd"),
            "malformed",
        ),
    ];
    for (env, why) in cases {
        c.send(&env).await;
        match c.next().await {
            Frame::Refused(reason) => assert!(reason.contains(why), "{why}: got {reason}"),
            Frame::Envelope(e) => panic!("{why}: expected a refusal, got {e:?}"),
        }
    }
    // Garbage is dropped (no header to refuse), counted, and the connection lives on.
    c.send_bytes(b"{not json".to_vec()).await;
    c.send(&ask(
        &me,
        b.address(),
        d,
        20,
        "test.Echo",
        echo("still here"),
    ))
    .await;
    let Frame::Envelope(reply) = c.next().await else {
        panic!("expected a reply")
    };
    assert_eq!(reply.payload["ok"], json!({"text": "still here"}));

    let r = b.rejections().await.unwrap();
    assert_eq!((r.get("duplicate"), r.get("replay")), (Some(&1), Some(&1)));
    let edge = h.edge_stats();
    assert_eq!(edge.malformed, 1);
    assert_eq!(edge.refused, 7);
    // The peer's agent kept working for everyone.
    let local = AgentBuilder::new("local").spawn(&h).unwrap();
    let ok = local
        .context()
        .ask(b.address(), Echo { text: "ok".into() })
        .await
        .unwrap();
    assert_eq!(ok.text, "ok");
}
