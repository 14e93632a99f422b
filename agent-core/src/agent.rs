//! The agent actor, its shared core, and the [`Context`] skills use.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use wallets::{Address, Amount, Payment, Signature, SignedPayment, SpendingPolicy, Wallet, B256};

use crate::clock::Clock;
use crate::envelope::{
    Draft, Envelope, FastMap, Header, Inbox, InboxLimits, Refusal, Rejection, Verified,
};
use crate::error::{Error, ForeignDialogue, Result, SkillError};
use crate::link::Link;
use crate::message::{Kind, Payload, ReplyWire, Request};
use crate::metrics::{Metrics, PaymentLabels, SkillLabels};
use crate::port::{Delivery, Port, RefusalOutcome, RefusedAsk};
use crate::router::Router;
use crate::store::{AgentStore, DialogueRecord};
use prometheus_client::metrics::histogram::Histogram;

/// A type-erased skill: what the runtime dispatches to. Agent authors implement
/// `agent_sdk::Skill` instead, which is adapted to this.
pub trait SkillHandler: Send + Sync + 'static {
    /// The message kind it handles ([`Request::KIND`]).
    fn kind(&self) -> &'static str;

    /// Handles one request. `json` says whether the answer must be JSON (the asker
    /// is remote) or may stay a Rust value (the asker is on this host).
    fn call(
        &self,
        ctx: Context,
        payload: Payload,
        json: bool,
    ) -> BoxFuture<'static, Result<Payload, SkillError>>;

    /// JSON Schemas of the request and the response, for the agent card.
    fn schemas(&self) -> (serde_json::Value, serde_json::Value);
}

/// A peer found through a [`Directory`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its wallet address.
    pub address: Address,
    /// Where it listens (`ws://host:port`), if not on this host.
    pub endpoint: Option<String>,
    /// Its price for the skill asked about.
    pub price: Option<Amount>,
}

impl Peer {
    /// Whether the peer is an A2A agent, listed with its A2A base URL (`http://` or
    /// `https://`), rather than an Agora host (`ws://`, `wss://`): it takes no
    /// envelopes, and is hired over A2A.
    ///
    /// ```
    /// let peer = |endpoint: Option<&str>| agent_core::Peer {
    ///     address: wallets::Address([1; 20]),
    ///     endpoint: endpoint.map(Into::into),
    ///     price: None,
    /// };
    /// assert!(peer(Some("http://127.0.0.1:7411/agents/0xab/")).is_a2a());
    /// assert!(peer(Some("HTTPS://agents.example/")).is_a2a());
    /// assert!(!peer(Some("ws://127.0.0.1:7411")).is_a2a());
    /// assert!(!peer(Some("wss://host:443")).is_a2a());
    /// assert!(!peer(None).is_a2a());
    /// ```
    pub fn is_a2a(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| {
            let e = e.trim_start();
            e.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
                || e.get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        })
    }
}

/// Where agents look up peers (the on-chain registry's discovery, or a static list).
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Agents offering `kind` at a price of at most `max_price`, best first.
    async fn find(&self, kind: &str, max_price: Option<Amount>) -> Result<Vec<Peer>>;
}

/// A fixed list of peers, for tests, examples and static deployments.
#[derive(Clone, Debug, Default)]
pub struct StaticDirectory {
    peers: Vec<(String, Peer)>,
}

impl StaticDirectory {
    /// Adds a peer offering `kind`.
    #[must_use]
    pub fn with(mut self, kind: &str, peer: Peer) -> Self {
        self.peers.push((kind.to_owned(), peer));
        self
    }
}

#[async_trait::async_trait]
impl Directory for StaticDirectory {
    async fn find(&self, kind: &str, max_price: Option<Amount>) -> Result<Vec<Peer>> {
        let mut found: Vec<Peer> = self
            .peers
            .iter()
            .filter(|(k, p)| k == kind && max_price.is_none_or(|m| p.price.is_none_or(|x| x <= m)))
            .map(|(_, p)| p.clone())
            .collect();
        found.sort_by_key(|p| p.price);
        Ok(found)
    }
}

/// Tunables of one agent.
#[derive(Clone, Copy, Debug)]
pub struct AgentLimits {
    /// Mailbox capacity; senders wait (back-pressure) when it is full.
    pub mailbox: usize,
    /// How long a message stays valid after it is sent. A host caps it at its
    /// maximum TTL ([`HostConfig::max_ttl`](crate::HostConfig::max_ttl)), beyond
    /// which its own agents would refuse the message.
    pub message_ttl: Duration,
    /// Default wait for a reply.
    pub ask_timeout: Duration,
    /// Bounds of the envelope checks' memory.
    pub inbox: InboxLimits,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self {
            mailbox: 1024,
            message_ttl: Duration::from_secs(60),
            ask_timeout: Duration::from_secs(30),
            inbox: InboxLimits::default(),
        }
    }
}

/// Everything needed to start an agent on a host.
pub struct AgentSpec {
    /// A human name for logs and the card.
    pub name: String,
    /// The agent's wallet: its identity.
    pub wallet: Arc<Wallet>,
    /// Its skills.
    pub handlers: Vec<Arc<dyn SkillHandler>>,
    /// The only way it can pay.
    pub policy: Option<Arc<SpendingPolicy>>,
    /// Where it finds peers.
    pub directory: Option<Arc<dyn Directory>>,
    /// Tunables.
    pub limits: AgentLimits,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.name)
            .field("address", &self.wallet.address())
            .field(
                "skills",
                &self.handlers.iter().map(|h| h.kind()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// An ask waiting for its answer.
struct Pending {
    tx: oneshot::Sender<Result<Payload>>,
    /// The link it left on ([`Link::id`]), if it left the host: only a refusal
    /// coming back on that link may fail it, and it fails when that link's
    /// connection is lost.
    via: Option<u64>,
}

/// An agent's asks waiting for their answers, by (peer, dialogue, sequence).
#[derive(Default)]
pub(crate) struct PendingAsks(Mutex<HashMap<(Address, B256, u64), Pending>>);

impl PendingAsks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Address, B256, u64), Pending>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails every ask that left on `link`, whose connection was lost: an answer
    /// would have come back on it, and the peer has no other way back. The ask may
    /// have been carried out; an asker that must know asks again (idempotently, as
    /// a buyer re-sends the same payment).
    fn fail_via(&self, link: &Link) -> usize {
        let lost: Vec<Pending> = {
            let mut pending = self.lock();
            let keys: Vec<_> = pending
                .iter()
                .filter(|(_, p)| p.via == Some(link.id()))
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| pending.remove(k)).collect()
        };
        let n = lost.len();
        for p in lost {
            let _ = p.tx.send(Err(Error::Transport {
                peer: link.label().to_owned(),
                reason: "connection lost before the answer came (the ask may have been \
                         carried out)"
                    .into(),
            }));
        }
        n
    }
}

