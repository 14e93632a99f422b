//! A host: one process's actix system with its agents, its store, its router and
//! its port, which serves WebSocket envelope traffic and HTTP
//! ([`http`](crate::http)).
//!
//! Library first: [`Host::spawn`] starts everything on threads of its own and
//! returns a handle that reports the bound address (port 0 picks one) and shuts the
//! host down on drop, so tests start hosts per test without fighting over ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Arbiter, ArbiterHandle, Supervisor, System};
use hyper::body::{Body, Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tower::{BoxError, Service};
use wallets::Address;

use crate::agent::{
    AgentActor, AgentCore, AgentHandle, AgentSpec, HostShared, LocalAgent, LocalAgents,
};
use crate::clock::Clock;
use crate::envelope::DEFAULT_MAX_TTL;
use crate::error::{Error, Result};
use crate::http::{BuiltIn, HttpService, Routes};
use crate::metrics::{AgentSnapshot, Metrics, PolicySnapshot, Snapshot, CONTENT_TYPE};
use crate::port::Port;
use crate::router::Router;
use crate::store::HostStore;
use crate::tls::{ClientTls, ServerTls};
use crate::transport::{EdgeLimits, EdgeStats, Transport};

/// How to run a host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// A name for logs and cards.
    pub name: String,
    /// The chain the host's agents pay on; envelopes for other chains are refused.
    pub chain_id: u64,
    /// Directory of the host's store (sled).
    pub store: PathBuf,
    /// Where to accept connections (WebSocket envelope traffic and HTTP, see
    /// [`http`](crate::http)); `None` for a host that only dials.
    pub listen: Option<SocketAddr>,
    /// Threads that run agents and connections.
    pub workers: usize,
    /// Limits at the network edge.
    pub edge: EdgeLimits,
    /// Serve `wss://` with this certificate instead of `ws://`.
    pub tls: Option<ServerTls>,
    /// Roots trusted when dialing `wss://` endpoints.
    pub client_tls: ClientTls,
    /// The furthest in the future an envelope may expire, counted from its
    /// arrival: later ones are refused
    /// ([`Rejection::ExpiryTooFar`](crate::envelope::Rejection::ExpiryTooFar)), so
    /// that no replay record has to be kept longer than this. The host's own
    /// agents' message TTLs are capped to it. Default [`DEFAULT_MAX_TTL`] (10
    /// minutes).
    pub max_ttl: Duration,
    /// Routes learned from traffic (remote agents reached over the connection
    /// their envelopes arrived on) kept at most; beyond it the least recently
    /// learned or used is forgotten. Default
    /// [`HostConfig::DEFAULT_MAX_LEARNED_ROUTES`].
    pub max_learned_routes: usize,
    /// Where the host and its agents read the wall-clock time (expiries, the
    /// maximum TTL, replay-record pruning, state timestamps, and
    /// [`Context::clock`](crate::Context::clock) for skills). Default: the system
    /// clock; tests pass a [`ManualClock`](crate::clock::ManualClock). Waits
    /// (ask timeouts, backoff, rate limits) run on tokio's timers regardless.
    pub clock: Clock,
    /// HTTP services to mount on the host's port, each under its path prefix (see
    /// [`HostConfig::mount_http`]).
    pub http_mounts: Vec<(String, HttpService)>,
}

impl HostConfig {
    /// The default of [`HostConfig::max_learned_routes`].
    pub const DEFAULT_MAX_LEARNED_ROUTES: usize = 4_096;

    /// A host on `chain_id` storing its state in `store`, listening nowhere, with a
    /// worker per CPU.
    pub fn new(chain_id: u64, store: impl Into<PathBuf>) -> Self {
        Self {
            name: "agora".into(),
            chain_id,
            store: store.into(),
            listen: None,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            edge: EdgeLimits::default(),
            tls: None,
            client_tls: ClientTls::default(),
            max_ttl: DEFAULT_MAX_TTL,
            max_learned_routes: Self::DEFAULT_MAX_LEARNED_ROUTES,
            clock: Clock::system(),
            http_mounts: Vec::new(),
        }
    }

    /// Mounts an HTTP service (an `axum::Router`, any `tower::Service` of
    /// `http::Request<Incoming>`) under `prefix` on the host's port; see
    /// [`Host::mount_http`]. A bad prefix fails [`Host::spawn`].
    #[must_use]
    pub fn mount_http<S, B>(mut self, prefix: impl Into<String>, service: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.http_mounts
            .push((prefix.into(), HttpService::new(service)));
        self
    }

