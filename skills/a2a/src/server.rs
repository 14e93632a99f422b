//! The A2A server: agents' cards, their skills, and the tasks the methods run.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use agent_sdk::{AgentHandle, SkillError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use wallets::Address;

use crate::error::A2aError;
use crate::store::{Stored, TaskStore};
use crate::wire::{
    AgentCapabilities, AgentCard, AgentInterface, AgentProvider, AgentSkill, Artifact,
    CancelTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse, Message, Part, Role,
    SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus,
    TaskStatusUpdateEvent, BINDING_HTTP_JSON, BINDING_JSONRPC, PROTOCOL_VERSION,
};
use crate::{Error, Result};

/// The message metadata key that names the skill a message is for.
pub const SKILL_ID_KEY: &str = "skillId";

/// One skill served over A2A: its card entry, which requests it takes, and the work.
#[async_trait::async_trait]
pub trait A2aSkill: Send + Sync + 'static {
    /// Its entry in the agent card.
    fn describe(&self) -> AgentSkill;
    /// Whether `request` is one of its requests (used to pick the skill of a message
    /// that does not name one).
    fn accepts(&self, request: &Value) -> bool;
    /// Does the work.
    async fn run(&self, request: Value) -> Result<Value, SkillError>;
}

/// A skill of a typed request `Req` answered with a `Resp`, by `f`.
///
/// ```
/// use a2a::{skill_fn, wire::AgentSkill};
///
/// let greet = skill_fn(
///     AgentSkill { id: "hello.greet".into(), name: "Greet".into(),
///                  description: "Greets {\"name\": …}".into(), ..Default::default() },
///     |req: serde_json::Map<String, serde_json::Value>| async move {
///         Ok::<_, agent_sdk::SkillError>(format!("hello {}", req["name"]))
///     },
/// );
/// assert_eq!(greet.describe().id, "hello.greet");
/// ```
pub fn skill_fn<Req, Resp, F, Fut>(card: AgentSkill, f: F) -> Arc<dyn A2aSkill>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, SkillError>> + Send + 'static,
{
    struct FnSkill<Req, F> {
        card: AgentSkill,
        f: F,
        _req: std::marker::PhantomData<fn() -> Req>,
    }
    #[async_trait::async_trait]
    impl<Req, Resp, F, Fut> A2aSkill for FnSkill<Req, F>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, SkillError>> + Send + 'static,
    {
        fn describe(&self) -> AgentSkill {
            self.card.clone()
        }
        fn accepts(&self, request: &Value) -> bool {
            Req::deserialize(request).is_ok()
        }
        async fn run(&self, request: Value) -> Result<Value, SkillError> {
            let req = Req::deserialize(&request).map_err(|e| {
                SkillError::bad_request(format!("not a {} request: {e}", self.card.id))
            })?;
            let resp = (self.f)(req).await?;
            serde_json::to_value(resp).map_err(|e| SkillError::internal(e.to_string()))
        }
    }
    Arc::new(FnSkill {
        card,
        f,
        _req: std::marker::PhantomData,
    })
}

/// A skill of a running agent, run through [`AgentHandle::invoke`] (no sender: a skill
/// that works only for known principals refuses).
struct HandleSkill {
    handle: AgentHandle,
    kind: &'static str,
    card: AgentSkill,
    required: Vec<String>,
}

#[async_trait::async_trait]
impl A2aSkill for HandleSkill {
    fn describe(&self) -> AgentSkill {
        self.card.clone()
    }
    fn accepts(&self, request: &Value) -> bool {
        // The request schema's required properties, as a first cut; the skill itself
        // checks the whole request.
        match request {
            Value::Object(map) => self.required.iter().all(|k| map.contains_key(k)),
            _ => self.required.is_empty(),
        }
    }
    async fn run(&self, request: Value) -> Result<Value, SkillError> {
        self.handle.invoke(self.kind, request).await
    }
}