/// Counters of one agent.
#[derive(Debug, Default)]
pub(crate) struct AgentCounters {
    pub(crate) handled: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Messages sent: requests, one-way messages and replies.
    pub(crate) sent: AtomicU64,
}

/// What every part of an agent shares: identity, skills, store, pending asks.
pub(crate) struct AgentCore {
    pub(crate) name: String,
    pub(crate) wallet: Arc<Wallet>,
    pub(crate) address: Address,
    pub(crate) chain_id: u64,
    pub(crate) handlers: FastMap<&'static str, Arc<dyn SkillHandler>>,
    pub(crate) store: AgentStore,
    /// Where the wall-clock time is read.
    pub(crate) clock: Clock,
    /// The agents of this host, found before any remote route.
    pub(crate) locals: Arc<LocalAgents>,
    /// Routes to remote agents.
    pub(crate) router: Arc<Router>,
    pub(crate) policy: Option<Arc<SpendingPolicy>>,
    pub(crate) directory: Option<Arc<dyn Directory>>,
    pub(crate) limits: AgentLimits,
    /// The host's maximum TTL, for the envelope checks.
    pub(crate) max_ttl: Duration,
    pub(crate) pending: Arc<PendingAsks>,
    sequence: AtomicU64,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) counters: AgentCounters,
    /// The host's metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Each skill's handling-time histogram, by kind.
    skill_seconds: FastMap<&'static str, Histogram>,
}

/// What the agents of one host share: the chain, the maximum TTL, the clock, and
/// where messages go.
#[derive(Clone)]
pub(crate) struct HostShared {
    pub(crate) chain_id: u64,
    /// The host's maximum TTL, for the envelope checks and to cap message TTLs.
    pub(crate) max_ttl: Duration,
    pub(crate) clock: Clock,
    pub(crate) locals: Arc<LocalAgents>,
    pub(crate) router: Arc<Router>,
    /// The host's metrics.
    pub(crate) metrics: Arc<Metrics>,
}

/// A resolved destination.
#[derive(Clone)]
pub(crate) enum Route {
    Local(LocalAgent),
    Remote(Arc<Link>),
}

/// An agent on this host: its actor, its mailbox's room counter and its wallet (to
/// sign the refusals of envelopes sent to it).
#[derive(Clone)]
pub(crate) struct LocalAgent {
    pub(crate) addr: Addr<AgentActor>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) wallet: Arc<Wallet>,
    pub(crate) pending: Arc<PendingAsks>,
}

/// The agents running on a host. It is the host's delivery [`Port`]: the transport
/// hands it what arrives for them.
#[derive(Default)]
pub(crate) struct LocalAgents {
    map: RwLock<FastMap<Address, LocalAgent>>,
}

impl LocalAgents {
    /// Adds an agent.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when an agent with that address is already here.
    pub(crate) fn add(&self, address: Address, agent: LocalAgent) -> Result<()> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&address) {
            return Err(Error::Duplicate(address));
        }
        map.insert(address, agent);
        Ok(())
    }

    pub(crate) fn remove(&self, address: &Address) -> Option<LocalAgent> {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(address)
    }

    pub(crate) fn get(&self, address: &Address) -> Option<LocalAgent> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .cloned()
    }
}

impl Port for LocalAgents {
    fn hosts(&self, agent: &Address) -> bool {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(agent)
    }

    fn wallet(&self, agent: &Address) -> Option<Arc<Wallet>> {
        self.get(agent).map(|a| a.wallet)
    }

    fn deliver(&self, verified: Verified, link: Arc<Link>) -> BoxFuture<'static, Delivery> {
        let to = verified.envelope().recipient;
        let Some(agent) = self.get(&to) else {
            return Box::pin(std::future::ready(Delivery::Rejected(
                Rejection::WrongRecipient(to),
            )));
        };
        Box::pin(async move {
            match agent.addr.send(DeliverRemote(verified, link)).await {
                Ok(Ok(())) => Delivery::Admitted,
                Ok(Err(r)) => Delivery::Rejected(r),
                Err(_) => Delivery::Stopped,
            }
        })
    }

    fn link_lost(&self, link: &Link) {
        let agents: Vec<(Address, Arc<PendingAsks>)> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(a, l)| (*a, l.pending.clone()))
            .collect();
        for (agent, pending) in agents {
            let failed = pending.fail_via(link);
            if failed > 0 {
                tracing::info!(target: "agent::runtime", %agent, peer = link.label(), failed, "connection lost: its asks fail");
            }
        }
    }

    fn refused(&self, refused: RefusedAsk) -> BoxFuture<'static, RefusalOutcome> {
        let Some(agent) = self.get(&refused.refusal.sender) else {
            return Box::pin(std::future::ready(RefusalOutcome::NoPendingAsk));
        };
        Box::pin(async move {
            agent
                .addr
                .send(refused)
                .await
                .unwrap_or(RefusalOutcome::Stopped)
        })
    }
}

/// An in-flight message into an agent's mailbox.
pub(crate) struct Deliver {
    pub(crate) header: Header,
    pub(crate) body: Body,
    pub(crate) remote: Option<B256>,
    /// Counted in the recipient's [`Mailbox`] (one-way local messages).
    pub(crate) counted: bool,
}

/// The bound of an agent's mailbox for one-way local messages: senders wait while
/// `cap` messages are queued and are woken when the backlog has halved.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) inflight: std::sync::atomic::AtomicUsize,
    room: tokio::sync::Notify,
    cap: usize,
}

impl Mailbox {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inflight: std::sync::atomic::AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
            cap: cap.max(2),
        }
    }

    fn full(&self) -> bool {
        self.inflight.load(Ordering::Acquire) >= self.cap
    }

    async fn wait_for_room(&self, addr: &Addr<AgentActor>, to: Address) -> Result<()> {
        while self.full() {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.full() {
                break;
            }
            // Bounded, so that a stopped agent cannot keep a sender forever.
            if tokio::time::timeout(Duration::from_millis(100), notified)
                .await
                .is_err()
                && !addr.connected()
            {
                return Err(Error::Stopped(to));
            }
        }
        if !addr.connected() {
            return Err(Error::Stopped(to));
        }
        Ok(())
    }

    /// One counted message left the mailbox.
    fn taken(&self) {
        let before = self.inflight.fetch_sub(1, Ordering::AcqRel);
        if before == self.cap / 2 + 1 {
            self.room.notify_waiters();
        }
    }
}

impl Message for Deliver {
    type Result = Result<(), Rejection>;
}

