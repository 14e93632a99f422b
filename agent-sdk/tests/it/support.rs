use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use agent_sdk::{Host, HostConfig};
use wallets::Address;

pub(crate) const CHAIN: u64 = 1337;

/// The longest any test waits for something that should happen.
pub(crate) const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A host on loopback port 0 with its own store.
pub(crate) fn host(dir: &Path) -> Host {
    host_with(HostConfig::new(CHAIN, dir.join("store")).workers(2))
}

pub(crate) fn host_with(config: HostConfig) -> Host {
    let config = if config.listen.is_none() {
        config.listen("127.0.0.1:0".parse().unwrap())
    } else {
        config
    };
    Host::spawn(config).unwrap()
}

/// A test peer in a child process; killed on drop.
pub(crate) struct PeerProcess {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) address: Address,
    _stdin: ChildStdin,
}

impl PeerProcess {
    /// Starts a peer listening on `listen` (port 0 for any free port) and waits
    /// for it to say where it listens.
    pub(crate) fn spawn(store: &Path, listen: &str, secret_hex: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agora-test-peer"))
            .arg(store)
            .arg(listen)
            .env("AGORA_PEER_KEY", secret_hex)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        // Its first line says where it listens; read it on a thread of its own, so
        // that a peer that never says it fails the test instead of hanging it.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = rx
            .recv_timeout(WAIT)
            .expect("the peer says where it listens within 10 s")
            .unwrap();
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "peer said {line:?}");
        let url = parts.next().unwrap().to_owned();
        let address = parts.next().unwrap().parse().unwrap();
        Self {
            child,
            url,
            address,
            _stdin: stdin,
        }
    }

    /// kill -9.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use agent_core::envelope::{Draft, Envelope};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wallets::{Wallet, B256};

/// A bare WebSocket client that sends hand-made envelopes.
pub(crate) struct RawClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Frame {
    Envelope(Envelope),
    Refused(String),
}

impl RawClient {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws }
    }

    pub(crate) async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes)).await.unwrap();
    }

    pub(crate) async fn send(&mut self, env: &Envelope) {
        self.send_bytes(env.to_bytes()).await;
    }

    pub(crate) async fn next(&mut self) -> Frame {
        let msg = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap();
        match msg {
            Message::Binary(b) => Frame::Envelope(Envelope::from_bytes(&b).unwrap()),
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "refused", "{t}");
                Frame::Refused(v["reason"].as_str().unwrap().to_owned())
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Now by the system clock (the tests' hosts keep the default clock), in Unix
/// milliseconds.
pub(crate) fn now_ms() -> u64 {
    agent_sdk::Clock::system().unix_ms()
}

/// A signed ask from `from` to `to`.
pub(crate) fn ask(
    from: &Wallet,
    to: Address,
    dialogue: B256,
    seq: u64,
    kind: &str,
    payload: serde_json::Value,
) -> Envelope {
    Envelope::seal(
        from,
        Draft {
            recipient: to,
            dialogue,
            sequence: seq,
            expiry: now_ms() + 60_000,
            chain_id: CHAIN,
            kind: format!("ask/{kind}"),
            payload,
        },
    )
    .unwrap()
}