/// One skill of an agent: free, or sold through an x402 seller (A2A's x402 extension).
#[derive(Clone)]
pub(crate) enum Entry {
    /// Done for anyone who asks.
    Free(Arc<dyn A2aSkill>),
    /// Done once paid ([`crate::paid`]).
    Paid {
        /// The seller that settles its payments and runs it.
        seller: Arc<x402::X402Seller>,
        /// Its card entry.
        card: AgentSkill,
    },
}

impl Entry {
    pub(crate) fn card(&self) -> AgentSkill {
        match self {
            Self::Free(s) => s.describe(),
            Self::Paid { card, .. } => card.clone(),
        }
    }

    fn accepts(&self, request: &Value) -> bool {
        match self {
            Self::Free(s) => s.accepts(request),
            Self::Paid { seller, card } => serde_json::to_vec(request)
                .is_ok_and(|body| seller.check_request(&card.id, &body).is_ok()),
        }
    }
}

/// An agent served over A2A: its identity, its card's text and its skills.
pub struct A2aAgent {
    address: Address,
    name: String,
    description: String,
    version: String,
    pub(crate) skills: Vec<Entry>,
}

impl std::fmt::Debug for A2aAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aAgent")
            .field("address", &self.address)
            .field("name", &self.name)
            .field("skills", &self.skills.len())
            .finish_non_exhaustive()
    }
}

impl A2aAgent {
    /// An agent with no skills yet.
    pub fn new(address: Address, name: impl Into<String>) -> Self {
        Self {
            address,
            name: name.into(),
            description: String::new(),
            version: env!("CARGO_PKG_VERSION").into(),
            skills: Vec::new(),
        }
    }

    /// Every skill of a running agent, described from its request and response
    /// schemas, run through [`AgentHandle::invoke`].
    pub fn from_handle(handle: &AgentHandle) -> Self {
        let mut agent = Self::new(handle.address(), handle.name());
        for (kind, request, response) in handle.skills() {
            let required = request
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let card = AgentSkill {
                id: kind.into(),
                name: title(&request).unwrap_or(kind).into(),
                description: format!(
                    "Request (a data part): {}. Answer (a data part): {}.",
                    compact(&request),
                    compact(&response)
                ),
                tags: kind.split('.').map(str::to_owned).collect(),
                input_modes: vec!["application/json".into()],
                output_modes: vec!["application/json".into()],
                ..AgentSkill::default()
            };
            agent.skills.push(Entry::Free(Arc::new(HandleSkill {
                handle: handle.clone(),
                kind,
                card,
                required,
            })));
        }
        agent
    }

    /// Sets the card's description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds (or replaces, by id) a skill.
    pub fn skill(mut self, skill: Arc<dyn A2aSkill>) -> Self {
        let id = skill.describe().id;
        self.skills.retain(|s| s.card().id != id);
        self.skills.push(Entry::Free(skill));
        self
    }

    /// Sells every skill `seller` sells (replacing skills of the same ids), paid with
    /// A2A's x402 extension: the first message gets a task waiting for payment, and the
    /// payment sent on that task runs it ([`crate::paid`]).
    pub fn sell(mut self, seller: Arc<x402::X402Seller>) -> Self {
        let skills: Vec<String> = seller.skills().map(str::to_owned).collect();
        for id in skills {
            let Some((price, description, request, response)) = seller.describe(&id) else {
                continue;
            };
            let card = AgentSkill {
                id: id.clone(),
                name: id.clone(),
                description: format!(
                    "{description} Costs {price}, paid with the x402 extension                      (x402.payment.* metadata). Request (a data part): {}. Answer (a data                      part): {}.",
                    compact(request),
                    compact(response)
                ),
                tags: id.split('.').map(str::to_owned).chain(["x402".to_owned()]).collect(),
                input_modes: vec!["application/json".into()],
                output_modes: vec!["application/json".into()],
                ..AgentSkill::default()
            };
            self.skills.retain(|s| s.card().id != id);
            self.skills.push(Entry::Paid {
                seller: seller.clone(),
                card,
            });
        }
        self
    }

    /// Its address.
    pub fn address(&self) -> Address {
        self.address
    }
}

fn title(schema: &Value) -> Option<&str> {
    schema.get("title").and_then(Value::as_str)
}