/// A message body, decoded.
pub(crate) enum Body {
    Ask(Cow<'static, str>, Payload),
    Tell(Cow<'static, str>, Payload),
    Reply {
        re: u64,
        result: Result<Payload, SkillError>,
    },
}

impl Body {
    /// Decodes a verified envelope's kind and payload.
    pub(crate) fn from_envelope(env: Envelope) -> Result<Self, Rejection> {
        let kind = Kind::parse(&env.kind).map_err(Rejection::Malformed)?;
        Ok(match kind {
            Kind::Ask(k) => Self::Ask(Cow::Owned(k), Payload::Json(env.payload)),
            Kind::Tell(k) => Self::Tell(Cow::Owned(k), Payload::Json(env.payload)),
            Kind::Reply => {
                let r: ReplyWire = serde_json::from_value(env.payload)
                    .map_err(|e| Rejection::Malformed(format!("reply payload: {e}")))?;
                let result = match (r.ok, r.err) {
                    (Some(v), None) => Ok(Payload::Json(v)),
                    (None, Some(e)) => Err(e),
                    _ => {
                        return Err(Rejection::Malformed(
                            "reply payload needs exactly one of ok and err".into(),
                        ))
                    }
                };
                Self::Reply { re: r.re, result }
            }
        })
    }

    fn into_wire(self) -> Result<(String, serde_json::Value)> {
        let json = |p: Payload, kind: &str| match p {
            Payload::Json(v) => Ok(v),
            Payload::Local(_) => Err(Error::Payload {
                kind: kind.to_owned(),
                reason: "a local value cannot leave the process".into(),
            }),
        };
        Ok(match self {
            Self::Ask(k, p) => (Kind::Ask(k.to_string()).to_wire(), json(p, &k)?),
            Self::Tell(k, p) => (Kind::Tell(k.to_string()).to_wire(), json(p, &k)?),
            Self::Reply { re, result } => {
                let wire = match result {
                    Ok(p) => ReplyWire {
                        re,
                        ok: Some(json(p, "reply")?),
                        err: None,
                    },
                    Err(e) => ReplyWire {
                        re,
                        ok: None,
                        err: Some(e),
                    },
                };
                (
                    Kind::Reply.to_wire(),
                    serde_json::to_value(wire).map_err(|e| Error::Payload {
                        kind: "reply".into(),
                        reason: e.to_string(),
                    })?,
                )
            }
        })
    }
}

fn random_dialogue() -> B256 {
    B256::random()
}

impl AgentCore {
    /// The core of the agent of `spec` on the host that shares `host`; its
    /// messages expire at most the host's maximum TTL after they are sent (the
    /// spec's `message_ttl` is capped to it).
    pub(crate) fn new(spec: AgentSpec, host: &HostShared, store: AgentStore) -> Self {
        let max_ttl = host.max_ttl;
        let handlers: FastMap<&'static str, Arc<dyn SkillHandler>> =
            spec.handlers.into_iter().map(|h| (h.kind(), h)).collect();
        let agent = spec.wallet.address().to_string();
        let skill_seconds = handlers
            .keys()
            .map(|&skill| {
                let labels = SkillLabels {
                    agent: agent.clone(),
                    skill,
                };
                (
                    skill,
                    host.metrics.skill_seconds.get_or_create_owned(&labels),
                )
            })
            .collect();
        // Sequences start at the wall clock in nanoseconds and count up, so a
        // restarted agent never reuses one (it would need to send faster than one
        // message per nanosecond since its previous start). The system clock, not
        // the host's: a seed that must grow across restarts even while a manual
        // clock stands still, not a time anyone reads (see `crate::clock`).
        let start = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(u64::MAX / 2);
        let mut limits = spec.limits;
        if limits.message_ttl > max_ttl {
            tracing::warn!(target: "agent::runtime", agent = %spec.wallet.address(), message_ttl = ?limits.message_ttl, ?max_ttl, "message TTL above the host's maximum TTL; capped");
            limits.message_ttl = max_ttl;
        }
        Self {
            name: spec.name,
            address: spec.wallet.address(),
            wallet: spec.wallet,
            chain_id: host.chain_id,
            handlers,
            store,
            clock: host.clock.clone(),
            locals: host.locals.clone(),
            router: host.router.clone(),
            policy: spec.policy,
            directory: spec.directory,
            limits,
            max_ttl,
            pending: Arc::default(),
            sequence: AtomicU64::new(start),
            mailbox: Arc::new(Mailbox::new(limits.mailbox)),
            counters: AgentCounters::default(),
            metrics: host.metrics.clone(),
            skill_seconds,
        }
    }

    /// Counts a message dropped by the checks, by reason.
    fn count_rejection(&self, r: &Rejection) {
        self.metrics.rejected(&self.address.to_string(), r.label());
    }

    /// Records how long the skill of `kind` took, from `start`.
    fn time_skill(&self, kind: &str, start: Instant) {
        if let Some(h) = self.skill_seconds.get(kind) {
            h.observe(start.elapsed().as_secs_f64());
        }
    }

    /// Counts a payment asked of the policy, and what it signed.
    fn count_payment(&self, result: &std::result::Result<SignedPayment, wallets::Error>) {
        let agent = self.address.to_string();
        let outcome = match result {
            Ok(_) => "signed",
            Err(wallets::Error::PolicyDenied { .. }) => "refused",
            Err(_) => "failed",
        };
        self.metrics
            .payments
            .get_or_create(&PaymentLabels { agent, outcome })
            .inc();
    }

    /// Where a message to `to` goes: an agent of this host, else a remote route.
    fn resolve(&self, to: &Address) -> Result<Route> {
        match self.locals.get(to) {
            Some(agent) => Ok(Route::Local(agent)),
            None => self.router.resolve(to).map(Route::Remote),
        }
    }

    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn header(&self, to: Address, dialogue: B256) -> Header {
        let ttl = u64::try_from(self.limits.message_ttl.as_millis()).unwrap_or(u64::MAX);
        Header {
            sender: self.address,
            recipient: to,
            dialogue,
            sequence: self.next_sequence(),
            expiry: self.clock.unix_ms().saturating_add(ttl),
            chain_id: self.chain_id,
        }
    }

    /// Sends a body along a resolved route. `wait` asks for the local admission
    /// result (asks need it, tells do not).
    async fn deliver(&self, route: Route, header: Header, body: Body, wait: bool) -> Result<()> {
        let sent = self.deliver_route(route, header, body, wait).await;
        if sent.is_ok() {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    async fn deliver_route(
        &self,
        route: Route,
        header: Header,
        body: Body,
        wait: bool,
    ) -> Result<()> {
        match route {
            Route::Local(agent) => {
                if wait {
                    let msg = Deliver {
                        header,
                        body,
                        remote: None,
                        counted: false,
                    };
                    return self.deliver_waiting(&agent.addr, msg).await;
                }
                // One-way: wait for room in the mailbox (back-pressure), not for the
                // handler; the recipient wakes waiters when its backlog halves.
                agent
                    .mailbox
                    .wait_for_room(&agent.addr, header.recipient)
                    .await?;
                agent.mailbox.inflight.fetch_add(1, Ordering::AcqRel);
                agent.addr.do_send(Deliver {
                    header,
                    body,
                    remote: None,
                    counted: true,
                });
                Ok(())
            }
            Route::Remote(link) => {
                let reply = matches!(body, Body::Reply { .. });
                let (kind, payload) = body.into_wire()?;
                let env = Envelope::seal(
                    &self.wallet,
                    Draft {
                        recipient: header.recipient,
                        dialogue: header.dialogue,
                        sequence: header.sequence,
                        expiry: header.expiry,
                        chain_id: header.chain_id,
                        kind,
                        payload,
                    },
                )
                .map_err(|e| Error::Host(e.to_string()))?;
                if reply {
                    // A reply never waits for room in the asker's send queue: when
                    // it is full the asker reads nothing (the transport disconnects
                    // it after its write timeout), and replies waiting here would
                    // pile up in the agent and slow it for every other peer. The
                    // asker's ask times out.
                    return link.try_send(env.to_bytes());
                }
                link.send(env.to_bytes()).await
            }
        }
    }

    async fn deliver_waiting(&self, addr: &Addr<AgentActor>, msg: Deliver) -> Result<()> {
        let to = msg.header.recipient;
        match addr.send(msg).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => Err(Error::Rejected(r)),
            Err(_) => Err(Error::Stopped(to)),
        }
    }

    /// Answers ask `re` of `to` in `dialogue`. An `internal` skill error leaves the
    /// host without its message, which may name files, accounts or upstream
    /// services: the asker on another host is told where to look instead, and the
    /// message goes to this host's log.
    pub(crate) async fn send_reply(
        &self,
        to: Address,
        dialogue: B256,
        re: u64,
        result: Result<Payload, SkillError>,
    ) -> Result<()> {
        let route = self.resolve(&to)?;
        let result = match (result, &route) {
            (Err(e), Route::Remote(_)) if e.code == SkillError::INTERNAL => {
                tracing::warn!(target: "agent::runtime", agent = %self.address, peer = %to, %dialogue, re, error = %e.message, "skill failed; the asker is told only where to look");
                Err(e.for_asker(format_args!("dialogue {dialogue}, message {re}")))
            }
            (result, _) => result,
        };
        let header = self.header(to, dialogue);
        self.deliver(route, header, Body::Reply { re, result }, false)
            .await
    }

    fn complete(&self, from: Address, dialogue: B256, re: u64, result: Result<Payload>) {
        let waiter = self.pending.lock().remove(&(from, dialogue, re));
        match waiter {
            Some(p) => {
                let _ = p.tx.send(result);
            }
            None => {
                tracing::debug!(target: "agent::runtime", agent = %self.address, %from, %dialogue, re, "reply to no pending ask (late or duplicate)")
            }
        }
    }

    /// Fails the pending ask a remote host refused, if the refusal is for an ask
    /// of this agent that left on link `via` and is signed by the agent asked.
    fn refused(&self, refusal: Refusal, signature: &Signature, via: u64) -> RefusalOutcome {
        let key = (refusal.recipient, refusal.dialogue, refusal.sequence);
        let sent_via = self.pending.lock().get(&key).map(|p| p.via);
        match sent_via {
            None => return RefusalOutcome::NoPendingAsk,
            Some(sent) if sent != Some(via) => return RefusalOutcome::OtherLink,
            Some(_) => {}
        }
        // Checked only for an ask that is pending on this link: a flood of forged
        // frames costs a map lookup each, not a key recovery.
        if let Err(e) = refusal.verify(signature) {
            return RefusalOutcome::BadSignature(e);
        }
        let peer = refusal.recipient;
        self.complete(
            peer,
            refusal.dialogue,
            refusal.sequence,
            Err(Error::Refused {
                peer,
                reason: refusal.reason,
            }),
        );
        RefusalOutcome::Failed
    }
}

/// The actor that owns an agent's mailbox and its envelope checks.
pub(crate) struct AgentActor {
    core: Arc<AgentCore>,
    inbox: Inbox,
}

impl std::fmt::Debug for AgentActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentActor")
            .field("agent", &self.core.address)
            .field("name", &self.core.name)
            .finish_non_exhaustive()
    }
}

impl AgentActor {
    pub(crate) fn new(core: Arc<AgentCore>) -> Self {
        let inbox = Self::inbox(&core);
        Self { core, inbox }
    }

