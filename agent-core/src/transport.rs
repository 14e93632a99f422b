//! WebSocket transport between hosts, and the tower layers at its edge.
//!
//! One connection per pair of hosts: a host dials a peer's endpoint once and both
//! sides send over it (replies go back on the connection an ask arrived on). The
//! dialing side reconnects with exponential backoff and re-sends the frame that was
//! being written when the connection broke; the receiver's replay checks drop
//! anything it already had.
//!
//! Every inbound frame passes a per-connection tower stack before any agent sees it:
//! a concurrency cap, a rate limit and a timeout. When a peer floods, its connection
//! stops being read (TCP back-pressure) while other connections keep their share; a
//! frame that times out or fails the checks is answered with a `refused` control
//! frame so the asker fails fast instead of waiting for its timeout. A peer that
//! reads nothing is disconnected once a frame to it waits
//! [`EdgeLimits::write_timeout`] to be written.
//!
//! A `refused` frame carries a [`Refusal`] signed by the refused envelope's
//! recipient (when it runs on the refusing host; otherwise it goes unsigned, for
//! the eyes of bare clients only). The asker's host ignores, logs and counts
//! ([`EdgeStats::refusals_ignored`]) a refusal that is unsigned, signed by anyone
//! but that recipient, or that arrives on a connection other than the one the
//! ask left on.
//!
//! A sender's route is learned from the connection its envelope arrived on only
//! once the recipient agent admitted that envelope, and never for an agent with a
//! configured endpoint ([`Host::add_peer`](crate::Host::add_peer)), which always
//! wins: a recorded envelope replayed on another connection is refused and
//! re-points nothing. Learned routes are bounded
//! ([`HostConfig::max_learned_routes`](crate::HostConfig::max_learned_routes)).
//!
//! The listening side serves HTTP/1.1 (hyper) on every connection, plain or TLS: a
//! WebSocket upgrade of `/` or `/ws…` is answered `101 Switching Protocols` and the
//! upgraded connection carries envelopes as above; every other request goes to the
//! host's HTTP routes ([`http`](crate::http): `/health`, `/metrics`, the agent
//! cards, mounted gateways). The connection cap, the TLS handshake timeout and a
//! request head timeout ([`EdgeLimits::connect_timeout`]) apply to every connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::{ready, Poll};
use std::time::Duration;

use actix::ArbiterHandle;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tower::{Service, ServiceBuilder, ServiceExt};
use wallets::{Address, Signature, B256};

use crate::clock::Clock;
use crate::envelope::{
    check_expiry, Envelope, Header, KeyCache, Refusal, Rejection, MAX_ENVELOPE_BYTES,
};
use crate::http::{is_websocket_path, not_allowed, status, ResponseBody, Routes, MAX_HEAD_BYTES};
use crate::link::Link;
use crate::port::{Delivery, Port, RefusalOutcome, RefusedAsk};
use crate::tls::{server_name, ClientTls, ServerTls};

