//! A thousand peers connected to one host at once: every polite peer's ask is
//! answered while flooding peers are held to their connection's rate (their
//! connection is no longer read: back-pressure), connections past the cap are
//! refused and counted, and the host keeps answering `/health`.
//!
//! Behaviour only, no timing: the flooders' rate period is an hour, so a flooder
//! gets exactly its rate of asks admitted however slow or fast the machine is.

use std::io::{Read, Write};
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::testing::Echoer;
use agent_sdk::{EdgeLimits, HostConfig};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wallets::B256;

use crate::support::{ask, host_with, CHAIN, WAIT};

/// Connections the test opens, fewer only where the open-file limit cannot be
/// raised enough (both ends of each connection are in this process).
const CONNECTIONS: usize = 1_000;
/// Asks admitted per connection per rate period (an hour: it never renews here).
const RATE: u64 = 5;
const FLOODERS: usize = 10;
const FLOOD: usize = 100;
const EXTRA: u64 = 10;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A peer with a wallet of its own and one connection; its asks go in one
/// dialogue.
struct Peer {
    wallet: Wallet,
    ws: Ws,
    dialogue: B256,
    sequence: u64,
}

impl Peer {
    /// Connects, or `None` when the host closes the connection (or it fails).
    async fn connect(url: &str) -> Option<Self> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("a connection is accepted or closed within 10 s")
            .ok()?;
        Some(Self {
            wallet: Wallet::random(),
            ws,
            dialogue: B256::random(),
            sequence: 0,
        })
    }

    fn next_ask(&mut self, to: Address) -> Message {
        self.sequence += 1;
        let env = ask(
            &self.wallet,
            to,
            self.dialogue,
            self.sequence,
            "test.Echo",
            json!({ "text": format!("ask {}", self.sequence) }),
        );
        Message::Binary(env.to_bytes())
    }

    /// One ask; panics unless its reply comes (a refusal or a timeout fails).
    async fn ask(&mut self, to: Address) {
        let frame = self.next_ask(to);
        self.ws.send(frame).await.unwrap();
        let reply = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a polite ask is answered within 10 s")
            .expect("the connection stays open")
            .unwrap();
        let Message::Binary(bytes) = reply else {
            panic!("a polite ask got {reply:?}")
        };
        let env = agent_core::envelope::Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(env.kind, "reply");
        assert_eq!(env.payload["re"], self.sequence);
    }
}

/// Raises the soft open-file limit to the hard one; the connections this process
/// can hold both ends of.
fn connections_allowed() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let n = usize::try_from(files.saturating_sub(256) / 2).unwrap_or(usize::MAX);
    if n < CONNECTIONS {
        eprintln!("open-file limit {files}: {n} connections instead of {CONNECTIONS}");
    }
    n.min(CONNECTIONS)
}

/// `GET /health` on a fresh connection: the status line.
async fn health(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        let get = || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(WAIT))?;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.lines().next().unwrap_or_default().to_owned())
        };
        get().unwrap_or_else(|e| e.to_string())
    })
    .await
    .unwrap()
}