    fn inbox(core: &AgentCore) -> Inbox {
        Inbox::new(core.address, core.chain_id, core.limits.inbox).with_max_ttl(core.max_ttl)
    }

    /// Admits a remote envelope: restores the persisted replay state of its
    /// dialogue if memory lost it (restart, eviction), checks, and persists.
    fn admit_remote(&mut self, verified: &Verified, now: u64) -> Result<(), Rejection> {
        let h = verified.envelope().header();
        if self.inbox.last_sequence(h.sender, h.dialogue).is_none() {
            match self.core.store.last_sequence(h.sender, h.dialogue) {
                Ok(Some((last, _))) => self.inbox.restore(h.sender, h.dialogue, last),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(target: "agent::store", agent = %self.core.address, error = %e, "replay state unreadable; refusing");
                    return Err(self
                        .inbox
                        .reject(Rejection::Malformed(format!("store: {e}"))));
                }
            }
        }
        self.inbox.admit(verified, now)?;
        if let Err(e) = self
            .core
            .store
            .set_last_sequence(h.sender, h.dialogue, h.sequence, h.expiry)
        {
            tracing::error!(target: "agent::store", agent = %self.core.address, error = %e, "replay state not persisted");
        }
        Ok(())
    }

    /// Polls `work` once here; spawns it on the actor only if it must wait.
    fn run(
        &mut self,
        mut work: Pin<Box<dyn Future<Output = Outcome>>>,
        ctx: &mut actix::Context<Self>,
    ) {
        let waker = futures::task::noop_waker();
        let mut task_cx = std::task::Context::from_waker(&waker);
        match work.as_mut().poll(&mut task_cx) {
            Poll::Ready(outcome) => self.finish(outcome, ctx),
            Poll::Pending => {
                ctx.spawn(
                    actix::fut::wrap_future::<_, Self>(work).map(|o, act, ctx| act.finish(o, ctx)),
                );
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, ctx: &mut actix::Context<Self>) {
        if let Outcome::Panicked = outcome {
            // The skill panicked: its agent's in-memory state may be inconsistent.
            // Stop; the supervisor restarts it from the store.
            ctx.stop();
        }
    }
}

enum Outcome {
    Done,
    Panicked,
}

type Caught = std::result::Result<Result<Payload, SkillError>, Box<dyn std::any::Any + Send>>;

/// Counts a panic, and answers the asker if it wants an answer.
async fn respond_if(
    core: Arc<AgentCore>,
    header: Header,
    kind: Cow<'static, str>,
    result: Caught,
    expects_reply: bool,
) -> Outcome {
    if expects_reply {
        return respond(core, header, kind, result).await;
    }
    if result.is_err() {
        core.counters.panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!(target: "agent::runtime", agent = %core.address, %kind, "skill panicked");
        return Outcome::Panicked;
    }
    Outcome::Done
}

async fn respond(
    core: Arc<AgentCore>,
    header: Header,
    kind: Cow<'static, str>,
    result: Caught,
) -> Outcome {
    let (result, outcome) = match result {
        Ok(r) => (r, Outcome::Done),
        Err(_) => {
            core.counters.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "agent::runtime", agent = %core.address, %kind, "skill panicked");
            (
                Err(SkillError::internal(format!("skill {kind} panicked"))),
                Outcome::Panicked,
            )
        }
    };
    if let Err(e) = core
        .send_reply(header.sender, header.dialogue, header.sequence, result)
        .await
    {
        tracing::debug!(target: "agent::runtime", agent = %core.address, error = %e, "reply not sent");
    }
    outcome
}

/// How often an agent forgets the replay records of expired messages.
const PRUNE_REPLAY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl AgentActor {
    /// Forgets the replay records of messages expired by the host's clock.
    fn prune_replay(&self) -> Result<usize> {
        let result = self.core.store.prune_replay(self.core.clock.unix_ms());
        match &result {
            Ok(0) => {}
            Ok(gone) => {
                tracing::debug!(target: "agent::store", agent = %self.core.address, gone, "expired replay records pruned")
            }
            Err(e) => {
                tracing::warn!(target: "agent::store", agent = %self.core.address, error = %e, "pruning replay records failed")
            }
        }
        result
    }
}

/// Prune the replay records now (see [`AgentHandle::prune_replay`]).
pub(crate) struct PruneReplay;

impl Message for PruneReplay {
    type Result = Result<usize>;
}

impl Handler<PruneReplay> for AgentActor {
    type Result = Result<usize>;