/// An established outgoing connection.
enum Dialed {
    Plain(Box<WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
    Tls(Box<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>>),
}

/// Limits at the network edge, per connection unless said otherwise.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    /// Envelopes admitted per `rate_period` from one connection; beyond that the
    /// connection is no longer read until the period renews (back-pressure).
    pub rate: u64,
    /// The period of `rate`.
    pub rate_period: Duration,
    /// Envelopes of one connection being checked and delivered at once.
    pub concurrency: usize,
    /// Longest time an envelope may take to reach its agent's mailbox and pass the
    /// checks; beyond it the sender is told `refused: timeout`.
    pub timeout: Duration,
    /// Open connections per host; more are closed at once.
    pub max_connections: usize,
    /// Frames queued for sending on one connection; senders wait when it is full.
    pub send_queue: usize,
    /// Longest wait to establish an outgoing connection; on the listening side, the
    /// longest wait for a TLS handshake and for each HTTP request head (the first
    /// one, or the next one on a kept-alive connection).
    pub connect_timeout: Duration,
    /// Cap of the reconnect backoff.
    pub max_backoff: Duration,
    /// Longest wait to write one frame to a connection. A peer that reads nothing
    /// for that long (it sends asks and never reads the replies) is disconnected:
    /// otherwise the replies waiting for room in its send queue would pile up in
    /// its agents without bound and slow them down for every other peer.
    pub write_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            rate: 2_000,
            rate_period: Duration::from_secs(1),
            concurrency: 64,
            timeout: Duration::from_secs(5),
            max_connections: 1_024,
            send_queue: 1_024,
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of the edge.
#[derive(Debug, Default)]
pub(crate) struct EdgeCounters {
    frames: AtomicU64,
    malformed: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
    connections_refused: AtomicU64,
    reconnects: AtomicU64,
    refusals_ignored: AtomicU64,
    write_timeouts: AtomicU64,
}

/// A snapshot of the edge counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EdgeStats {
    /// Envelope frames received.
    pub frames: u64,
    /// Frames that were not envelopes.
    pub malformed: u64,
    /// Envelopes refused (checks failed, timeout, no such agent).
    pub refused: u64,
    /// Connections accepted or established.
    pub connections: u64,
    /// Connections closed at once because of `max_connections`.
    pub connections_refused: u64,
    /// Reconnections of outgoing links.
    pub reconnects: u64,
    /// `refused` frames ignored: unsigned, not signed by the refused envelope's
    /// recipient, for an ask that left on another connection, or for no pending
    /// ask (late: it was answered or timed out).
    pub refusals_ignored: u64,
    /// Connections closed because a frame could not be written to them within
    /// [`EdgeLimits::write_timeout`]: their peer read nothing.
    pub write_timeouts: u64,
    /// Routes learned from admitted traffic, now.
    pub learned_routes: u64,
    /// Learned routes forgotten to stay within the host's bound.
    pub routes_evicted: u64,
}

/// Control frames (WebSocket text frames); envelopes travel as binary frames.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum Control {
    /// An envelope was dropped before any agent saw it: a [`Refusal`] with the
    /// recipient's signature (absent when the recipient does not run on the
    /// refusing host; such a frame is only informative).
    Refused {
        sender: Address,
        recipient: Address,
        dialogue: B256,
        sequence: u64,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<Signature>,
    },
}

impl Control {
    /// Parses a text frame from a peer. Never panics, whatever the text.
    pub(crate) fn parse(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

/// Queues a control frame on `link`; advisory, so dropped when its queue is full.
fn send_control(link: &Link, c: &Control) {
    if let Ok(text) = serde_json::to_string(c) {
        link.try_send_text(text);
    }
}

/// The most bytes hyper buffers on one connection (a request head is capped lower,
/// at [`MAX_HEAD_BYTES`]); at least hyper's minimum, 8 KiB.
const MAX_HTTP_BUFFER: usize = 64 * 1024;

/// How long a connection closed by its HTTP server keeps reading (and dropping)
/// what its peer still sends, and how much of it at most; see [`Lingering`].
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// A WebSocket upgrade accepted on a connection, to be taken over once hyper hands
/// the connection back.
type PendingUpgrade = Arc<Mutex<Option<OnUpgrade>>>;

/// The host's transport: outgoing links, the listener, the edge. It hands what
/// arrives to the host's delivery [`Port`].
pub(crate) struct Transport {
    limits: EdgeLimits,
    chain_id: u64,
    /// The host's clock, for the expiry checks at the edge.
    clock: Clock,
    /// Envelopes expiring later than this after their arrival are refused.
    max_ttl_ms: u64,
    links: Mutex<HashMap<String, Arc<Link>>>,
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    counters: EdgeCounters,
    port: OnceLock<Weak<dyn Port>>,
    /// Where HTTP requests other than WebSocket upgrades go.
    routes: Arc<Routes>,
    /// How connections on the listening side are served.
    http: http1::Builder,
    connections: Arc<Semaphore>,
    server_tls: Option<ServerTls>,
    client_tls: ClientTls,
}

fn http_builder(limits: &EdgeLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.connect_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HTTP_BUFFER)
        // A client that half-closes after its request still gets the response.
        .half_close(true);
    builder
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig {
        max_message_size: Some(MAX_ENVELOPE_BYTES + 1024),
        max_frame_size: Some(MAX_ENVELOPE_BYTES + 1024),
        ..WebSocketConfig::default()
    }
}

impl Transport {
    // All of it is the host's configuration, passed on once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        limits: EdgeLimits,
        chain_id: u64,
        clock: Clock,
        max_ttl: Duration,
        arbiters: Vec<ArbiterHandle>,
        server_tls: Option<ServerTls>,
        client_tls: ClientTls,
        routes: Arc<Routes>,
    ) -> Self {
        Self {
            limits,
            chain_id,
            clock,
            max_ttl_ms: crate::envelope::millis(max_ttl),
            links: Mutex::new(HashMap::new()),
            arbiters,
            next: AtomicUsize::new(0),
            counters: EdgeCounters::default(),
            port: OnceLock::new(),
            routes,
            http: http_builder(&limits),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            server_tls,
            client_tls,
        }
    }