    /// Reads the wall-clock time from `clock` (see [`HostConfig::clock`]): a
    /// [`ManualClock`](crate::clock::ManualClock) in tests.
    #[must_use]
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// Serves TLS (`wss://`) with `tls`.
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Trusts these roots when dialing `wss://` endpoints.
    #[must_use]
    pub fn client_tls(mut self, tls: ClientTls) -> Self {
        self.client_tls = tls;
        self
    }

    /// Listens on `addr` (port 0 picks a free port).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Sets the host's name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the number of worker threads.
    #[must_use]
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Sets the edge limits.
    #[must_use]
    pub fn edge(mut self, edge: EdgeLimits) -> Self {
        self.edge = edge;
        self
    }

    /// Sets the maximum TTL (see [`HostConfig::max_ttl`]).
    #[must_use]
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// Sets the bound of the learned routes (see
    /// [`HostConfig::max_learned_routes`]; at least 1).
    #[must_use]
    pub fn max_learned_routes(mut self, n: usize) -> Self {
        self.max_learned_routes = n.max(1);
        self
    }
}

struct HostInner {
    name: String,
    /// What its agents share: chain, maximum TTL, clock, local agents, router.
    shared: HostShared,
    transport: Arc<Transport>,
    /// The HTTP routes of the host's port.
    routes: Arc<Routes>,
    store: HostStore,
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    local_addr: Option<SocketAddr>,
    scheme: &'static str,
    agents: Mutex<HashMap<Address, AgentHandle>>,
}