    fn handle(&mut self, _: PruneReplay, _: &mut Self::Context) -> Self::Result {
        self.prune_replay()
    }
}

impl Actor for AgentActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.limits.mailbox);
        // Replay records of expired messages protect nothing (the expiry check
        // refuses those messages) and expiries are capped at now + the host's maximum
        // TTL, so pruning them now and then bounds the replay store.
        // An elapsed-time timer decides when to prune; the host's clock decides what.
        let _ = self.prune_replay();
        ctx.run_interval(PRUNE_REPLAY_EVERY, |actor, _| {
            let _ = actor.prune_replay();
        });
        tracing::debug!(target: "agent::runtime", agent = %self.core.address, name = %self.core.name, "agent started");
    }
}

impl Supervised for AgentActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.core.counters.restarts.fetch_add(1, Ordering::Relaxed);
        // Forget in-memory checks; the persisted replay state is reloaded lazily.
        self.inbox = Self::inbox(&self.core);
        tracing::warn!(target: "agent::runtime", agent = %self.core.address, name = %self.core.name, "agent restarting from its store");
    }
}

impl Handler<Deliver> for AgentActor {
    type Result = Result<(), Rejection>;

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) -> Self::Result {
        let now = self.core.clock.unix_ms();
        let Deliver {
            header,
            body,
            remote,
            counted,
        } = msg;
        if counted {
            self.core.mailbox.taken();
        }
        let admitted = match remote {
            None => self.inbox.admit_local(&header, now),
            Some(_) => Ok(()),
        };
        if let Err(r) = admitted {
            self.core.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.core.count_rejection(&r);
            return Err(r);
        }
        self.core.counters.handled.fetch_add(1, Ordering::Relaxed);
        let core = self.core.clone();
        let is_remote = remote.is_some();
        let (kind, payload, expects_reply) = match body {
            Body::Reply { re, result } => {
                core.complete(
                    header.sender,
                    header.dialogue,
                    re,
                    result.map_err(Error::Skill),
                );
                return Ok(());
            }
            Body::Ask(k, p) => (k, p, true),
            Body::Tell(k, p) => (k, p, false),
        };
        let Some(handler) = core.handlers.get(kind.as_ref()).cloned() else {
            tracing::debug!(target: "agent::runtime", agent = %core.address, %kind, "no skill for kind");
            if expects_reply {
                let err = SkillError::new(
                    "unknown_skill",
                    format!("agent {} has no skill {kind}", core.address),
                );
                ctx.spawn(
                    async move {
                        let _ = core
                            .send_reply(header.sender, header.dialogue, header.sequence, Err(err))
                            .await;
                    }
                    .into_actor(self),
                );
            }
            return Ok(());
        };
        // The replay record of a remote message was written (not flushed) when it was
        // admitted; whatever leaves the agent on its account waits for the disk.
        let replay = is_remote.then(|| core.store.mark());
        let cx = Context {
            core: core.clone(),
            current: Some(Current {
                sender: header.sender,
                dialogue: header.dialogue,
                sequence: header.sequence,
                replay,
            }),
        };
        let waker = futures::task::noop_waker();
        let mut task_cx = std::task::Context::from_waker(&waker);
        if !is_remote {
            // Local messages need no flush: run the skill at once, and only keep a
            // future around when it has to wait.
            let start = Instant::now();
            let mut call = handler.call(cx, payload, false);
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(&mut task_cx)));
            let after = match polled {
                Ok(Poll::Ready(result)) => {
                    core.time_skill(&kind, start);
                    if expects_reply {
                        let reply = respond(core, header, kind, Ok(result));
                        ctx.spawn(
                            actix::fut::wrap_future::<_, Self>(reply)
                                .map(|o, act, ctx| act.finish(o, ctx)),
                        );
                    }
                    return Ok(());
                }
                Ok(Poll::Pending) => Box::pin(async move {
                    let result = AssertUnwindSafe(call).catch_unwind().await;
                    core.time_skill(&kind, start);
                    respond_if(core, header, kind, result, expects_reply).await
                }) as Pin<Box<dyn Future<Output = Outcome>>>,
                Err(_) => Box::pin(respond_if(
                    core,
                    header,
                    kind,
                    Err(Box::new(())),
                    expects_reply,
                )),
            };
            self.run(after, ctx);
            return Ok(());
        }
        let work = Box::pin(async move {
            let start = Instant::now();
            let call = handler.call(cx, payload, true);
            let result = AssertUnwindSafe(call).catch_unwind().await;
            core.time_skill(&kind, start);
            // The replay record is on disk before the reply leaves (and before
            // anything the skill sends: see `Context::replay_durable`). Usually the
            // skill's own flush of its state already covered it.
            if let Some(mark) = replay {
                if let Err(e) = core.store.flush_after(mark).await {
                    tracing::error!(target: "agent::store", agent = %core.address, error = %e, "flush failed");
                }
            }
            respond_if(core, header, kind, result, expects_reply).await
        });
        self.run(work, ctx);
        Ok(())
    }
}