/// A schema in one line, bounded.
fn compact(schema: &Value) -> String {
    let mut s = schema.to_string();
    if s.len() > 600 {
        let mut end = 600;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// How a gateway is set up.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The task store's directory (sled).
    pub store: PathBuf,
    /// The host's base URL as clients reach it (`http://127.0.0.1:7411`); agents are at
    /// `<base_url>/agents/<address>/`.
    pub base_url: String,
    /// The largest request body, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Who runs the agents, for their cards.
    pub provider: Option<AgentProvider>,
}

impl GatewayConfig {
    /// The defaults, with the store at `store` and agents under `base_url`.
    pub fn new(store: impl Into<PathBuf>, base_url: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            max_body_bytes: 1024 * 1024,
            provider: None,
        }
    }
}

/// Running tasks by (agent, task id): a switch that cancels the work, and a signal
/// sent once its worker has let go of the gateway.
type Running = HashMap<(Address, String), (oneshot::Sender<()>, oneshot::Receiver<()>)>;

/// The agents of one host served over A2A 1.0 (see the [crate docs](crate)).
pub struct A2aGateway {
    config: GatewayConfig,
    pub(crate) store: TaskStore,
    agents: RwLock<BTreeMap<Address, Arc<A2aAgent>>>,
    /// Running tasks' cancel switches, and a signal that their worker has let go of the
    /// gateway, by (agent, task id).
    running: Mutex<Running>,
    /// Serialises status changes, so a cancel and a completion cannot both win.
    pub(crate) transitions: tokio::sync::Mutex<()>,
    /// Tasks whose payment is being handled ([`crate::paid`]).
    pub(crate) paying: Mutex<std::collections::HashSet<(Address, String)>>,
}

impl std::fmt::Debug for A2aGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aGateway")
            .field("base_url", &self.config.base_url)
            .field("store", &self.config.store)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A status of `state` for `task`, with the agent's `text` about it.
pub(crate) fn status(state: TaskState, text: Option<&str>, task: &Task, at_ms: u64) -> TaskStatus {
    TaskStatus {
        state,
        message: text.map(|t| Message {
            message_id: new_id(),
            context_id: task.context_id.clone(),
            task_id: task.id.clone(),
            role: Role::Agent,
            parts: vec![Part::text(t)],
            ..Message::default()
        }),
        timestamp: Some(crate::wire::now_timestamp(at_ms)),
    }
}

/// Keeps the last `n` messages of history (`None`: all).
fn trim(mut task: Task, history_length: Option<i32>) -> Result<Task, A2aError> {
    if let Some(n) = history_length {
        let n = usize::try_from(n)
            .map_err(|_| A2aError::InvalidParams(format!("historyLength {n} is negative")))?;
        let drop = task.history.len().saturating_sub(n);
        task.history.drain(..drop);
    }
    Ok(task)
}