    /// Sets where inbound envelopes and refusals go (held weakly: the host owns it).
    pub(crate) fn set_port(&self, port: Weak<dyn Port>) {
        let _ = self.port.set(port);
    }

    fn port(&self) -> Option<Arc<dyn Port>> {
        self.port.get().and_then(Weak::upgrade)
    }

    /// The edge counters. The route counts ([`EdgeStats::learned_routes`],
    /// [`EdgeStats::routes_evicted`]) are the router's: the host fills them in.
    pub(crate) fn stats(&self) -> EdgeStats {
        let c = &self.counters;
        EdgeStats {
            frames: c.frames.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            refusals_ignored: c.refusals_ignored.load(Ordering::Relaxed),
            write_timeouts: c.write_timeouts.load(Ordering::Relaxed),
            learned_routes: 0,
            routes_evicted: 0,
        }
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.arbiters.get(i % self.arbiters.len().max(1)) {
            Some(arbiter) => {
                arbiter.spawn(fut);
            }
            None => {
                tracing::error!(target: "agent::transport", "no arbiter to run a connection on")
            }
        }
    }

    /// The link to `url`, dialing it (in the background) if there is none.
    pub(crate) fn dial(self: &Arc<Self>, url: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(url).filter(|l| l.is_open()) {
            return link.clone();
        }
        let (link, rx) = Link::new(url.to_owned(), self.limits.send_queue);
        links.insert(url.to_owned(), link.clone());
        let me = self.clone();
        let l = link.clone();
        let url = url.to_owned();
        self.spawn(async move { me.dial_loop(url, l, rx).await });
        link
    }