/// A remote envelope already verified on its connection, for the stateful checks,
/// and the link it arrived on: once admitted, the sender's route.
pub(crate) struct DeliverRemote(pub(crate) Verified, pub(crate) Arc<Link>);

impl Message for DeliverRemote {
    type Result = Result<(), Rejection>;
}

impl Handler<DeliverRemote> for AgentActor {
    type Result = Result<(), Rejection>;

    fn handle(&mut self, msg: DeliverRemote, ctx: &mut Self::Context) -> Self::Result {
        let now = self.core.clock.unix_ms();
        if let Err(r) = self.admit_remote(&msg.0, now) {
            self.core.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.core.count_rejection(&r);
            return Err(r);
        }
        let DeliverRemote(verified, link) = msg;
        let id = verified.id();
        let env = verified.into_envelope();
        let header = env.header();
        let body = Body::from_envelope(env).map_err(|r| {
            self.core.count_rejection(&r);
            self.inbox.reject(r)
        })?;
        // Admitted: only now may the sender's route point at this connection (and
        // before any reply needs it).
        self.core.router.learn(header.sender, &link);
        // Already admitted: hand to the common dispatch with the remote marker.
        <Self as Handler<Deliver>>::handle(
            self,
            Deliver {
                header,
                body,
                remote: Some(id),
                counted: false,
            },
            ctx,
        )
    }
}

/// Counters of an agent, for tests and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentStats {
    /// Messages handed to skills or to pending asks.
    pub handled: u64,
    /// Messages dropped by the checks.
    pub rejected: u64,
    /// Supervisor restarts.
    pub restarts: u64,
    /// Skill panics caught.
    pub panics: u64,
}

/// Rejection counts per reason are kept by the actor; ask it.
pub(crate) struct Rejections;

impl Message for Rejections {
    type Result = HashMap<&'static str, u64>;
}

impl Handler<Rejections> for AgentActor {
    type Result = MessageResult<Rejections>;

    fn handle(&mut self, _: Rejections, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.inbox.rejections().clone())
    }
}

#[derive(Clone, Copy, Debug)]
struct Current {
    sender: Address,
    dialogue: B256,
    sequence: u64,
    /// For a remote message, the store's mark taken after its replay record was
    /// written: nothing leaves the agent on its account before that record is on
    /// disk (a crash could otherwise let the same envelope be acted on twice).
    replay: Option<u64>,
}

/// One dialogue's new state, for [`Context::write_states`].
#[derive(Clone, Debug, PartialEq)]
pub struct StateUpdate {
    /// The dialogue.
    pub dialogue: B256,
    /// The peer it belongs to.
    pub peer: Address,
    /// The state, as JSON.
    pub state: serde_json::Value,
    /// Whether the dialogue is over.
    pub closed: bool,
}

impl StateUpdate {
    /// `state` as the new state of `dialogue` with `peer`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not serialize.
    pub fn new<T: Serialize>(
        dialogue: B256,
        peer: Address,
        state: &T,
        closed: bool,
    ) -> Result<Self> {
        let state = serde_json::to_value(state).map_err(|e| Error::Corrupt {
            what: format!("state of dialogue {dialogue}"),
            reason: e.to_string(),
        })?;
        Ok(Self {
            dialogue,
            peer,
            state,
            closed,
        })
    }
}

/// What a skill (or any code holding an agent's handle) can do as that agent: send,
/// ask with a timeout, keep dialogue state, find peers, and pay through the
/// spending policy. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    core: Arc<AgentCore>,
    current: Option<Current>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("agent", &self.core.address)
            .field("current", &self.current)
            .finish()
    }
}

impl Context {
    pub(crate) fn root(core: Arc<AgentCore>) -> Self {
        Self {
            core,
            current: None,
        }
    }

    /// This agent's address.
    pub fn me(&self) -> Address {
        self.core.address
    }

    /// This agent's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The chain this agent pays on.
    pub fn chain_id(&self) -> u64 {
        self.core.chain_id
    }

    /// The sender of the message being handled.
    pub fn sender(&self) -> Option<Address> {
        self.current.map(|c| c.sender)
    }

    /// The dialogue of the message being handled.
    pub fn dialogue(&self) -> Option<B256> {
        self.current.map(|c| c.dialogue)
    }

    /// The sequence of the message being handled.
    pub fn sequence(&self) -> Option<u64> {
        self.current.map(|c| c.sequence)
    }

    /// The clock the agent reads wall-clock time from: the host's
    /// ([`HostConfig::clock`](crate::HostConfig::clock)), a
    /// [`ManualClock`](crate::clock::ManualClock) in tests. Read deadlines and other
    /// wall-clock facts through it, so that a test can move time instead of
    /// sleeping.
    pub fn clock(&self) -> &Clock {
        &self.core.clock
    }

    /// A fresh dialogue id.
    pub fn new_dialogue(&self) -> B256 {
        random_dialogue()
    }

    /// Waits until the replay record of the remote message being handled is on disk,
    /// so that nothing leaves on its account before a crash could forget it was
    /// handled. Free when a flush (of the skill's state, say) already covered it.
    async fn replay_durable(&self) -> Result<()> {
        match self.current.and_then(|c| c.replay) {
            Some(mark) => self.core.store.flush_after(mark).await,
            None => Ok(()),
        }
    }

    /// Sends a one-way message in a new dialogue.
    ///
    /// # Errors
    /// [`Error::NoRoute`], [`Error::Stopped`], [`Error::Transport`], or a wallet error.
    pub async fn tell<R: Request>(&self, to: Address, request: R) -> Result<()> {
        self.tell_in(random_dialogue(), to, request).await
    }

    /// Sends a one-way message in `dialogue`.
    ///
    /// # Errors
    /// As [`Context::tell`].
    pub async fn tell_in<R: Request>(&self, dialogue: B256, to: Address, request: R) -> Result<()> {
        self.replay_durable().await?;
        let route = self.core.resolve(&to)?;
        let payload = typed_payload(&route, request)?;
        let header = self.core.header(to, dialogue);
        self.core
            .deliver(
                route,
                header,
                Body::Tell(Cow::Borrowed(R::KIND), payload),
                false,
            )
            .await
    }

