//! Agents in separate processes: talk over loopback WebSocket, survive kill -9.
//!
//! The peer process listens on port 0 and reports the address it got. Restarted,
//! it gets another, which the test gives the other host, the way a restarted agent
//! publishes its new endpoint through the registry. (That a host dials a broken
//! connection again by itself is agent-core's `reconnect` test, against a
//! listener that stays put for the whole test.)

use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Echo};
use agent_sdk::{EdgeLimits, HostConfig};
use serde_json::json;
use wallets::B256;

use crate::support::{ask, host_with, Frame, PeerProcess, RawClient, CHAIN};

const PEER_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Any free loopback port: the peer reports the one it got.
const LISTEN: &str = "127.0.0.1:0";

/// Asks `to` until it answers. Each ask waits for its answer up to its timeout
/// (an ask written into the killed process's connection before the host noticed
/// the kill is lost); no sleeping in between.
async fn ask_until_up(ctx: &Context, to: Address) {
    for _ in 0..5 {
        let r = ctx
            .ask_in(
                ctx.new_dialogue(),
                to,
                Echo { text: "up?".into() },
                Duration::from_secs(2),
            )
            .await;
        if r.is_ok() {
            return;
        }
    }
    panic!("peer did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarts_and_resumes_its_dialogues() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peer-store");
    let peer = PeerProcess::spawn(&store, LISTEN, PEER_KEY);
    let b = peer.address;

    let edge = EdgeLimits {
        max_backoff: Duration::from_millis(200),
        ..EdgeLimits::default()
    };
    let h = host_with(
        HostConfig::new(CHAIN, dir.path().join("a"))
            .workers(2)
            .edge(edge),
    );
    let a = AgentBuilder::new("a").spawn(&h).unwrap();
    h.add_peer(b, peer.url.clone());
    let ctx = a.context();
    let d = ctx.new_dialogue();
    let t = Duration::from_secs(10);
    let mut total = 0;
    for n in 1..=5 {
        total += n;
        assert_eq!(ctx.ask_in(d, b, Add { n }, t).await.unwrap(), total);
    }
    // A raw client's dialogue too, to replay its envelope after the restart.
    let me = Wallet::random();
    let raw_d = B256::random();
    let first = ask(&me, b, raw_d, 1, "test.Add", json!({"n": 7}));
    let mut c = RawClient::connect(&peer.url).await;
    c.send(&first).await;
    assert!(matches!(c.next().await, Frame::Envelope(e) if e.payload["ok"] == 7));
    drop(c);

    peer.kill();
    let peer = PeerProcess::spawn(&store, LISTEN, PEER_KEY);
    assert_eq!(peer.address, b);
    // The restarted agent's new endpoint wins over the old one.
    h.add_peer(b, peer.url.clone());

    // The dialogue goes on from the stored total.
    ask_until_up(&ctx, b).await;
    assert_eq!(
        ctx.ask_in(d, b, Add { n: 10 }, t).await.unwrap(),
        total + 10
    );

    // The old envelope stays a replay after the restart; the next one resumes.
    let mut c = RawClient::connect(&peer.url).await;
    c.send(&first).await;
    assert!(matches!(c.next().await, Frame::Refused(r) if r.contains("replayed")));
    c.send(&ask(&me, b, raw_d, 2, "test.Add", json!({"n": 1})))
        .await;
    assert!(matches!(c.next().await, Frame::Envelope(e) if e.payload["ok"] == 8));
    drop(peer);
}