/// A running host. Dropping it stops its agents and connections.
pub struct Host {
    inner: Arc<HostInner>,
    system: System,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.inner.name)
            .field("chain_id", &self.inner.shared.chain_id)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Starts a host.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be opened, [`Error::Host`] when the
    /// listen address cannot be bound or the threads cannot start,
    /// [`Error::Mount`] when one of [`HostConfig::http_mounts`] cannot be mounted.
    pub fn spawn(config: HostConfig) -> Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let routes = Arc::new(Routes::new(config.edge.timeout, metrics.clone()));
        for (prefix, service) in config.http_mounts {
            routes.mount(&prefix, service)?;
        }
        let store = HostStore::open(&config.store)?;
        let listener = match config.listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|e| Error::Host(format!("cannot listen on {addr}: {e}")))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::Host(format!("listener on {addr}: {e}")))?;
                Some(l)
            }
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let workers = config.workers.max(1);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("{}-host", config.name))
            .spawn(move || {
                let runner = System::new();
                let arbiters: Vec<Arbiter> =
                    runner.block_on(async { (0..workers).map(|_| Arbiter::new()).collect() });
                let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
                let _ = tx.send((System::current(), handles));
                if let Err(e) = runner.run() {
                    tracing::error!(target: "agent::host", error = %e, "host system failed");
                }
                for a in arbiters {
                    a.stop();
                    a.join().ok();
                }
            })
            .map_err(|e| Error::Host(format!("cannot start the host thread: {e}")))?;
        let (system, arbiters) = rx
            .recv()
            .map_err(|_| Error::Host("the host thread died while starting".into()))?;
        let scheme = if config.tls.is_some() { "wss" } else { "ws" };
        let transport = Arc::new(Transport::new(
            config.edge,
            config.chain_id,
            config.clock.clone(),
            config.max_ttl,
            arbiters.clone(),
            config.tls,
            config.client_tls,
            routes.clone(),
        ));
        let router = Arc::new(Router::new(transport.clone(), config.max_learned_routes));
        let locals = Arc::new(LocalAgents::default());
        let port: Arc<dyn Port> = locals.clone();
        transport.set_port(Arc::downgrade(&port));
        let inner = Arc::new(HostInner {
            name: config.name,
            shared: HostShared {
                chain_id: config.chain_id,
                max_ttl: config.max_ttl,
                clock: config.clock,
                locals,
                router,
                metrics,
            },
            transport: transport.clone(),
            routes,
            store,
            arbiters,
            next: AtomicUsize::new(0),
            local_addr,
            scheme,
            agents: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        inner
            .routes
            .set_answer(Box::new(move |route| http_answer(&weak, route)));
        if let (Some(listener), Some(arbiter)) = (listener, inner.arbiters.first()) {
            let t = transport.clone();
            arbiter.spawn(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => t.serve(l).await,
                    Err(e) => tracing::error!(target: "agent::host", error = %e, "listener failed"),
                }
            });
        }
        tracing::info!(target: "agent::host", name = %inner.name, chain_id = inner.shared.chain_id, listen = ?local_addr, workers, "host started");
        Ok(Self {
            inner,
            system,
            thread: Some(thread),
        })
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// The WebSocket endpoint peers dial (`ws://ip:port`, or `wss://ip:port` with
    /// TLS; a certificate usually names a host, so peers dial that name instead).
    pub fn url(&self) -> Option<String> {
        let scheme = self.inner.scheme;
        self.inner.local_addr.map(|a| format!("{scheme}://{a}"))
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.inner.shared.chain_id
    }

    /// The clock the host and its agents read the wall-clock time from.
    pub fn clock(&self) -> &Clock {
        &self.inner.shared.clock
    }

    /// Starts an agent on this host, supervised: a skill panic restarts it from
    /// its store.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when an agent with the same wallet already runs here.
    pub fn spawn_agent(&self, spec: AgentSpec) -> Result<AgentHandle> {
        let address = spec.wallet.address();
        let mut agents = self
            .inner
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if agents.contains_key(&address) {
            return Err(Error::Duplicate(address));
        }
        let core = Arc::new(AgentCore::new(
            spec,
            &self.inner.shared,
            self.inner.store.agent(address),
        ));
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let arbiter = self
            .inner
            .arbiters
            .get(i % self.inner.arbiters.len())
            .ok_or_else(|| Error::Host("no worker".into()))?;
        let c = core.clone();
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| AgentActor::new(c));
        self.inner.shared.locals.add(
            address,
            LocalAgent {
                addr: addr.clone(),
                mailbox: core.mailbox.clone(),
                wallet: core.wallet.clone(),
                pending: core.pending.clone(),
            },
        )?;
        let handle = AgentHandle { core, addr };
        agents.insert(address, handle.clone());
        Ok(handle)
    }

    /// Stops an agent: it leaves the routing table and its actor ends once the
    /// last handle is dropped.
    pub fn stop_agent(&self, address: &Address) -> bool {
        self.inner.shared.locals.remove(address);
        self.inner
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(address)
            .is_some()
    }

    /// The handle of a running agent.
    pub fn agent(&self, address: &Address) -> Option<AgentHandle> {
        self.inner
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .cloned()
    }

    /// Tells the host where a remote agent listens (`ws://host:port`). A configured
    /// endpoint wins over any route learned from traffic: messages to `address`
    /// always go there.
    pub fn add_peer(&self, address: Address, url: impl Into<String>) {
        self.inner.shared.router.set_endpoint(address, url.into());
    }

    /// Counters of the network edge.
    pub fn edge_stats(&self) -> EdgeStats {
        edge_stats(&self.inner)
    }

    /// Mounts an HTTP service under `prefix` on the host's port: requests for
    /// `prefix` and the paths below it (a trailing `/` of `prefix` is dropped) go to
    /// `service`, unchanged, full path included, with a
    /// [`RemoteAddr`](crate::http::RemoteAddr) extension. Any
    /// `tower::Service<http::Request<Incoming>>` with `Send` futures mounts, an
    /// `axum::Router` among them; the longest matching prefix wins. See
    /// [`http`](crate::http) for what the port serves and the limits that apply.
    ///
    /// # Errors
    /// [`Error::Mount`] when `prefix` does not start with `/`, is `/` alone, holds
    /// anything but visible ASCII or a `?` or `#`, is a WebSocket path (`/ws…`), is
    /// one of the host's own routes (`/health`, `/metrics`, `/metrics.json`,
    /// `/cards`, `/card`) or
    /// below one, or has a service
    /// already.
    pub fn mount_http<S, B>(&self, prefix: &str, service: S) -> Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.inner.routes.mount(prefix, HttpService::new(service))
    }

    /// Adds metrics to the host's Prometheus registry: they are served at
    /// `/metrics` beside the host's own (see [`metrics`](crate::metrics)). For
    /// what the host cannot see, deals by outcome for one; keep the metric handles
    /// (`Counter`, `Gauge`, `Family` clones share their values) and update them as
    /// things happen. Names must not clash with the host's own (`agora_…` as
    /// listed in [`metrics`](crate::metrics)).
    ///
    /// ```
    /// use agent_core::prometheus_client::metrics::counter::Counter;
    /// use agent_core::{Host, HostConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let host = Host::spawn(HostConfig::new(1337, dir.path()))?;
    /// let deals = Counter::<u64>::default();
    /// host.register_metrics(|registry| {
    ///     registry.register("agora_deals_closed", "Deals closed", deals.clone());
    /// });
    /// deals.inc();
    /// assert!(host.metrics_text().contains("agora_deals_closed_total 1\n"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn register_metrics(
        &self,
        register: impl FnOnce(&mut crate::prometheus_client::registry::Registry),
    ) {
        self.inner.shared.metrics.register(register);
    }

    /// The host's metrics in the Prometheus text format, as `/metrics` serves
    /// them.
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.inner)
    }

    /// The agent cards of this host (ERC-8004 registration files).
    pub fn cards(&self) -> Vec<Value> {
        cards(&self.inner)
    }

    /// Stops the host and waits for its threads; the mounted HTTP services are dropped.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.inner.routes.unmount_all();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The transport's counters with the router's route counts.
