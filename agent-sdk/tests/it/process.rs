//! Agents in separate processes: talk over loopback WebSocket, survive kill -9.

use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::{Add, Echo};
use agent_sdk::{EdgeLimits, HostConfig};
use serde_json::json;
use wallets::B256;

use agent_sdk::testing::free_port;

use crate::support::{ask, host_with, Frame, PeerProcess, RawClient, CHAIN};

const PEER_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

async fn ask_until_up(ctx: &Context, to: Address) {
    for _ in 0..100 {
        let r = ctx
            .ask_in(
                ctx.new_dialogue(),
                to,
                Echo { text: "up?".into() },
                Duration::from_millis(500),
            )
            .await;
        if r.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("peer did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarts_and_resumes_its_dialogues() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peer-store");
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let peer = PeerProcess::spawn(&store, &listen, PEER_KEY);
    let (url, b) = (peer.url.clone(), peer.address);

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
    h.add_peer(b, url.clone());
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
    let mut c = RawClient::connect(&url).await;
    c.send(&first).await;
    assert!(matches!(c.next().await, Frame::Envelope(e) if e.payload["ok"] == 7));
    drop(c);

    peer.kill();
    let peer = PeerProcess::spawn(&store, &listen, PEER_KEY);
    assert_eq!(peer.address, b);

    // The host reconnects by itself; the dialogue goes on from the stored total.
    ask_until_up(&ctx, b).await;
    assert_eq!(
        ctx.ask_in(d, b, Add { n: 10 }, t).await.unwrap(),
        total + 10
    );

    // The old envelope stays a replay after the restart; the next one resumes.
    let mut c = RawClient::connect(&url).await;
    c.send(&first).await;
    assert!(matches!(c.next().await, Frame::Refused(r) if r.contains("replayed")));
    c.send(&ask(&me, b, raw_d, 2, "test.Add", json!({"n": 1})))
        .await;
    assert!(matches!(c.next().await, Frame::Envelope(e) if e.payload["ok"] == 8));
    assert!(h.edge_stats().reconnects >= 1);
    drop(peer);
}
