//! Hosts on loopback, test skills, and a bare WebSocket client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_core::envelope::{Draft, Envelope};
use agent_core::message::Payload;
use agent_core::{
    AgentHandle, AgentLimits, AgentSpec, Context, Host, HostConfig, Request, SkillError,
    SkillHandler,
};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wallets::{Address, Wallet, B256};

pub(crate) const CHAIN: u64 = 1337;

/// The longest any test waits for something that should happen.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A host listening on a free loopback port, its store in `dir/name`.
pub(crate) fn host(dir: &Path, name: &str) -> Host {
    host_with(HostConfig::new(CHAIN, dir.join(name)).name(name))
}

/// A host with `config`, two workers, listening on a free loopback port.
pub(crate) fn host_with(config: HostConfig) -> Host {
    Host::spawn(config.workers(2).listen("127.0.0.1:0".parse().unwrap())).unwrap()
}

/// A one-way message.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Note {
    pub(crate) text: String,
}

impl Request for Note {
    const KIND: &'static str = "test.Note";
    type Response = ();
}

/// A request answered with itself.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Echo {
    pub(crate) text: String,
}

impl Request for Echo {
    const KIND: &'static str = "test.Echo";
    type Response = Echo;
}

/// Passes the text of each [`Note`] on to a channel.
pub(crate) struct Notes(pub(crate) mpsc::UnboundedSender<String>);

impl SkillHandler for Notes {
    fn kind(&self) -> &'static str {
        Note::KIND
    }

    fn call(
        &self,
        _ctx: Context,
        payload: Payload,
        json: bool,
    ) -> BoxFuture<'static, Result<Payload, SkillError>> {
        let tx = self.0.clone();
        Box::pin(async move {
            let note: Note = payload
                .into_typed(Note::KIND)
                .map_err(|e| SkillError::bad_request(e.to_string()))?;
            let _ = tx.send(note.text);
            Ok(if json {
                Payload::Json(Value::Null)
            } else {
                Payload::local(())
            })
        })
    }

    fn schemas(&self) -> (Value, Value) {
        (json!({}), json!({}))
    }
}

/// Answers an [`Echo`] with itself.
pub(crate) struct Echoer;

impl SkillHandler for Echoer {
    fn kind(&self) -> &'static str {
        Echo::KIND
    }

    fn call(
        &self,
        _ctx: Context,
        payload: Payload,
        json: bool,
    ) -> BoxFuture<'static, Result<Payload, SkillError>> {
        Box::pin(async move {
            let echo: Echo = payload
                .into_typed(Echo::KIND)
                .map_err(|e| SkillError::bad_request(e.to_string()))?;
            Ok(if json {
                Payload::Json(serde_json::to_value(echo).unwrap())
            } else {
                Payload::local(echo)
            })
        })
    }

    fn schemas(&self) -> (Value, Value) {
        (json!({}), json!({}))
    }
}

/// Starts an agent with `wallet` and `handlers` on `host`.
pub(crate) fn agent_with(
    host: &Host,
    name: &str,
    wallet: Arc<Wallet>,
    handlers: Vec<Arc<dyn SkillHandler>>,
    limits: AgentLimits,
) -> AgentHandle {
    host.spawn_agent(AgentSpec {
        name: name.into(),
        wallet,
        handlers,
        policy: None,
        directory: None,
        limits,
    })
    .unwrap()
}

/// Starts an agent with a fresh wallet and `handlers` on `host`.
pub(crate) fn agent(host: &Host, name: &str, handlers: Vec<Arc<dyn SkillHandler>>) -> AgentHandle {
    agent_with(
        host,
        name,
        Arc::new(Wallet::random()),
        handlers,
        AgentLimits::default(),
    )
}

/// The next item of `rx`, within [`WAIT`].
pub(crate) async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("something within 10 s")
        .expect("the channel is open")
}

/// Now by the system clock, in Unix milliseconds (for hosts without a manual clock).
pub(crate) fn now_ms() -> u64 {
    agent_core::Clock::system().unix_ms()
}

/// A manual clock standing at a round time, for tests that move time by hand.
pub(crate) fn manual_clock() -> agent_core::ManualClock {
    agent_core::ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

/// An envelope from `from` to `to`.
pub(crate) fn seal(
    from: &Wallet,
    to: Address,
    dialogue: B256,
    sequence: u64,
    kind: &str,
    payload: Value,
    expiry: u64,
) -> Envelope {
    Envelope::seal(
        from,
        Draft {
            recipient: to,
            dialogue,
            sequence,
            expiry,
            chain_id: CHAIN,
            kind: kind.into(),
            payload,
        },
    )
    .unwrap()
}

/// A frame a bare client received.
#[derive(Debug)]
pub(crate) enum Frame {
    Envelope(Envelope),
    Control(Value),
}

/// A bare WebSocket client: sends hand-made frames, reads what comes back.
pub(crate) struct RawClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawClient {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws }
    }

    pub(crate) async fn send(&mut self, env: &Envelope) {
        self.ws.send(Message::Binary(env.to_bytes())).await.unwrap();
    }

    pub(crate) async fn send_text(&mut self, v: &Value) {
        self.ws.send(Message::Text(v.to_string())).await.unwrap();
    }

    /// The next frame, or `None` if none came within [`WAIT`].
    pub(crate) async fn try_next(&mut self) -> Option<Frame> {
        let msg = tokio::time::timeout(WAIT, self.ws.next()).await.ok()??;
        match msg.unwrap() {
            Message::Binary(b) => Some(Frame::Envelope(Envelope::from_bytes(&b).unwrap())),
            Message::Text(t) => Some(Frame::Control(serde_json::from_str(&t).unwrap())),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    pub(crate) async fn next(&mut self) -> Frame {
        self.try_next().await.expect("a frame within 10 s")
    }

    /// The next frame, which must be an envelope.
    pub(crate) async fn envelope(&mut self) -> Envelope {
        match self.next().await {
            Frame::Envelope(e) => e,
            Frame::Control(c) => panic!("expected an envelope, got {c}"),
        }
    }

    /// The next frame, which must be a refusal; its reason.
    pub(crate) async fn refusal(&mut self) -> String {
        match self.next().await {
            Frame::Control(c) => {
                assert_eq!(c["type"], "refused", "{c}");
                c["reason"].as_str().unwrap().to_owned()
            }
            Frame::Envelope(e) => panic!(
                "expected a refusal, got an envelope of kind {} with {}",
                e.kind, e.payload
            ),
        }
    }

    /// Sends an ask from `from` to `to` (for a skill it lacks) in a new dialogue and
    /// waits for the answer, which comes back on this connection: once it is here,
    /// `to`'s host has admitted the ask, and routes `from` over this connection
    /// unless it knows better.
    pub(crate) async fn introduce(&mut self, from: &Wallet, to: Address) {
        let ask = seal(
            from,
            to,
            B256::random(),
            1,
            "ask/test.Missing",
            json!({}),
            now_ms() + 60_000,
        );
        self.send(&ask).await;
        let reply = self.envelope().await;
        assert_eq!(
            (reply.sender, reply.recipient, reply.dialogue),
            (to, from.address(), ask.dialogue)
        );
        assert_eq!(
            reply.payload["err"]["code"], "unknown_skill",
            "{}",
            reply.payload
        );
    }
}