/// A host on loopback with the limits `edge` and one echo agent: the host, the
/// agent and the host's URL.
fn echo_host(dir: &std::path::Path, edge: EdgeLimits) -> (Host, AgentHandle, String) {
    let server = host_with(HostConfig::new(CHAIN, dir.join("s")).workers(2).edge(edge));
    let b = AgentBuilder::new("b").skill(Echoer).spawn(&server).unwrap();
    let url = server.url().unwrap();
    (server, b, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_polite_peers_answered_flooders_held_back_extra_refused() {
    let n = connections_allowed();
    assert!(n > FLOODERS * 2, "too few open files for this test");
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeLimits {
        rate: RATE,
        rate_period: Duration::from_secs(3_600),
        concurrency: 4,
        // Waits for the agent's mailbox are not what this test is about.
        timeout: Duration::from_secs(60),
        max_connections: n + 1,
        ..EdgeLimits::default()
    };
    let (server, b, url) = echo_host(dir.path(), edge);
    let to = b.address();

    // n peers connect and ask once each; all are answered.
    let mut peers: Vec<Peer> = futures::stream::iter(0..n)
        .map(|_| async {
            let mut p = Peer::connect(&url)
                .await
                .expect("a connection under the cap");
            p.ask(to).await;
            p
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(peers.len(), n);

    // One more fills the cap; the next ones are closed at once, and counted.
    let before = server.edge_stats();
    let filler = Peer::connect(&url)
        .await
        .expect("the last connection under the cap");
    let mut refused = 0;
    for _ in 0..EXTRA {
        if Peer::connect(&url).await.is_none() {
            refused += 1;
        }
    }
    assert_eq!(refused, EXTRA, "connections past the cap were accepted");
    let stats = server.edge_stats();
    assert_eq!(
        stats.connections_refused - before.connections_refused,
        EXTRA
    );
    assert_eq!(stats.connections - before.connections, 1);
    drop(filler);

    // Flooders send far more asks than their rate at once, and read what comes.
    let polite = peers.split_off(FLOODERS);
    let mut floods = Vec::new();
    for mut p in peers {
        let frames: Vec<Message> = (0..FLOOD).map(|_| p.next_ask(to)).collect();
        floods.push(tokio::spawn(async move {
            let (mut sink, mut stream) = p.ws.split();
            let mut frames = futures::stream::iter(frames.into_iter().map(Ok));
            sink.send_all(&mut frames).await.unwrap();
            // The asks within the rate (one was the first ask) are answered.
            for _ in 1..RATE {
                let reply = tokio::time::timeout(WAIT, stream.next())
                    .await
                    .expect("a flooder's asks within its rate are answered")
                    .unwrap()
                    .unwrap();
                assert!(reply.is_binary(), "a flooder's ask got {reply:?}");
            }
            (sink, stream)
        }));
    }
    // Meanwhile every polite peer asks again, 64 at a time, and is answered.
    let polite: Vec<Peer> = futures::stream::iter(polite)
        .map(|mut p| async move {
            p.ask(to).await;
            p
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut flooders = Vec::new();
    for f in floods {
        flooders.push(f.await.unwrap());
    }

    // The flooders got exactly their rate admitted; the rest of their asks wait
    // unread, neither admitted nor refused.
    let expected = n as u64 + polite.len() as u64 + FLOODERS as u64 * (RATE - 1);
    assert_eq!(b.stats().handled, expected);
    assert_eq!(b.stats().rejected, 0);
    assert_eq!(server.edge_stats().refused, 0);

    // The host still answers /health (once the filler's slot is free again).
    let addr = server.local_addr().unwrap();
    let mut status = String::new();
    for _ in 0..200 {
        status = health(addr).await;
        if status.contains(" 200 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.starts_with("HTTP/1.1 200"), "/health: {status:?}");
    // And a polite peer still gets its answer with the flooders connected.
    let mut polite = polite;
    polite[0].ask(to).await;
    drop((polite, flooders));
}

/// Regression: a peer that sent asks and never read the replies had them pile up
/// in the agent, each waiting for room in the connection's send queue, without
/// bound (memory, and an actor that polls every one of them at each wake-up, so
/// slower for every other peer). Now a reply that finds the asker's send queue
/// full is dropped, and the host disconnects a peer it cannot write to within the
/// write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_replies_is_disconnected() {
    const ASKS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeLimits {
        rate: 1_000_000,
        send_queue: 16,
        write_timeout: Duration::from_millis(200),
        ..EdgeLimits::default()
    };
    let (server, b, url) = echo_host(dir.path(), edge);
    let to = b.address();

    // The deaf peer: a small receive buffer that it never reads (and a small send
    // buffer, so that it notices soon when the host stops reading it).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.local_addr().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap();
    let deaf = tokio::spawn(async move {
        let (wallet, dialogue) = (Wallet::random(), B256::random());
        for seq in 1..=ASKS {
            let env = ask(
                &wallet,
                to,
                dialogue,
                seq,
                "test.Echo",
                json!({ "text": "x" }),
            );
            if ws.send(Message::Binary(env.to_bytes())).await.is_err() {
                return seq;
            }
        }
        panic!("{ASKS} asks sent and never read, and the host still reads them");
    });
    let cut_after = tokio::time::timeout(WAIT * 6, deaf)
        .await
        .expect("the host disconnects the peer that reads nothing")
        .unwrap();
    assert!(server.edge_stats().write_timeouts >= 1);
    eprintln!("the deaf peer was disconnected after {cut_after} asks");

    // Another peer is answered.
    let mut polite = Peer::connect(&url).await.unwrap();
    polite.ask(to).await;
}
