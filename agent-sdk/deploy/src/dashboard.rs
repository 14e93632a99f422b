//! The operator's dashboard of a running deployment: what `agora up` serves on
//! `--dashboard` (loopback by default).
//!
//! One page, its script and its style are compiled into the binary (no Node, no CDN:
//! it works offline). The page opens `/events`, a stream of Server-Sent Events: a
//! `snapshot` of everything first, then each change as it happens, so deals appear
//! without a reload. `/api/state` answers the same snapshot as JSON.
//!
//! What it shows, and where it comes from:
//! - **agents**: status, pid, starts, last exit, endpoint, skills, prices, model, from
//!   the deployment file and the supervisor's events ([`Dashboard::agent_event`]);
//! - **money**: each agent's stablecoin and gas balances, read from the chain, and its
//!   spending against its policy's limits, read from its host's `/metrics.json`;
//! - **deals**: every journal in the state directory, followed as it grows; entries are
//!   grouped into deals (by dialogue, channel order or x402 sale) into a timeline:
//!   call for proposals, proposals, counters, agreement, payment with its transaction,
//!   delivery, receipt;
//! - **history**: revenue and spend over time, drawn by the page from the deals;
//! - **journals**: the audit of all journals against the chain
//!   ([`negotiation::audit`]), re-run when they change;
//! - **registry**: who sells what, at what price, with what reputation, from a
//!   discovery cache of the `AgentRegistry`;
//! - **chain**: the node, its chain id and latest block.
//!
//! The dashboard only reads: it holds no key and moves no money.
//!
//! # Access
//! On a loopback address it answers only requests whose `Host` is that loopback
//! address (so a web page cannot reach it through DNS rebinding). On any other address
//! it needs a token ([`TOKEN_ENV`], at least [`MIN_TOKEN_LEN`] characters): open
//! `/?token=…` once, and the page keeps it in an `HttpOnly` cookie; programs send
//! `Authorization: Bearer …`.
//!
//! Journal data is shown as text only: the page never inserts it as HTML, and its
//! content security policy allows no inline script.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use negotiation::audit::{self, ChainCheck};
use registry::chain::{self, Addresses, Deployment};
use registry::discovery::Discovery;
use serde::Serialize;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use wallets::journal::JournalEntry;
use wallets::{Address, Amount, Wallet};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::layout::{agent_dir, UpState};
use crate::{Error, Result, SupervisorEvent};

/// The environment variable holding the token a dashboard off loopback requires.
pub const TOKEN_ENV: &str = "AGORA_DASHBOARD_TOKEN";

/// The token in [`TOKEN_ENV`], if it is set.
pub fn token_from_env() -> Option<Zeroizing<String>> {
    std::env::var(TOKEN_ENV).ok().map(Zeroizing::new)
}

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Deals kept (the most recently changed); older ones leave the page, not the journals.
pub const MAX_DEALS: usize = 1000;