impl A2aGateway {
    /// Opens the gateway's store. Tasks a stopped process left unfinished are marked
    /// failed: their work cannot be resumed.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Config`] for a base URL that is not http(s).
    pub fn open(config: GatewayConfig) -> Result<Self> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "base URL {:?} is not http(s)",
                config.base_url
            )));
        }
        let store = TaskStore::open(&config.store)?;
        let failed = store.fail_unfinished(now_ms(), "the agent stopped while working on it")?;
        if failed > 0 {
            tracing::warn!(target: "a2a", failed, "tasks left unfinished by a stop marked failed");
        }
        Ok(Self {
            config,
            store,
            agents: RwLock::default(),
            running: Mutex::default(),
            transitions: tokio::sync::Mutex::new(()),
            paying: Mutex::default(),
        })
    }

    /// Serves `agent` (replacing an agent of the same address).
    ///
    /// # Errors
    /// [`Error::Config`] when two of its skills share an id, or a skill id is empty.
    pub fn add(&self, agent: A2aAgent) -> Result<()> {
        let mut ids = std::collections::BTreeSet::new();
        for s in &agent.skills {
            let id = s.card().id;
            if id.is_empty() || !ids.insert(id.clone()) {
                return Err(Error::Config(format!(
                    "agent {}: skill id {id:?} is empty or used twice",
                    agent.address
                )));
            }
        }
        self.agents
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.address, Arc::new(agent));
        Ok(())
    }

    /// The host (`host:port`) of the base URL, as a request to it would name it.
    pub(crate) fn host(&self) -> Option<&str> {
        let rest = self.config.base_url.split_once("://")?.1;
        Some(rest.split('/').next().unwrap_or(rest))
    }

    /// The largest request body accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    pub(crate) fn agent(&self, address: Address) -> Option<Arc<A2aAgent>> {
        self.agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&address)
            .cloned()
    }

    /// The agents served: address and name.
    pub fn agents(&self) -> Vec<(Address, String)> {
        self.agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|a| (a.address, a.name.clone()))
            .collect()
    }

    /// An agent's base URL: `<base_url>/agents/<address>`.
    pub fn agent_url(&self, address: Address) -> String {
        format!("{}/agents/{address}", self.config.base_url)
    }

    /// The A2A card of the agent at `address`.
    pub fn card(&self, address: Address) -> Option<AgentCard> {
        let agent = self.agent(address)?;
        let url = self.agent_url(address);
        let interface = |url: String, binding: &str| AgentInterface {
            url,
            protocol_binding: binding.into(),
            tenant: None,
            protocol_version: PROTOCOL_VERSION.into(),
        };
        Some(AgentCard {
            name: agent.name.clone(),
            description: if agent.description.is_empty() {
                format!("Agora agent {} ({address})", agent.name)
            } else {
                agent.description.clone()
            },
            supported_interfaces: vec![
                interface(format!("{url}/"), BINDING_JSONRPC),
                interface(url, BINDING_HTTP_JSON),
            ],
            provider: self.config.provider.clone(),
            version: agent.version.clone(),
            capabilities: AgentCapabilities {
                streaming: Some(true),
                push_notifications: Some(false),
                extensions: if agent.skills.iter().any(|s| matches!(s, Entry::Paid { .. })) {
                    vec![crate::paid::extension()]
                } else {
                    Vec::new()
                },
                ..AgentCapabilities::default()
            },
            default_input_modes: vec!["application/json".into(), "text/plain".into()],
            default_output_modes: vec!["application/json".into()],
            skills: agent.skills.iter().map(Entry::card).collect(),
            ..AgentCard::default()
        })
    }

    /// `SendMessage` / `SendStreamingMessage`: starts a task for the message and runs
    /// it; `events`, if given, receives each change as it happens. Answers the task as
    /// it ends (or at once, with `returnImmediately`).
    pub(crate) async fn send(
        self: &Arc<Self>,
        agent: &Arc<A2aAgent>,
        request: SendMessageRequest,
        events: Option<mpsc::Sender<StreamResponse>>,
    ) -> Result<Task, A2aError> {
        let mut message = request
            .message
            .ok_or_else(|| A2aError::InvalidParams("params.message is required".into()))?;
        check_message(&message)?;
        let config = request.configuration.unwrap_or_default();
        if config.task_push_notification_config.is_some() {
            return Err(A2aError::PushNotificationNotSupported(
                "this agent sends no push notifications".into(),
            ));
        }
        if !message.task_id.is_empty() {
            let task = crate::paid::continue_task(self, agent, message, &events).await?;
            return trim(task, config.history_length);
        }
        let (entry, input) = choose(agent, &message)?;
        let skill = match entry {
            Entry::Free(skill) => skill,
            Entry::Paid { seller, card } => {
                let task =
                    crate::paid::offer(self, agent, &seller, &card, message, &input, &events)
                        .await?;
                return trim(task, config.history_length);
            }
        };
        let now = now_ms();
        let mut task = Task {
            id: new_id(),
            context_id: if message.context_id.is_empty() {
                new_id()
            } else {
                message.context_id.clone()
            },
            ..Task::default()
        };
        message.task_id = task.id.clone();
        message.context_id = task.context_id.clone();
        task.history.push(message);
        task.status = status(TaskState::Submitted, None, &task, now);
        task.metadata = Some(Map::from_iter([(
            SKILL_ID_KEY.to_owned(),
            Value::String(skill.describe().id),
        )]));
        let stored = self
            .store
            .create(agent.address, task, now)
            .map_err(internal)?;
        self.store.flush().await.map_err(internal)?;
        emit(&events, StreamResponse::Task(stored.task.clone())).await;

        let (cancel, canceled) = oneshot::channel();
        let (finished, done) = oneshot::channel();
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((agent.address, stored.task.id.clone()), (cancel, done));
        let history_length = config.history_length;
        if config.return_immediately && events.is_none() {
            let (me, agent, submitted) = (self.clone(), agent.clone(), stored.task.clone());
            tokio::spawn(async move {
                let _ = me.run(&agent, stored, skill, input, canceled, None).await;
                drop(me);
                let _ = finished.send(());
            });
            return trim(submitted, history_length);
        }
        let task = self
            .run(agent, stored, skill, input, canceled, events)
            .await;
        let _ = finished.send(());
        trim(task?, history_length)
    }

    /// Works on a submitted task to its end.
    async fn run(
        &self,
        agent: &A2aAgent,
        mut stored: Stored,
        skill: Arc<dyn A2aSkill>,
        input: Value,
        canceled: oneshot::Receiver<()>,
        events: Option<mpsc::Sender<StreamResponse>>,
    ) -> Result<Task, A2aError> {
        let key = (agent.address, stored.task.id.clone());
        let result = async {
            if !self
                .transition(
                    agent.address,
                    &mut stored,
                    TaskState::Working,
                    None,
                    &events,
                )
                .await?
            {
                return Ok(stored.task.clone());
            }
            let outcome = tokio::select! {
                r = skill.run(input) => Some(r),
                _ = canceled => None,
            };
            match outcome {
                // Canceled: CancelTask wrote the state.
                None => {}
                Some(Ok(result)) => {
                    let artifact = Artifact {
                        artifact_id: new_id(),
                        name: skill.describe().id,
                        parts: vec![Part::data(result)],
                        ..Artifact::default()
                    };
                    let _guard = self.transitions.lock().await;
                    if let Some(latest) = self
                        .store
                        .get(agent.address, &stored.task.id)
                        .map_err(internal)?
                    {
                        if latest.task.status.state.is_terminal() {
                            return Ok(latest.task);
                        }
                    }
                    stored.task.artifacts.push(artifact.clone());
                    stored.task.status = status(TaskState::Completed, None, &stored.task, now_ms());
                    stored.updated_ms = now_ms();
                    self.store.put(agent.address, &stored).map_err(internal)?;
                    self.store.flush().await.map_err(internal)?;
                    emit(&events, artifact_event(&stored.task, artifact)).await;
                    emit(&events, status_event(&stored.task)).await;
                }
                Some(Err(e)) => {
                    let state = if e.code == "refused" {
                        TaskState::Rejected
                    } else {
                        TaskState::Failed
                    };
                    if e.code == SkillError::INTERNAL {
                        tracing::warn!(target: "a2a", task = %stored.task.id, error = %e.message, "skill failed; the client is told only where to look");
                    }
                    let e = e.for_asker(format_args!("task {}", stored.task.id));
                    let text = format!("{}: {}", e.code, e.message);
                    self.transition(agent.address, &mut stored, state, Some(&text), &events)
                        .await?;
                }
            }
            Ok(self
                .store
                .get(agent.address, &stored.task.id)
                .map_err(internal)?
                .map_or(stored.task.clone(), |s| s.task))
        }
        .await;
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        result
    }

    /// Moves a task to `state` unless it already ended; says whether it moved.
    async fn transition(
        &self,
        agent: Address,
        stored: &mut Stored,
        state: TaskState,
        text: Option<&str>,
        events: &Option<mpsc::Sender<StreamResponse>>,
    ) -> Result<bool, A2aError> {
        let _guard = self.transitions.lock().await;
        if let Some(latest) = self.store.get(agent, &stored.task.id).map_err(internal)? {
            if latest.task.status.state.is_terminal() {
                *stored = latest;
                return Ok(false);
            }
        }
        let now = now_ms();
        stored.task.status = status(state, text, &stored.task, now);
        stored.updated_ms = now;
        self.store.put(agent, stored).map_err(internal)?;
        self.store.flush().await.map_err(internal)?;
        emit(events, status_event(&stored.task)).await;
        Ok(true)
    }

    /// `GetTask`.
    pub(crate) fn get_task(&self, agent: &A2aAgent, r: GetTaskRequest) -> Result<Task, A2aError> {
        if r.id.is_empty() {
            return Err(A2aError::InvalidParams("params.id is required".into()));
        }
        let stored = self
            .store
            .get(agent.address, &r.id)
            .map_err(internal)?
            .ok_or_else(|| A2aError::TaskNotFound(format!("no task {:?}", r.id)))?;
        trim(stored.task, r.history_length)
    }

    /// `ListTasks`: most recent first, a page at a time.
    pub(crate) fn list_tasks(
        &self,
        agent: &A2aAgent,
        r: ListTasksRequest,
    ) -> Result<ListTasksResponse, A2aError> {
        let page_size = match r.page_size {
            None | Some(0) => 50,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return Err(A2aError::InvalidParams(format!(
                    "pageSize {n} is not between 1 and 100"
                )))
            }
        };
        let before = if r.page_token.is_empty() {
            None
        } else {
            Some(r.page_token.parse::<u64>().map_err(|_| {
                A2aError::InvalidParams(format!(
                    "pageToken {:?} is not one this agent gave",
                    r.page_token
                ))
            })?)
        };
        let after_ms = match &r.status_timestamp_after {
            Some(t) => Some(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| {
                        A2aError::InvalidParams(format!("statusTimestampAfter {t:?}: {e}"))
                    })?
                    .timestamp_millis(),
            ),
            None => None,
        };
        let matches = |s: &Stored| {
            (r.context_id.is_empty() || s.task.context_id == r.context_id)
                && (r.status == TaskState::Unspecified || s.task.status.state == r.status)
                && after_ms.is_none_or(|t| i64::try_from(s.updated_ms).unwrap_or(i64::MAX) > t)
        };
        let mut total = 0i32;
        let mut tasks = Vec::new();
        let mut last_seq = None;
        let mut more = false;
        let size = usize::try_from(page_size).unwrap_or(50);
        for stored in self.store.list(agent.address, None) {
            let stored = stored.map_err(internal)?;
            if !matches(&stored) {
                continue;
            }
            total = total.saturating_add(1);
            if before.is_some_and(|b| stored.seq >= b) {
                continue;
            }
            if tasks.len() == size {
                more = true;
                continue;
            }
            last_seq = Some(stored.seq);
            let mut task = trim(stored.task, r.history_length)?;
            if !r.include_artifacts {
                task.artifacts.clear();
            }
            tasks.push(task);
        }
        Ok(ListTasksResponse {
            tasks,
            next_page_token: match (more, last_seq) {
                (true, Some(seq)) => seq.to_string(),
                _ => String::new(),
            },
            page_size,
            total_size: total,
        })
    }

    /// `CancelTask`.
    pub(crate) async fn cancel_task(
        &self,
        agent: &A2aAgent,
        r: CancelTaskRequest,
    ) -> Result<Task, A2aError> {
        if r.id.is_empty() {
            return Err(A2aError::InvalidParams("params.id is required".into()));
        }
        let mut stored = self
            .store
            .get(agent.address, &r.id)
            .map_err(internal)?
            .ok_or_else(|| A2aError::TaskNotFound(format!("no task {:?}", r.id)))?;
        if !self
            .transition(
                agent.address,
                &mut stored,
                TaskState::Canceled,
                Some("canceled by the client"),
                &None,
            )
            .await?
        {
            return Err(A2aError::TaskNotCancelable(format!(
                "task {} has already ended",
                r.id
            )));
        }
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(agent.address, r.id.clone()));
        if let Some((cancel, done)) = running {
            // Stop the work, and answer once its worker has let go.
            let _ = cancel.send(());
            let _ = done.await;
        }
        Ok(stored.task)
    }
}

