//! A host whose connection to a peer breaks dials it again by itself. The peer is
//! played by the test on a listener it holds for the whole test, so the address
//! cannot change hands between the two connections.

use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wallets::{Address, Wallet};

use agent_core::envelope::Envelope;
use agent_core::{AgentHandle, Error, Host};

use crate::support::{agent, host, Echo, Note, WAIT};

/// The next connection on `listener`, as a WebSocket, within [`WAIT`].
async fn accept(listener: &TcpListener) -> WebSocketStream<tokio::net::TcpStream> {
    let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("a connection within 10 s")
        .unwrap();
    tokio_tungstenite::accept_async(tcp).await.unwrap()
}

/// The next envelope on `ws`, within [`WAIT`].
async fn envelope(ws: &mut WebSocketStream<tokio::net::TcpStream>) -> Envelope {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("an open connection")
            .unwrap();
        if let Message::Binary(bytes) = msg {
            return Envelope::from_bytes(&bytes).unwrap();
        }
    }
}

/// Alice on a host of her own, and bob, played by the test on `listener` at `url`.
async fn alice_and_bob() -> (
    tempfile::TempDir,
    TcpListener,
    String,
    Host,
    AgentHandle,
    Address,
) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let h = host(dir.path(), "a");
    let alice = agent(&h, "alice", vec![]);
    let bob = Wallet::random().address();
    h.add_peer(bob, url.clone());
    (dir, listener, url, h, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_connection_is_dialed_again_and_carries_what_was_sent_after() {
    let (_dir, listener, _, h, alice, bob) = alice_and_bob().await;
    let ctx = alice.context();

    ctx.tell(bob, Note { text: "one".into() }).await.unwrap();
    let mut first = accept(&listener).await;
    let one = envelope(&mut first).await;
    assert_eq!(
        (one.sender, one.payload["text"].as_str()),
        (alice.address(), Some("one"))
    );

    // The peer closes the connection, and waits until alice's host has answered
    // the close: from then on nothing more can be written to it.
    first.close(None).await.unwrap();
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, first.next())
        .await
        .expect("the close answered within 10 s")
    {}

    ctx.tell(bob, Note { text: "two".into() }).await.unwrap();
    let mut second = accept(&listener).await;
    let two = envelope(&mut second).await;
    assert_eq!(two.payload["text"], "two");
    assert!(two.sequence > one.sequence);
    let stats = h.edge_stats();
    assert_eq!((stats.connections, stats.reconnects), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_fails_when_its_connection_is_lost_not_at_its_timeout() {
    let (_dir, listener, url, _h, alice, bob) = alice_and_bob().await;
    let ctx = alice.context();

    // An ask with a long timeout ...
    let asking = tokio::spawn(async move {
        ctx.ask_in(
            ctx.new_dialogue(),
            bob,
            Echo { text: "hi".into() },
            Duration::from_secs(600),
        )
        .await
    });
    let mut ws = accept(&listener).await;
    let ask = envelope(&mut ws).await;
    assert_eq!(ask.payload["text"], "hi");
    // ... whose connection goes before any answer: no answer can come back on it,
    // so the ask fails now, naming the connection, instead of in ten minutes.
    drop(ws);
    let err = tokio::time::timeout(WAIT, asking)
        .await
        .expect("the ask failed within 10 s of the connection's loss")
        .unwrap()
        .unwrap_err();
    match &err {
        Error::Transport { peer, reason } => {
            assert_eq!(peer, &url);
            assert!(reason.contains("connection lost"), "{err}");
        }
        other => panic!("expected a transport error, got {other}"),
    }
    // The host dials again for what is sent next.
    alice
        .context()
        .tell(
            bob,
            Note {
                text: "next".into(),
            },
        )
        .await
        .unwrap();
    let mut again = accept(&listener).await;
    assert_eq!(envelope(&mut again).await.payload["text"], "next");
}