const COOKIE: &str = "agora_dashboard";
const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// How to serve a dashboard.
pub struct DashboardOptions {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The token required off loopback (see the module's documentation).
    pub token: Option<Zeroizing<String>>,
    /// Each agent's journal, by the agent's name ([`deployment_journals`] for a
    /// deployment's state directory).
    pub journals: Vec<(String, PathBuf)>,
    /// A directory of the dashboard's own (its registry cache).
    pub cache_dir: PathBuf,
    /// The deployment.
    pub config: Config,
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The deployment's contracts.
    pub addresses: Addresses,
    /// How often journals, balances and the registry are read again.
    pub refresh: Duration,
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("journals", &self.journals)
            .field("cache_dir", &self.cache_dir)
            .field("rpc_url", &self.rpc_url)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// A dashboard being served; dropping it stops it.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    view: Mutex<View>,
    updates: broadcast::Sender<Update>,
    token: Option<Zeroizing<String>>,
    /// `Host` values accepted on loopback; empty when a token guards the dashboard.
    hosts: Vec<String>,
}

/// Everything the page shows.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct View {
    agents: BTreeMap<String, AgentView>,
    chain: ChainView,
    deals: BTreeMap<String, DealView>,
    journals: JournalsView,
    registry: Vec<Listing>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct AgentView {
    name: String,
    address: Option<Address>,
    status: String,
    pid: Option<u32>,
    starts: u32,
    last_exit: Option<String>,
    endpoint: Option<String>,
    skills: Vec<String>,
    services: Vec<ServiceView>,
    model: Option<String>,
    oracle: bool,
    /// Stablecoin held, e.g. "12.5 USDC".
    balance: Option<String>,
    /// Gas held, e.g. "99.9981 ETH".
    gas: Option<String>,
    /// Spending in the policy's rolling day and its limits.
    policy: Option<PolicyView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ServiceView {
    skill: String,
    price: String,
    unit: String,
}

impl ServiceView {
    fn new(skill: &str, price: Amount, unit: &str) -> Self {
        Self {
            skill: skill.to_owned(),
            price: price.to_string(),
            unit: unit.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    spent_daily: String,
    daily: Option<String>,
    per_deal: Option<String>,
    /// Spent as a share of the daily limit, 0–100.
    used_percent: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ChainView {
    rpc_url: String,
    chain_id: u64,
    block: Option<u64>,
    error: Option<String>,
    contracts: BTreeMap<String, Address>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct DealView {
    id: String,
    skill: Option<String>,
    buyer: Option<Address>,
    seller: Option<Address>,
    /// Base units.
    price: Option<String>,
    /// The price for people, e.g. "0.95 USDC".
    price_text: Option<String>,
    mode: Option<String>,
    stage: String,
    started: u64,
    updated: u64,
    /// When it was first paid (Unix ms).
    paid_at: Option<u64>,
    transactions: Vec<String>,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Step {
    time: u64,
    agent: String,
    kind: String,
    entry: u64,
    transactions: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JournalsView {
    /// Unix ms of the last audit.
    checked_at: Option<u64>,
    clean: Option<bool>,
    error: Option<String>,
    chain_note: String,
    journals: Vec<JournalRow>,
    discrepancies: Vec<DiscrepancyRow>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JournalRow {
    agent: String,
    entries: u64,
    verified: bool,
    deals: u64,
    matched: u64,
    torn_tail_bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct DiscrepancyRow {
    agent: String,
    entry: Option<u64>,
    reason: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Listing {
    address: Address,
    endpoint: String,
    services: Vec<ServiceView>,
    /// The registry's reputation score, 0–100.
    score: f64,
    feedback: u64,
    /// Base units staked.
    stake: String,
    suspended: bool,
}

/// One change, as an SSE event of that name.
#[derive(Clone, Debug)]
enum Update {
    Agent(Box<AgentView>),
    Chain(ChainView),
    Deal(Box<DealView>),
    Journals(JournalsView),
    Registry(Vec<Listing>),
}

impl Update {
    fn event(&self) -> Event {
        let (name, data) = match self {
            Self::Agent(a) => ("agent", serde_json::to_string(a)),
            Self::Chain(c) => ("chain", serde_json::to_string(c)),
            Self::Deal(d) => ("deal", serde_json::to_string(d)),
            Self::Journals(j) => ("journals", serde_json::to_string(j)),
            Self::Registry(r) => ("registry", serde_json::to_string(r)),
        };
        Event::default()
            .event(name)
            .data(data.unwrap_or_else(|_| "null".into()))
    }
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, update: Update) {
        // No page open: nobody to tell.
        let _ = self.updates.send(update);
    }

    /// Changes agent `name` with `f` and sends it when it changed.
    fn agent(&self, name: &str, f: impl FnOnce(&mut AgentView)) {
        let changed = {
            let mut view = self.view();
            let Some(agent) = view.agents.get_mut(name) else {
                return;
            };
            let before = agent.clone();
            f(agent);
            (*agent != before).then(|| agent.clone())
        };
        if let Some(agent) = changed {
            self.send(Update::Agent(Box::new(agent)));
        }
    }

    /// Changes the chain's status with `f` and sends it when it changed.
    fn chain(&self, f: impl FnOnce(&mut ChainView)) {
        let changed = {
            let mut view = self.view();
            let before = view.chain.clone();
            f(&mut view.chain);
            (view.chain != before).then(|| view.chain.clone())
        };
        if let Some(chain) = changed {
            self.send(Update::Chain(chain));
        }
    }
}

impl Dashboard {
    /// Binds `options.listen` and starts serving and following the deployment.
    ///
    /// # Errors
    /// [`Error::Dashboard`] when the address is not loopback and no token of at least
    /// [`MIN_TOKEN_LEN`] characters is given, or the address cannot be bound.
    pub async fn start(options: DashboardOptions) -> Result<Self> {
        let loopback = options.listen.ip().is_loopback();
        let token = options.token.filter(|t| !t.is_empty());
        match &token {
            Some(t) if t.len() < MIN_TOKEN_LEN => {
                return Err(Error::Dashboard(format!(
                    "the token in ${TOKEN_ENV} is {} characters long; use at least {MIN_TOKEN_LEN}",
                    t.len()
                )))
            }
            None if !loopback => {
                return Err(Error::Dashboard(format!(
                    "{} is not a loopback address: set ${TOKEN_ENV} to a token of at least \
                     {MIN_TOKEN_LEN} characters, or serve the dashboard on 127.0.0.1",
                    options.listen
                )))
            }
            _ => {}
        }
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::Dashboard(format!("cannot listen on {}: {e}", options.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Dashboard(format!("no local address: {e}")))?;
        let hosts = if token.is_some() {
            Vec::new()
        } else {
            let port = addr.port();
            vec![
                format!("{addr}"),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]
        };
        let view = View {
            agents: options
                .config
                .agents
                .iter()
                .map(|a| (a.name.clone(), agent_view(a)))
                .collect(),
            chain: ChainView {
                rpc_url: options.rpc_url.clone(),
                chain_id: options.addresses.chain_id,
                contracts: contracts(&options.addresses),
                ..ChainView::default()
            },
            ..View::default()
        };
        let (updates, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            view: Mutex::new(view),
            updates,
            token,
            hosts,
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/app.js", get(script))
            .route("/style.css", get(style))
            .route("/events", get(events))
            .route("/api/state", get(state))
            .layer(middleware::from_fn_with_state(shared.clone(), guard))
            .with_state(shared.clone());
        let journals = Journals {
            paths: options.journals,
            books: Books::default(),
        };
        let tasks = vec![
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(target: "agora::dashboard", error = %e, "the dashboard stopped serving");
                }
            }),
            tokio::spawn(follow_journals(
                shared.clone(),
                journals,
                options.rpc_url.clone(),
                options.addresses,
                options.refresh,
            )),
            tokio::spawn(follow_chain(
                shared.clone(),
                options.rpc_url.clone(),
                options.addresses,
                options.refresh,
            )),
            tokio::spawn(follow_registry(
                shared.clone(),
                options.cache_dir.join("discovery"),
                options.rpc_url,
                options.addresses,
                options.refresh,
            )),
        ];
        tracing::info!(target: "agora::dashboard", %addr, token = shared.token.is_some(), "dashboard serving");
        Ok(Self {
            addr,
            shared,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL (without the token).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Records the agents' addresses and endpoints from `up.json`.
    pub fn up_state(&self, state: &UpState) {
        for (name, a) in &state.agents {
            self.shared.agent(name, |v| {
                v.address = Some(a.address);
                if a.endpoint.is_some() {
                    v.endpoint.clone_from(&a.endpoint);
                }
            });
        }
    }

    /// Records an agent's address and status when no supervisor runs it (the demo's
    /// agents, in this process).
    pub fn agent_status(&self, name: &str, address: Address, status: &str) {
        self.shared.agent(name, |v| {
            v.address = Some(address);
            status.clone_into(&mut v.status);
        });
    }

    /// Records what the supervisor saw of an agent.
    pub fn agent_event(&self, event: &SupervisorEvent) {
        match event {
            SupervisorEvent::Started { name, pid, start } => self.shared.agent(name, |v| {
                v.status = "starting".into();
                v.pid = Some(*pid);
                v.starts = *start;
            }),
            SupervisorEvent::SpawnFailed { name, error, .. } => self.shared.agent(name, |v| {
                v.status = "cannot start".into();
                v.pid = None;
                v.last_exit = Some(error.clone());
            }),
            SupervisorEvent::Ready {
                name,
                pid,
                url,
                address,
            } => self.shared.agent(name, |v| {
                v.status = "ready".into();
                v.pid = Some(*pid);
                v.endpoint = Some(url.clone());
                v.address = Some(*address);
            }),
            SupervisorEvent::Exited { name, status, .. } => self.shared.agent(name, |v| {
                v.status = "restarting".into();
                v.pid = None;
                v.last_exit = Some(status.clone());
            }),
            SupervisorEvent::Stopped { name, status, .. } => self.shared.agent(name, |v| {
                v.status = "stopped".into();
                v.pid = None;
                v.last_exit = Some(status.clone().unwrap_or_else(|| "killed".into()));
            }),
            SupervisorEvent::Output { .. } => {}
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn agent_view(a: &crate::config::AgentConfig) -> AgentView {
    AgentView {
        name: a.name.clone(),
        status: "not started".into(),
        skills: a.skills.iter().cloned().collect(),
        services: a
            .services
            .iter()
            .map(|s| ServiceView::new(&s.skill, s.price, &s.unit))
            .collect(),
        model: a.model.as_ref().map(|m| m.display().to_string()),
        oracle: a.oracle,
        ..AgentView::default()
    }
}

fn contracts(a: &Addresses) -> BTreeMap<String, Address> {
    [
        ("Stablecoin", a.stablecoin.0),
        ("AgentRegistry", a.registry.0),
        ("JobEscrow", a.escrow.0),
        ("PaymentChannel", a.channel.0),
        ("Reputation", a.reputation.0),
        ("IdentityRegistry", a.identity_registry.0),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_owned(), Address(e)))
    .collect()
}

/// Host check on loopback, token check elsewhere; security headers on every answer.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut response = if let Some(token) = &shared.token {
        if let Some(given) = query_token(request.uri()) {
            if same(given.as_bytes(), token.as_bytes()) {
                let cookie = format!("{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/");
                let mut r = (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, request.uri().path().to_owned())],
                )
                    .into_response();
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            } else {
                refuse(StatusCode::UNAUTHORIZED, "wrong dashboard token")
            }
        } else if presented(headers).is_some_and(|t| same(t.as_bytes(), token.as_bytes())) {
            next.run(request).await
        } else {
            refuse(
                StatusCode::UNAUTHORIZED,
                &format!("this dashboard needs its token: open /?token=... with the value of ${TOKEN_ENV}, or send Authorization: Bearer"),
            )
        }
    } else {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if shared.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            next.run(request).await
        } else {
            refuse(
                StatusCode::FORBIDDEN,
                &format!("the dashboard answers only requests to its loopback address, not to host {host:?}"),
            )
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

/// Constant-time comparison of a presented token with the real one.
fn same(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| v.to_owned())
    })
}

/// The token a request presents: `Authorization: Bearer`, else the cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_owned)
        })
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn state(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let view = shared.view().clone();
    axum::Json(view)
}

/// The snapshot, then every update; a page that falls behind gets a new snapshot.
async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl futures::Stream<Item = std::result::Result<Event, std::convert::Infallible>>> {
    let rx = shared.updates.subscribe();
    let stream =
        futures::stream::unfold((shared, rx, true), |(shared, mut rx, first)| async move {
            if first {
                return Some((Ok(snapshot(&shared)), (shared, rx, false)));
            }
            let event = match rx.recv().await {
                Ok(update) => update.event(),
                Err(broadcast::error::RecvError::Lagged(_)) => snapshot(&shared),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (shared, rx, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn snapshot(shared: &Shared) -> Event {
    let data = serde_json::to_string(&*shared.view()).unwrap_or_else(|_| "null".into());
    Event::default().event("snapshot").data(data)
}

/// The journals of a deployment's agents, by name: `agents/NAME/journal` in its
/// state directory.
pub fn deployment_journals(state_dir: &Path, config: &Config) -> Vec<(String, PathBuf)> {
    config
        .agents
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                agent_dir(state_dir, &a.name).join("journal"),
            )
        })
        .collect()
}

/// The journals of the deployment's agents and what was read of them.
struct Journals {
    paths: Vec<(String, PathBuf)>,
    books: Books,
}

impl Journals {
    /// Reads what each journal gained; returns whether any did.
    fn read(&mut self) -> bool {
        let mut grew = false;
        for (name, path) in &self.paths {
            grew |= self.books.read(name, path);
        }
        grew
    }
}

/// Deals put together from journal entries.
#[derive(Default)]
struct Books {
    /// Bytes of each journal read (complete lines only).
    offsets: HashMap<PathBuf, u64>,
    /// Agreement hash → the deal it belongs to.
    deal_of_agreement: HashMap<String, String>,
    deals: BTreeMap<String, DealView>,
    changed: BTreeSet<String>,
}

impl Books {
    /// Reads the lines `path` gained since the last call, as agent `agent`'s.
    fn read(&mut self, agent: &str, path: &Path) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let offset = self.offsets.get(path).copied().unwrap_or(0);
        let len = bytes.len() as u64;
        if len < offset {
            // A torn tail was cut away: read it all again (entries already seen are
            // recognised and not doubled).
            self.offsets.insert(path.to_owned(), 0);
            return self.read(agent, path);
        }
        let Some(new) = bytes.get(usize::try_from(offset).unwrap_or(usize::MAX)..) else {
            return false;
        };
        // Only complete lines; a line being written is read next time.
        let Some(end) = new.iter().rposition(|b| *b == b'\n') else {
            return false;
        };
        let mut any = false;
        for line in new.get(..end).unwrap_or_default().split(|b| *b == b'\n') {
            match serde_json::from_slice::<JournalEntry>(line) {
                Ok(entry) => {
                    self.take(agent, &entry);
                    any = true;
                }
                Err(e) => {
                    tracing::debug!(target: "agora::dashboard", journal = %path.display(), error = %e, "journal line not shown");
                }
            }
        }
        self.offsets
            .insert(path.to_owned(), offset + end as u64 + 1);
        any
    }

    /// Files `entry` of `agent`'s journal under its deal.
    fn take(&mut self, agent: &str, entry: &JournalEntry) {
        let body = &entry.body;
        let agreement = text_at(body, "agreementHash");
        let key = ["orderId", "saleId"]
            .iter()
            .find_map(|k| text_at(body, k))
            .or_else(|| {
                let dialogue = find_text(body, "dialogue", 0)?;
                if let Some(a) = &agreement {
                    self.deal_of_agreement.insert(a.clone(), dialogue.clone());
                }
                Some(dialogue)
            })
            .or_else(|| {
                let a = agreement?;
                Some(self.deal_of_agreement.get(&a).cloned().unwrap_or(a))
            })
            .unwrap_or_else(|| format!("{agent}#{}", entry.index));
        let deal = self.deals.entry(key.clone()).or_insert_with(|| DealView {
            id: key.clone(),
            started: entry.time,
            stage: String::new(),
            ..DealView::default()
        });
        if deal
            .steps
            .iter()
            .any(|s| s.agent == agent && s.entry == entry.index)
        {
            return;
        }
        let transactions = transactions(body);
        for t in &transactions {
            if !deal.transactions.contains(t) {
                deal.transactions.push(t.clone());
            }
        }
        let terms = find(body, "agreement", 0).unwrap_or(body);
        if let Some(price) = find_text(terms, "price", 0)
            .or_else(|| find_text(body, "maxPrice", 0))
            .and_then(|p| p.parse::<u128>().ok())
        {
            deal.price = Some(price.to_string());
            deal.price_text = Some(Amount::from_base_units(price).to_string());
        }
        let address = |v: Option<String>| v.and_then(|s| s.parse::<Address>().ok());
        if entry.kind.starts_with("x402_payment") {
            deal.seller = Some(entry.signer);
            deal.buyer = deal.buyer.or(address(find_text(body, "from", 0)));
        }
        deal.buyer = deal.buyer.or(address(find_text(terms, "buyer", 0)));
        deal.seller = deal.seller.or(address(find_text(terms, "seller", 0)));
        deal.skill = deal
            .skill
            .take()
            .or_else(|| find_text(terms, "kind", 0))
            .or_else(|| find_text(body, "skill", 0));
        deal.mode = deal.mode.take().or_else(|| find_text(terms, "mode", 0));
        if matches!(
            entry.kind.as_str(),
            "payment" | "x402_payment" | "x402_purchase"
        ) {
            deal.paid_at = deal.paid_at.or(Some(entry.time));
        }
        if stage_rank(&entry.kind) >= stage_rank(&deal.stage) {
            deal.stage.clone_from(&entry.kind);
        }
        deal.updated = deal.updated.max(entry.time);
        deal.steps.push(Step {
            time: entry.time,
            agent: agent.to_owned(),
            kind: entry.kind.clone(),
            entry: entry.index,
            transactions,
        });
        // Stable: entries of the same millisecond keep the order they were read in.
        deal.steps.sort_by_key(|s| s.time);
        self.changed.insert(key);
        if self.deals.len() > MAX_DEALS {
            if let Some(oldest) = self
                .deals
                .values()
                .min_by_key(|d| d.updated)
                .map(|d| d.id.clone())
            {
                self.deals.remove(&oldest);
                self.changed.remove(&oldest);
            }
        }
    }
}

/// How far a deal got; the ends of a deal rank above all.
fn stage_rank(kind: &str) -> u8 {
    match kind {
        "" => 0,
        "cfp" | "x402_purchase" => 1,
        "proposal" => 2,
        "counter" => 3,
        "acceptance" => 4,
        "funding" => 5,
        "payment" | "x402_payment" => 6,
        "delivery" | "x402_delivery" | "x402_answer" | "channel_settlement" => 7,
        "receipt" => 8,
        _ => 9,
    }
}

fn text_at(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

/// The first value under `key`, depth first, at most 6 levels down.
fn find<'a>(v: &'a Value, key: &str, depth: u8) -> Option<&'a Value> {
    if depth > 6 {
        return None;
    }
    match v {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|x| find(x, key, depth + 1))),
        Value::Array(items) => items.iter().find_map(|x| find(x, key, depth + 1)),
        _ => None,
    }
}

fn find_text(v: &Value, key: &str, depth: u8) -> Option<String> {
    find(v, key, depth)?.as_str().map(str::to_owned)
}

/// Every transaction hash in a body (`txHash`, an x402 answer's `transaction`).
fn transactions(body: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>, depth: u8) {
        if depth > 6 {
            return;
        }
        match v {
            Value::Object(map) => {
                for (k, x) in map {
                    match (k.as_str(), x) {
                        ("txHash" | "transaction", Value::String(s))
                            if s.len() == 66 && s.starts_with("0x") =>
                        {
                            if !out.contains(s) {
                                out.push(s.clone());
                            }
                        }
                        _ => walk(x, out, depth + 1),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out, depth + 1)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut out, 0);
    out
}

/// Follows the journals: new entries become deal updates at once; the audit runs
/// again when they changed, at most every five refreshes.
async fn follow_journals(
    shared: Arc<Shared>,
    mut journals: Journals,
    rpc_url: String,
    addresses: Addresses,
    refresh: Duration,
) {
    let check = ChainCheck::new(rpc_url, addresses);
    let mut dirty = true;
    let mut since_audit = u32::MAX;
    loop {
        let grew = journals.read();
        dirty |= grew;
        let changed: Vec<DealView> = {
            let books = &mut journals.books;
            let changed = std::mem::take(&mut books.changed);
            let deals: Vec<DealView> = changed
                .iter()
                .filter_map(|k| books.deals.get(k).cloned())
                .collect();
            if !changed.is_empty() {
                shared.view().deals.clone_from(&books.deals);
            }
            deals
        };
        for deal in changed {
            shared.send(Update::Deal(Box::new(deal)));
        }
        since_audit = since_audit.saturating_add(1);
        if dirty && since_audit >= 5 {
            dirty = false;
            since_audit = 0;
            let paths: Vec<(String, PathBuf)> = journals
                .paths
                .iter()
                .filter(|(_, p)| p.exists())
                .cloned()
                .collect();
            let view = audit_journals(&paths, &check).await;
            shared.view().journals = view.clone();
            shared.send(Update::Journals(view));
        }
        tokio::time::sleep(refresh).await;
    }
}

async fn audit_journals(paths: &[(String, PathBuf)], check: &ChainCheck) -> JournalsView {
    let files: Vec<PathBuf> = paths.iter().map(|(_, p)| p.clone()).collect();
    let agent_of = |path: &str| {
        paths
            .iter()
            .find(|(_, p)| p.to_string_lossy() == path)
            .map_or_else(|| path.to_owned(), |(n, _)| n.clone())
    };
    let checked_at = Some(now_ms());
    match audit::audit(&files, Some(check)).await {
        Ok(report) => JournalsView {
            checked_at,
            clean: Some(report.is_clean()),
            error: None,
            chain_note: report.chain.note.clone(),
            journals: report
                .journals
                .iter()
                .map(|j| JournalRow {
                    agent: agent_of(&j.path),
                    entries: j.entries_checked,
                    verified: j.verified,
                    deals: j.deals,
                    matched: j.deals_matched,
                    torn_tail_bytes: j.torn_tail_bytes,
                })
                .collect(),
            discrepancies: report
                .discrepancies
                .iter()
                .map(|d| DiscrepancyRow {
                    agent: agent_of(&d.journal),
                    entry: d.entry,
                    reason: d.reason.clone(),
                })
                .collect(),
        },
        Err(e) => JournalsView {
            checked_at,
            error: Some(e.to_string()),
            ..JournalsView::default()
        },
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Wei as ETH with four decimals, e.g. "99.9981 ETH".
fn eth(wei: u128) -> String {
    const WEI: u128 = 1_000_000_000_000_000_000;
    let tenth_milli = (wei % WEI) / (WEI / 10_000);
    format!("{}.{tenth_milli:04} ETH", wei / WEI)
}

/// Follows the chain: the latest block, each agent's balances, and each running
/// agent's spending from its host.
async fn follow_chain(
    shared: Arc<Shared>,
    rpc_url: String,
    addresses: Addresses,
    refresh: Duration,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut deployment: Option<Deployment> = None;
    loop {
        if deployment.is_none() {
            // No retries: the page says at once that the node does not answer (the
            // agents' own clients wait an outage out).
            let once = chain::RetryPolicy {
                retries: 0,
                ..chain::RetryPolicy::default()
            };
            match chain::connect_with(&rpc_url, Arc::new(Wallet::random()), once).await {
                Ok(client) => deployment = Some(Deployment::at(client, &addresses)),
                Err(e) => shared.chain(|c| c.error = Some(e.to_string())),
            }
        }
        if let Some(d) = &deployment {
            match d.block_number().await {
                Ok(block) => {
                    shared.chain(|c| {
                        c.block = Some(block);
                        c.error = None;
                    });
                    money(&shared, d, &http).await;
                }
                Err(e) => shared.chain(|c| c.error = Some(e.to_string())),
            }
        }
        tokio::time::sleep(refresh).await;
    }
}

/// Balances and spending of every agent with a known address.
async fn money(shared: &Shared, d: &Deployment, http: &reqwest::Client) {
    let agents: Vec<(String, Option<Address>, Option<String>)> = shared
        .view()
        .agents
        .values()
        .map(|a| {
            let metrics = (a.status == "ready")
                .then(|| a.endpoint.as_deref().and_then(metrics_url))
                .flatten();
            (a.name.clone(), a.address, metrics)
        })
        .collect();
    for (name, address, metrics) in agents {
        let Some(address) = address else { continue };
        let balance = d.balance_of(address).await.ok().map(|b| b.to_string());
        let gas = d.gas_balance(address).await.ok().map(eth);
        let policy = match metrics {
            Some(url) => scrape_policy(http, &url, address).await,
            None => None,
        };
        shared.agent(&name, |v| {
            if balance.is_some() {
                v.balance = balance;
            }
            if gas.is_some() {
                v.gas = gas;
            }
            if policy.is_some() {
                v.policy = policy;
            }
        });
    }
}

/// `http://host:port/metrics.json` of an agent's WebSocket endpoint.
fn metrics_url(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .strip_prefix("ws://")
        .map(|r| ("http", r))
        .or_else(|| endpoint.strip_prefix("wss://").map(|r| ("https", r)))?;
    let authority = rest.1.split('/').next()?;
    Some(format!("{}://{authority}/metrics.json", rest.0))
}

async fn scrape_policy(http: &reqwest::Client, url: &str, address: Address) -> Option<PolicyView> {
    let json: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let p = json.get("policies")?.get(address.to_string())?;
    let units = |k: &str| p.get(k)?.as_str()?.parse::<u128>().ok();
    let spent = units("spentDaily")?;
    let daily = units("daily");
    #[allow(clippy::cast_precision_loss)] // a share for a bar
    let used_percent = daily
        .filter(|d| *d > 0)
        .map(|d| (spent as f64 / d as f64 * 100.0).min(100.0));
    let text = |v: u128| Amount::from_base_units(v).to_string();
    Some(PolicyView {
        spent_daily: text(spent),
        daily: daily.map(text),
        per_deal: units("perDeal").map(text),
        used_percent,
    })
}

/// Follows the `AgentRegistry` through a discovery cache of its own.
async fn follow_registry(
    shared: Arc<Shared>,
    cache: PathBuf,
    rpc_url: String,
    addresses: Addresses,
    refresh: Duration,
) {
    let mut discovery: Option<Discovery> = None;
    loop {
        if discovery.is_none() {
            match Discovery::open(&cache, &rpc_url, addresses).await {
                Ok(d) => discovery = Some(d),
                Err(e) => {
                    tracing::warn!(target: "agora::dashboard", error = %e, "registry cache not opened");
                }
            }
        }
        if let Some(d) = &discovery {
            if let Err(e) = d.sync().await {
                tracing::debug!(target: "agora::dashboard", error = %e, "registry sync failed");
            }
            if let Ok(records) = d.agents() {
                let mut listings: Vec<Listing> = records
                    .iter()
                    .map(|r| Listing {
                        address: Address(r.address.0),
                        endpoint: r.endpoint.clone(),
                        services: r
                            .services
                            .iter()
                            .map(|s| ServiceView::new(&s.skill, s.price, &s.unit))
                            .collect(),
                        score: (r.score() * 10.0).round() / 10.0,
                        feedback: r.feedback_count,
                        stake: r.stake.to_string(),
                        suspended: r.suspended,
                    })
                    .collect();
                listings.sort_by_key(|l| l.address);
                let changed = {
                    let mut view = shared.view();
                    (view.registry != listings).then(|| {
                        view.registry.clone_from(&listings);
                        listings
                    })
                };
                if let Some(l) = changed {
                    shared.send(Update::Registry(l));
                }
            }
        }
        tokio::time::sleep(refresh.max(Duration::from_secs(2))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Signed journals of two agents, to write entries with.
    fn journals(dir: &Path) -> (wallets::Journal, wallets::Journal) {
        let open =
            |n: &str| wallets::Journal::open(dir.join(n), Arc::new(Wallet::random())).unwrap();
        (open("travel"), open("weather"))
    }

    /// Entries of both parties group into one deal by dialogue, and a delivery that
    /// names only the agreement joins it; the stage and the transactions follow.
    #[test]
    fn entries_group_into_deals_with_their_transactions() {
        let d = "0x".to_owned() + &"aa".repeat(32);
        let a = "0x".to_owned() + &"bb".repeat(32);
        let tx = "0x".to_owned() + &"cc".repeat(32);
        let buyer = Address([2; 20]).to_string();
        let seller = Address([3; 20]).to_string();
        let dir = tempfile::tempdir().unwrap();
        let (mut travel, mut weather) = journals(dir.path());
        let mut books = Books::default();
        let e = travel
            .append(
                "cfp",
                json!({"dialogue": d, "call": {"kind": "weather.forecast", "maxPrice": "2000000"}}),
            )
            .unwrap();
        books.take("travel", &e);
        let e = weather.append("proposal", json!({"agreementHash": a, "proposal": {"agreement": {"dialogue": d, "buyer": buyer, "seller": seller, "price": "950000", "kind": "weather.forecast", "mode": "authorization"}}})).unwrap();
        books.take("weather", &e);
        let paid = travel.append("payment", json!({"agreementHash": a, "agreement": {"agreement": {"dialogue": d, "price": "950000"}}, "settlement": {"txHash": tx}})).unwrap();
        books.take("travel", &paid);
        let delivered = weather
            .append("delivery", json!({"agreementHash": a, "txHash": tx}))
            .unwrap();
        books.take("weather", &delivered);
        // Seen again (a journal read twice): not doubled.
        books.take("weather", &delivered);
        assert_eq!(books.deals.len(), 1);
        let deal = &books.deals[&d];
        assert_eq!(
            deal.steps
                .iter()
                .map(|s| s.kind.as_str())
                .collect::<Vec<_>>(),
            ["cfp", "proposal", "payment", "delivery"]
        );
        assert_eq!(deal.stage, "delivery");
        assert_eq!(deal.price_text.as_deref(), Some("0.95 USDC"));
        assert_eq!(deal.buyer, Some(Address([2; 20])));
        assert_eq!(deal.seller, Some(Address([3; 20])));
        assert_eq!(deal.transactions, [tx]);
        assert_eq!(deal.paid_at, Some(paid.time));
        assert_eq!(deal.skill.as_deref(), Some("weather.forecast"));
    }

    #[test]
    fn journal_lines_are_read_as_they_are_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let wallet = Arc::new(Wallet::random());
        let mut journal = wallets::Journal::open(&path, wallet).unwrap();
        journal.append("cfp", json!({"dialogue": "x"})).unwrap();
        let mut books = Books::default();
        assert!(books.read("a", &path));
        assert!(!books.read("a", &path), "nothing new");
        journal
            .append("rejection", json!({"dialogue": "x"}))
            .unwrap();
        // Half a line: left for later.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"index\":2").unwrap();
        assert!(books.read("a", &path));
        assert_eq!(books.deals["x"].steps.len(), 2);
        assert_eq!(books.deals["x"].stage, "rejection");
    }

    #[test]
    fn small_helpers() {
        assert_eq!(eth(1_500_000_000_000_000_000), "1.5000 ETH");
        assert_eq!(eth(99_998_100_000_000_000_000), "99.9981 ETH");
        assert_eq!(
            metrics_url("ws://127.0.0.1:7411").as_deref(),
            Some("http://127.0.0.1:7411/metrics.json")
        );
        assert_eq!(
            metrics_url("wss://a.example:443/x").as_deref(),
            Some("https://a.example:443/metrics.json")
        );
        assert_eq!(metrics_url("http://x"), None);
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!same(b"short", b"0123456789abcdef"));
        let uri: Uri = "/?a=1&token=abc".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("abc"));
    }
}