/// The whole of `artifact`, produced by `task`, as one stream event.
pub(crate) fn artifact_event(task: &Task, artifact: Artifact) -> StreamResponse {
    StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        artifact,
        append: false,
        last_chunk: true,
        metadata: None,
    })
}

pub(crate) fn status_event(task: &Task) -> StreamResponse {
    StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: task.id.clone(),
        context_id: task.context_id.clone(),
        status: task.status.clone(),
        metadata: None,
    })
}

pub(crate) async fn emit(events: &Option<mpsc::Sender<StreamResponse>>, event: StreamResponse) {
    if let Some(tx) = events {
        // A client that went away stops listening, not the work.
        let _ = tx.send(event).await;
    }
}

pub(crate) fn internal(e: Error) -> A2aError {
    tracing::error!(target: "a2a", error = %e, "task store");
    A2aError::Internal(e.to_string())
}

/// A client's message is well formed: an id, the user's role, parts each with one kind
/// of content.
fn check_message(m: &Message) -> Result<(), A2aError> {
    if m.message_id.is_empty() {
        return Err(A2aError::InvalidParams(
            "message.messageId is required".into(),
        ));
    }
    if m.role != Role::User {
        return Err(A2aError::InvalidParams(format!(
            "message.role is {}; a client sends ROLE_USER",
            serde_json::to_value(m.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    if m.parts.is_empty() {
        return Err(A2aError::InvalidParams("message.parts is empty".into()));
    }
    for (i, p) in m.parts.iter().enumerate() {
        if p.contents() != 1 {
            return Err(A2aError::InvalidParams(format!(
                "message.parts[{i}] holds {} of text, raw, url and data; a part holds exactly one",
                p.contents()
            )));
        }
    }
    Ok(())
}

/// The skill a message is for, and its request: the first data part, or the text.
pub(crate) fn choose(agent: &A2aAgent, m: &Message) -> Result<(Entry, Value), A2aError> {
    let input = match m.parts.iter().find_map(|p| p.data.clone()) {
        Some(data) => integral(data),
        None => {
            let text: Vec<&str> = m.parts.iter().filter_map(|p| p.text.as_deref()).collect();
            if text.is_empty() {
                return Err(A2aError::ContentTypeNotSupported(
                    "this agent reads data and text parts, not files".into(),
                ));
            }
            Value::String(text.join("\n"))
        }
    };
    let ids = || {
        agent
            .skills
            .iter()
            .map(|s| s.card().id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(named) = m.metadata.as_ref().and_then(|md| md.get(SKILL_ID_KEY)) {
        let named = named.as_str().unwrap_or_default();
        let skill = agent
            .skills
            .iter()
            .find(|s| s.card().id == named)
            .ok_or_else(|| {
                A2aError::InvalidParams(format!(
                    "message.metadata.{SKILL_ID_KEY} {named:?} is no skill of this agent (it has {})",
                    ids()
                ))
            })?;
        return Ok((skill.clone(), input));
    }
    let fit: Vec<_> = agent.skills.iter().filter(|s| s.accepts(&input)).collect();
    match fit.as_slice() {
        [one] => Ok(((*one).clone(), input)),
        [] => Err(A2aError::InvalidParams(format!(
            "no skill of this agent takes this request (its skills: {}); see the agent card",
            ids()
        ))),
        many => Err(A2aError::InvalidParams(format!(
            "several skills take this request ({}): name one in message.metadata.{SKILL_ID_KEY}",
            many.iter()
                .map(|s| s.card().id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Whole numbers back to integers: data parts and metadata pass through protobuf
/// `Value` in the SDKs, which carries every number as a double (`3` arrives as `3.0`).
pub(crate) fn integral(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let whole = n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
                .and_then(|f| format!("{f:.0}").parse::<i64>().ok());
            whole.map_or(Value::Number(n), Value::from)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_that_came_through_protobuf_are_integers_again() {
        assert_eq!(
            integral(json!({"days": 3.0, "x": [2.0, 0.5], "s": "3.0", "big": 1e300})),
            json!({"days": 3, "x": [2, 0.5], "s": "3.0", "big": 1e300})
        );
    }
}