    /// Asks in a new dialogue and waits for the answer for the default timeout.
    ///
    /// # Errors
    /// As [`Context::ask_in`].
    pub async fn ask<R: Request>(&self, to: Address, request: R) -> Result<R::Response> {
        self.ask_in(random_dialogue(), to, request, self.core.limits.ask_timeout)
            .await
    }

    /// Asks in `dialogue` and waits up to `timeout` for the answer.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Skill`] when the peer's skill failed,
    /// [`Error::Refused`] or [`Error::Rejected`] when the message was dropped before
    /// any skill saw it, [`Error::Transport`] when the connection it left on was lost
    /// before the answer came (the ask may have been carried out), [`Error::Payload`]
    /// when the answer is not an `R::Response`, and the errors of [`Context::tell`].
    pub async fn ask_in<R: Request>(
        &self,
        dialogue: B256,
        to: Address,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        self.replay_durable().await?;
        let route = self.core.resolve(&to)?;
        let payload = typed_payload(&route, request)?;
        let header = self.core.header(to, dialogue);
        let key = (to, dialogue, header.sequence);
        let via = match &route {
            Route::Remote(link) => Some(link.id()),
            Route::Local(_) => None,
        };
        let (tx, rx) = oneshot::channel();
        self.core.pending.lock().insert(key, Pending { tx, via });
        let forget = || {
            self.core.pending.lock().remove(&key);
        };
        if let Err(e) = self
            .core
            .deliver(
                route,
                header,
                Body::Ask(Cow::Borrowed(R::KIND), payload),
                true,
            )
            .await
        {
            forget();
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result?.into_typed::<R::Response>(R::KIND),
            Ok(Err(_)) => Err(Error::Stopped(self.core.address)),
            Err(_) => {
                forget();
                Err(Error::Timeout {
                    peer: to,
                    dialogue,
                    millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// [`Error::ForeignDialogue`] when `dialogue` was saved with a peer other than
    /// `peer`.
    fn check_owner(&self, dialogue: B256, peer: Address) -> Result<()> {
        match self.core.store.dialogue_peer(dialogue)? {
            Some(owner) if owner != peer => {
                Err(Error::ForeignDialogue(Box::new(ForeignDialogue {
                    dialogue,
                    owner,
                    peer,
                })))
            }
            _ => Ok(()),
        }
    }

    /// Saves `state` as the state of `dialogue` with `peer`, on disk before it
    /// returns, so that a crash after this point resumes from it.
    ///
    /// A dialogue belongs to the peer it was first saved with: dialogue ids are
    /// chosen by whoever opens the dialogue, so another agent could pick the same id.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Corrupt`] if it does not serialize;
    /// [`Error::ForeignDialogue`] when the dialogue belongs to another peer.
    pub async fn save_state<T: Serialize>(
        &self,
        dialogue: B256,
        peer: Address,
        state: &T,
        closed: bool,
    ) -> Result<()> {
        self.check_owner(dialogue, peer)?;
        let state = serde_json::to_value(state).map_err(|e| Error::Corrupt {
            what: format!("state of dialogue {dialogue}"),
            reason: e.to_string(),
        })?;
        let record = DialogueRecord {
            peer,
            updated_ms: self.core.clock.unix_ms(),
            closed,
            state,
        };
        self.core.store.save_dialogue(dialogue, &record).await
    }

    /// Writes the states of several dialogues in one atomic batch: all or none, visible
    /// at once to [`Context::state`], and on disk once [`Context::flush_states`] returns
    /// (a crash before that may lose all of them, never some). Write under a lock of
    /// your own when the new states are computed from the old ones, and flush after
    /// releasing it, so that concurrent writers share one disk flush. Do not act on the
    /// states (send, pay, deliver) before the flush.
    ///
    /// # Errors
    /// As [`Context::save_state`], for the first update that fails; nothing is written
    /// then.
    pub fn write_states(&self, updates: &[StateUpdate]) -> Result<()> {
        let now = self.core.clock.unix_ms();
        let mut records = Vec::with_capacity(updates.len());
        for u in updates {
            self.check_owner(u.dialogue, u.peer)?;
            records.push((
                u.dialogue,
                DialogueRecord {
                    peer: u.peer,
                    updated_ms: now,
                    closed: u.closed,
                    state: u.state.clone(),
                },
            ));
        }
        self.core.store.write_dialogues(&records)
    }

    /// Waits until everything written so far (by [`Context::write_states`] too) is on
    /// disk; concurrent callers share one flush.
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Flush`].
    pub async fn flush_states(&self) -> Result<()> {
        self.core.store.flush().await
    }

    /// The saved state of `dialogue`. While handling a message, only the state of a
    /// dialogue with that message's sender is visible.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Corrupt`] when it is not a `T`;
    /// [`Error::ForeignDialogue`] when it belongs to a peer other than the sender of
    /// the message being handled.
    pub fn state<T: DeserializeOwned>(&self, dialogue: B256) -> Result<Option<T>> {
        let Some(record) = self.core.store.dialogue(dialogue)? else {
            return Ok(None);
        };
        if let Some(sender) = self.sender() {
            if record.peer != sender {
                return Err(Error::ForeignDialogue(Box::new(ForeignDialogue {
                    dialogue,
                    owner: record.peer,
                    peer: sender,
                })));
            }
        }
        serde_json::from_value(record.state)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                what: format!("state of dialogue {dialogue}"),
                reason: e.to_string(),
            })
    }

    /// This agent's dialogues that are not closed (to resume after a restart).
    ///
    /// # Errors
    /// [`Error::Store`] or [`Error::Corrupt`].
    pub fn open_dialogues(&self) -> Result<Vec<(B256, DialogueRecord)>> {
        self.core.store.open_dialogues()
    }

    /// Peers offering `kind` at most at `max_price`, from the agent's directory;
    /// their endpoints become routes, which win over routes learned from traffic.
    ///
    /// # Errors
    /// [`Error::Host`] when the agent has no directory, or the directory's error.
    pub async fn find_peers(&self, kind: &str, max_price: Option<Amount>) -> Result<Vec<Peer>> {
        let dir =
            self.core.directory.as_ref().ok_or_else(|| {
                Error::Host(format!("agent {} has no directory", self.core.address))
            })?;
        let peers = dir.find(kind, max_price).await?;
        // A2A agents take no envelopes: no route to them.
        for p in peers.iter().filter(|p| !p.is_a2a()) {
            if let Some(url) = &p.endpoint {
                if self.core.locals.get(&p.address).is_none() {
                    self.core.router.set_endpoint(p.address, url.clone());
                }
            }
        }
        Ok(peers)
    }

    /// Signs a payment through the agent's spending policy: the only way an agent
    /// pays. Idempotent per payment id.
    ///
    /// # Errors
    /// [`Error::Host`] when the agent has no policy; [`Error::Wallet`] when the
    /// policy refuses.
    pub async fn pay(&self, payment: Payment) -> Result<SignedPayment> {
        let policy = self.policy()?;
        // The policy writes to disk and signs: keep it off the actor threads.
        let signed = tokio::task::spawn_blocking(move || policy.authorize(&payment))
            .await
            .map_err(|e| Error::Host(format!("payment task: {e}")))?;
        self.core.count_payment(&signed);
        signed.map_err(Error::Wallet)
    }

    /// As [`Context::pay`], but returns before the policy's record is on disk (see
    /// `SpendingPolicy::authorize_unflushed`): send the signature to nobody before
    /// [`Context::flush_payments`] returns. For payments that must be signed in order
    /// under a lock of the caller's (vouchers of one channel), with the disk flush
    /// after the lock.
    ///
    /// Runs on the caller's thread: it signs and writes to the policy's store in
    /// memory, and waits for no disk (a hand-off to a blocking thread would cost more
    /// than the work).
    ///
    /// # Errors
    /// As [`Context::pay`].
    pub async fn pay_unflushed(&self, payment: Payment) -> Result<SignedPayment> {
        let signed = self.policy()?.authorize_unflushed(&payment);
        self.core.count_payment(&signed);
        signed.map_err(Error::Wallet)
    }

    /// The limits of the agent's spending policy, if it has one: for sizing what to ask
    /// the policy for (a channel deposit within the per-deal limit, say). The policy
    /// enforces them whatever the caller makes of them.
    pub fn spending_limits(&self) -> Option<wallets::Limits> {
        self.core.policy.as_ref().map(|p| p.limits().clone())
    }

    /// Waits until every payment the policy signed is on disk.
    ///
    /// # Errors
    /// [`Error::Host`] when the agent has no policy; [`Error::Wallet`] on I/O failure.
    pub async fn flush_payments(&self) -> Result<()> {
        let policy = self.policy()?;
        tokio::task::spawn_blocking(move || policy.flush())
            .await
            .map_err(|e| Error::Host(format!("payment task: {e}")))?
            .map_err(Error::Wallet)
    }

    fn policy(&self) -> Result<Arc<SpendingPolicy>> {
        self.core.policy.clone().ok_or_else(|| {
            Error::Host(format!(
                "agent {} has no spending policy",
                self.core.address
            ))
        })
    }
}

fn typed_payload<R: Request>(route: &Route, request: R) -> Result<Payload> {
    match route {
        Route::Local(_) => Ok(Payload::local(request)),
        Route::Remote(_) => serde_json::to_value(request)
            .map(Payload::Json)
            .map_err(|e| Error::Payload {
                kind: R::KIND.to_owned(),
                reason: e.to_string(),
            }),
    }
}

pub(crate) type AgentAddr = Addr<AgentActor>;

pub(crate) fn stats_of(core: &AgentCore) -> AgentStats {
    AgentStats {
        handled: core.counters.handled.load(Ordering::Relaxed),
        rejected: core.counters.rejected.load(Ordering::Relaxed),
        restarts: core.counters.restarts.load(Ordering::Relaxed),
        panics: core.counters.panics.load(Ordering::Relaxed),
    }
}

impl Message for RefusedAsk {
    type Result = RefusalOutcome;
}

impl Handler<RefusedAsk> for AgentActor {
    type Result = MessageResult<RefusedAsk>;

    fn handle(&mut self, m: RefusedAsk, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.core.refused(m.refusal, &m.signature, m.via))
    }
}

/// A running agent: its address, a [`Context`] to act as it, its counters.
#[derive(Clone)]
pub struct AgentHandle {
    pub(crate) core: Arc<AgentCore>,
    pub(crate) addr: AgentAddr,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("address", &self.core.address)
            .field("name", &self.core.name)
            .finish()
    }
}