    async fn dial_loop(
        self: Arc<Self>,
        url: String,
        link: Arc<Link>,
        mut rx: mpsc::Receiver<Message>,
    ) {
        let mut backoff = Duration::from_millis(25);
        let mut carry: Option<Message> = None;
        let mut first = true;
        loop {
            let attempt =
                tokio::time::timeout(self.limits.connect_timeout, self.connect(&url)).await;
            match attempt {
                Ok(Ok(ws)) => {
                    if !first {
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "agent::transport", %url, "connected");
                    backoff = Duration::from_millis(25);
                    let done = match ws {
                        Dialed::Plain(ws) => self.pump(*ws, &mut rx, &mut carry, &link).await,
                        Dialed::Tls(ws) => self.pump(*ws, &mut rx, &mut carry, &link).await,
                    };
                    if done {
                        break;
                    }
                    tracing::info!(target: "agent::transport", %url, "connection lost; reconnecting");
                    self.lost(&link);
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "agent::transport", %url, error = %e, ?backoff, "connect failed");
                }
                Err(_) => {
                    tracing::debug!(target: "agent::transport", %url, ?backoff, "connect timed out");
                }
            }
            if rx.is_closed() && carry.is_none() {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.limits.max_backoff);
        }
        link.close();
    }

    /// Opens a WebSocket to `url`: `ws://` in the clear, `wss://` over rustls.
    async fn connect(&self, url: &str) -> std::result::Result<Dialed, String> {
        if url.starts_with("wss://") {
            let (name, addr) = server_name(url).map_err(|e| e.to_string())?;
            let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .client_tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (ws, _) = tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config()))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Dialed::Tls(Box::new(ws)))
        } else {
            tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
                .await
                .map(|(ws, _)| Dialed::Plain(Box::new(ws)))
                .map_err(|e| e.to_string())
        }
    }

    /// Runs one connection until it breaks. Returns true when the link's queue is
    /// closed (nothing more to send, stop for good).
    async fn pump<S>(
        self: &Arc<Self>,
        ws: WebSocketStream<S>,
        rx: &mut mpsc::Receiver<Message>,
        carry: &mut Option<Message>,
        link: &Arc<Link>,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut sink, mut stream) = ws.split();
        let writer = async {
            loop {
                let msg = match carry.take() {
                    Some(m) => m,
                    None => match rx.recv().await {
                        Some(m) => m,
                        None => {
                            let _ = sink.close().await;
                            return true;
                        }
                    },
                };
                let sent = tokio::time::timeout(self.limits.write_timeout, sink.send(msg.clone()));
                match sent.await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => {
                        *carry = Some(msg);
                        return false;
                    }
                    Err(_) => {
                        self.counters.write_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target: "agent::transport", peer = %link.label(), "the peer reads nothing; disconnected");
                        *carry = Some(msg);
                        return false;
                    }
                }
            }
        };
        let reader = async {
            let mut edge = self.edge(link.clone());
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Binary(bytes)) => {
                        self.counters.frames.fetch_add(1, Ordering::Relaxed);
                        // Readiness first: a flooding peer waits here, unread.
                        let svc = match edge.ready().await {
                            Ok(svc) => svc,
                            Err(_) => break,
                        };
                        let env = match Envelope::from_bytes(&bytes) {
                            Ok(env) => env,
                            Err(e) => {
                                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(target: "agent::transport", peer = %link.label(), error = %e, "malformed frame dropped");
                                continue;
                            }
                        };
                        let header = env.header();
                        let call = svc.call(env);
                        let me = self.clone();
                        let link = link.clone();
                        tokio::spawn(async move {
                            if let Err(e) = call.await {
                                me.counters.refused.fetch_add(1, Ordering::Relaxed);
                                let reason = match e.downcast::<Rejection>() {
                                    Ok(r) => r.to_string(),
                                    Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
                                        "timeout: the agent is overloaded".into()
                                    }
                                    Err(e) => e.to_string(),
                                };
                                tracing::debug!(target: "agent::transport", peer = %link.label(), %reason, "envelope refused");
                                send_control(&link, &me.refusal(&header, reason));
                            }
                        });
                    }
                    Ok(Message::Text(text)) => self.on_control(&text, link).await,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            done = writer => done,
            () = reader => false,
        }
    }

    /// The `refused` frame for the envelope with `header`: signed by its recipient
    /// when that agent runs here, unsigned otherwise.
    fn refusal(&self, header: &Header, reason: String) -> Control {
        let refusal = Refusal::of(header, reason);
        let signature = self
            .port()
            .and_then(|p| p.wallet(&header.recipient))
            .and_then(|wallet| match refusal.sign(&wallet) {
                Ok(sig) => Some(sig),
                Err(e) => {
                    tracing::warn!(target: "agent::transport", error = %e, "refusal not signed");
                    None
                }
            });
        Control::Refused {
            sender: refusal.sender,
            recipient: refusal.recipient,
            dialogue: refusal.dialogue,
            sequence: refusal.sequence,
            reason: refusal.reason,
            signature,
        }
    }

    /// Handles a control frame that arrived on `link`. A refusal reaches the asker
    /// only when signed by the agent it speaks for and for an ask that left on
    /// `link`; anything else is ignored, logged and counted.
    async fn on_control(&self, text: &str, link: &Arc<Link>) {
        let Ok(Control::Refused {
            sender,
            recipient,
            dialogue,
            sequence,
            reason,
            signature,
        }) = Control::parse(text)
        else {
            tracing::debug!(target: "agent::transport", peer = %link.label(), "unknown control frame ignored");
            return;
        };
        // Forged or misrouted refusals are worth a look; late ones (the ask timed
        // out or was answered) are routine.
        let ignored = |why: &str| {
            self.counters
                .refusals_ignored
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "agent::transport", peer = %link.label(), %sender, %recipient, %dialogue, sequence, why, "refusal ignored");
        };
        let late = || {
            self.counters
                .refusals_ignored
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "agent::transport", peer = %link.label(), %sender, %recipient, %dialogue, sequence, "refusal for no pending ask ignored");
        };
        let Some(signature) = signature else {
            ignored("unsigned");
            return;
        };
        let Some(port) = self.port() else {
            return;
        };
        let refusal = Refusal {
            sender,
            recipient,
            dialogue,
            sequence,
            chain_id: self.chain_id,
            reason,
        };
        let outcome = port
            .refused(RefusedAsk {
                refusal,
                signature,
                via: link.id(),
            })
            .await;
        match outcome {
            RefusalOutcome::Failed | RefusalOutcome::Stopped => {}
            RefusalOutcome::NoPendingAsk => late(),
            RefusalOutcome::OtherLink => {
                ignored("the ask left on another connection");
            }
            RefusalOutcome::BadSignature(e) => ignored(&e.to_string()),
        }
    }

    /// The per-connection service stack.
    fn edge(
        self: &Arc<Self>,
        link: Arc<Link>,
    ) -> impl Service<Envelope, Response = (), Error = tower::BoxError, Future: Send> + Send {
        ServiceBuilder::new()
            .concurrency_limit(self.limits.concurrency)
            .rate_limit(self.limits.rate, self.limits.rate_period)
            .timeout(self.limits.timeout)
            .service(Ingress {
                transport: self.clone(),
                link,
                keys: Arc::new(Mutex::new(KeyCache::new(256))),
            })
    }

    /// Accepts connections until the listener fails.
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(target: "agent::transport", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "agent::transport", %peer, "too many connections; closed");
                drop(stream);
                continue;
            };
            let me = self.clone();
            self.spawn(async move {
                me.incoming(stream, peer).await;
                drop(permit);
            });
        }
    }

    async fn incoming(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.server_tls.clone() else {
            self.serve_http(stream, peer).await;
            return;
        };
        let handshake =
            tokio::time::timeout(self.limits.connect_timeout, tls.acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(tls_stream)) => self.serve_http(tls_stream, peer).await,
            Ok(Err(e)) => {
                tracing::debug!(target: "agent::transport", %peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(target: "agent::transport", %peer, "TLS handshake timed out")
            }
        }
    }

    /// Serves HTTP/1.1 on an accepted connection until it closes or is upgraded to a
    /// WebSocket, which then carries envelopes on the same task (and under the same
    /// connection permit).
    async fn serve_http<S>(self: Arc<Self>, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let pending: PendingUpgrade = Arc::default();
        let service = {
            let (me, pending) = (self.clone(), pending.clone());
            hyper::service::service_fn(move |request| {
                let (me, pending) = (me.clone(), pending.clone());
                async move { Ok::<_, Infallible>(me.respond(request, peer, &pending).await) }
            })
        };
        let connection = self
            .http
            .serve_connection(TokioIo::new(Lingering::new(io)), service)
            .with_upgrades();
        if let Err(e) = connection.await {
            tracing::debug!(target: "agent::transport", %peer, error = %e, "HTTP connection failed");
        }
        let upgrade = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(upgrade) = upgrade {
            match upgrade.await {
                Ok(upgraded) => self.serve_ws(upgraded, peer).await,
                Err(e) => {
                    tracing::debug!(target: "agent::transport", %peer, error = %e, "WebSocket upgrade failed");
                }
            }
        }
    }

    /// Answers one HTTP request: a WebSocket handshake on the WebSocket paths, the
    /// host's routes otherwise.
    async fn respond(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        pending: &PendingUpgrade,
    ) -> Response<ResponseBody> {
        if is_websocket_path(request.uri().path())
            && has_token(request.headers(), &UPGRADE, "websocket")
        {
            return accept_websocket(&mut request, pending);
        }
        self.routes.handle(request, peer).await
    }

    async fn serve_ws(self: Arc<Self>, upgraded: Upgraded, peer: SocketAddr) {
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(ws_config()),
        )
        .await;
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let (link, mut rx) = Link::new(peer.to_string(), self.limits.send_queue);
        let mut carry = None;
        self.pump(ws, &mut rx, &mut carry, &link).await;
        link.close();
        self.lost(&link);
    }

    /// Tells the host's agents that `link`'s connection is gone.
    fn lost(&self, link: &Link) {
        if let Some(port) = self.port() {
            port.link_lost(link);
        }
    }
}