fn edge_stats(inner: &HostInner) -> EdgeStats {
    let routes = inner.shared.router.route_stats();
    EdgeStats {
        learned_routes: routes.learned,
        routes_evicted: routes.evicted,
        ..inner.transport.stats()
    }
}

/// An agent's spending in its policy's rolling day and its limits; `None` without a
/// policy, or when the ledger cannot be read (logged).
fn policy_snapshot(a: &AgentHandle) -> Option<PolicySnapshot> {
    let p = a.core.policy.as_ref()?;
    let (spent, _) = p
        .spent(None)
        .map_err(|e| {
            tracing::warn!(target: "agent::http", agent = %a.address(), error = %e, "spending not read for the metrics")
        })
        .ok()?;
    Some(PolicySnapshot {
        spent_daily: spent.base_units(),
        daily: p.limits().daily.map(|d| d.base_units()),
        per_deal: p.limits().per_deal.map(|d| d.base_units()),
    })
}

/// The Prometheus exposition of the host: the registry's series and a snapshot of
/// the counters the host keeps.
fn metrics_text(inner: &HostInner) -> String {
    let agents: Vec<AgentSnapshot> = {
        let agents = inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<&AgentHandle> = agents.values().collect();
        list.sort_by_key(|a| a.address());
        list.into_iter()
            .map(|a| AgentSnapshot {
                address: a.address().to_string(),
                stats: a.stats(),
                sent: a.core.counters.sent.load(Ordering::Relaxed),
                policy: policy_snapshot(a),
            })
            .collect()
    };
    inner.shared.metrics.encode(Snapshot {
        edge: edge_stats(inner),
        agents,
    })
}

fn card(inner: &HostInner, agent: &AgentHandle) -> Value {
    let skills: Vec<Value> = agent
        .skills()
        .into_iter()
        .map(|(kind, request, response)| json!({"kind": kind, "request": request, "response": response}))
        .collect();
    let endpoint = inner.local_addr.map(|a| format!("{}://{a}", inner.scheme));
    json!({
        "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
        "name": agent.name(),
        "description": format!("Agora agent {} on host {}", agent.name(), inner.name),
        "services": [{"name": "agora-ws", "endpoint": endpoint, "version": "1"}],
        "skills": skills,
        "x402Support": false,
        "active": true,
        "registrations": [{"agentAddress": agent.address().to_string(), "chainId": inner.shared.chain_id}],
    })
}

fn cards(inner: &HostInner) -> Vec<Value> {
    let agents = inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
    let mut list: Vec<&AgentHandle> = agents.values().collect();
    list.sort_by_key(|a| a.address());
    list.into_iter().map(|a| card(inner, a)).collect()
}

/// The host's answer to a `GET` of one of its routes: content type and body, or
/// `None` for a 404.
fn http_answer(inner: &Weak<HostInner>, route: &BuiltIn) -> Option<(&'static str, String)> {
    let inner = inner.upgrade()?;
    let json_type = "application/json";
    match route {
        BuiltIn::Health => Some(("text/plain", "ok\n".into())),
        BuiltIn::Metrics => Some((CONTENT_TYPE, metrics_text(&inner))),
        BuiltIn::MetricsJson => {
            let agents = inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
            let per_agent: serde_json::Map<String, Value> = agents
                .values()
                .map(|a| (a.address().to_string(), json!(a.stats())))
                .collect();
            // Base units as decimal strings: they may exceed what JSON numbers hold.
            let policies: serde_json::Map<String, Value> = agents
                .values()
                .filter_map(|a| {
                    let p = policy_snapshot(a)?;
                    let units = |v: Option<u128>| v.map(|v| v.to_string());
                    Some((
                        a.address().to_string(),
                        json!({
                            "spentDaily": p.spent_daily.to_string(),
                            "daily": units(p.daily),
                            "perDeal": units(p.per_deal),
                        }),
                    ))
                })
                .collect();
            let body =
                json!({"edge": edge_stats(&inner), "agents": per_agent, "policies": policies});
            Some((json_type, body.to_string()))
        }
        BuiltIn::Cards => Some((json_type, Value::Array(cards(&inner)).to_string())),
        BuiltIn::Card(address) => {
            let wanted: Address = address.parse().ok()?;
            let agents = inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
            let agent = agents.get(&wanted)?;
            Some((json_type, card(&inner, agent).to_string()))
        }
    }
}