impl AgentHandle {
    /// The agent's address.
    pub fn address(&self) -> Address {
        self.core.address
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// A context to act as this agent from outside its skills.
    pub fn context(&self) -> Context {
        Context::root(self.core.clone())
    }

    /// The agent's counters.
    pub fn stats(&self) -> AgentStats {
        stats_of(&self.core)
    }

    /// Forgets the persisted replay records of messages that have expired by the
    /// host's clock, as the agent does by itself every minute; returns how many
    /// went. Such records protect nothing: the expiry check refuses those
    /// messages anyway.
    ///
    /// # Errors
    /// [`Error::Stopped`] when the agent no longer runs; [`Error::Store`].
    pub async fn prune_replay(&self) -> Result<usize> {
        self.addr
            .send(PruneReplay)
            .await
            .map_err(|_| Error::Stopped(self.core.address))?
    }

    /// Rejections by reason (see [`Rejection::label`]).
    ///
    /// # Errors
    /// [`Error::Stopped`] when the agent no longer runs.
    pub async fn rejections(&self) -> Result<HashMap<&'static str, u64>> {
        self.addr
            .send(Rejections)
            .await
            .map_err(|_| Error::Stopped(self.core.address))
    }

    /// Runs the skill of `kind` on `request` (its JSON form) for a caller outside the
    /// Agora network, such as a protocol gateway at the host's HTTP edge: no envelope,
    /// no sender, no dialogue (`ctx.sender()` is `None`, so a skill that acts only for
    /// known principals refuses). The answer is the skill's response as JSON.
    ///
    /// # Errors
    /// `unknown_skill` when the agent has no such skill; the skill's own error
    /// (`bad_request` for a request that is not its type); `internal` if it panicked.
    pub async fn invoke(
        &self,
        kind: &str,
        request: serde_json::Value,
    ) -> std::result::Result<serde_json::Value, SkillError> {
        let handler = self.core.handlers.get(kind).cloned().ok_or_else(|| {
            SkillError::new(
                "unknown_skill",
                format!("agent {} has no skill {kind:?}", self.core.address),
            )
        })?;
        let start = Instant::now();
        let call = handler.call(self.context(), Payload::Json(request), true);
        let result = AssertUnwindSafe(call).catch_unwind().await;
        self.core.time_skill(kind, start);
        match result {
            Ok(Ok(Payload::Json(v))) => Ok(v),
            Ok(Ok(Payload::Local(_))) => Err(SkillError::internal(format!(
                "skill {kind} answered a value that is not JSON"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SkillError::internal(format!("skill {kind} panicked"))),
        }
    }

    /// The skills' kinds and their request/response schemas.
    pub fn skills(&self) -> Vec<(&'static str, serde_json::Value, serde_json::Value)> {
        let mut v: Vec<_> = self
            .core
            .handlers
            .values()
            .map(|h| {
                let (req, resp) = h.schemas();
                (h.kind(), req, resp)
            })
            .collect();
        v.sort_by_key(|(k, _, _)| *k);
        v
    }
}