/// An accepted connection that, when its HTTP server shuts it down, closes its
/// write side and then reads and drops what the peer still sends, until the peer
/// closes too, for at most [`LINGER`] and [`LINGER_BYTES`] (a lingering close):
/// closing a socket with unread input resets it, and the reset may reach the peer
/// before the response it has not read yet (a `413` to a body it is still
/// sending, a `431`, a `400`). Reads and writes pass straight through.
struct Lingering<S> {
    io: S,
    /// Set once the write side is closed.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    dropped: usize,
}

impl<S> Lingering<S> {
    fn new(io: S) -> Self {
        Self {
            io,
            deadline: None,
            dropped: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        if me.deadline.is_none() {
            ready!(Pin::new(&mut me.io).poll_shutdown(cx))?;
            me.deadline = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 4096];
        loop {
            if me
                .deadline
                .as_mut()
                .is_none_or(|d| std::future::Future::poll(d.as_mut(), cx).is_ready())
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut me.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    me.dropped += buf.filled().len();
                    if me.dropped > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The peer closed, or the connection broke: done either way.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Whether a header `name` of `headers` lists `token` (comma-separated,
/// case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks a WebSocket upgrade request (RFC 6455, section 4.2.1) and answers `101
/// Switching Protocols`, leaving the upgrade in `pending`; or answers why not.
fn accept_websocket(
    request: &mut Request<Incoming>,
    pending: &PendingUpgrade,
) -> Response<ResponseBody> {
    if request.method() != Method::GET {
        return not_allowed("GET");
    }
    let headers = request.headers();
    if request.version() != Version::HTTP_11 || !has_token(headers, &CONNECTION, "upgrade") {
        return status(StatusCode::BAD_REQUEST);
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut r = status(StatusCode::UPGRADE_REQUIRED);
        r.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    *pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(hyper::upgrade::on(request));
    let mut r = Response::new(ResponseBody::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// The innermost edge service: cheap checks, signature, hand-over to the agent.
struct Ingress {
    transport: Arc<Transport>,
    link: Arc<Link>,
    keys: Arc<Mutex<KeyCache>>,
}

impl Service<Envelope> for Ingress {
    type Response = ();
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<(), tower::BoxError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, env: Envelope) -> Self::Future {
        let transport = self.transport.clone();
        let link = self.link.clone();
        let keys = self.keys.clone();
        Box::pin(async move {
            let h: Header = env.header();
            if h.chain_id != transport.chain_id {
                return Err(Rejection::WrongChain {
                    expected: transport.chain_id,
                    got: h.chain_id,
                }
                .into());
            }
            check_expiry(h.expiry, transport.clock.unix_ms(), transport.max_ttl_ms)?;
            let port = transport.port().ok_or("host is shutting down")?;
            if !port.hosts(&h.recipient) {
                return Err(Rejection::WrongRecipient(h.recipient).into());
            }
            let verified = keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .verify(env)?;
            // The agent learns the route once it admitted the envelope.
            match port.deliver(verified, link).await {
                Delivery::Admitted => Ok(()),
                Delivery::Rejected(r) => Err(r.into()),
                Delivery::Stopped => Err("agent stopped".into()),
            }
        })
    }
}
