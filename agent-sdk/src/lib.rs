//! # agent-sdk
//!
//! What agent authors use to write Agora agents: a [`Skill`] handles one typed
//! [`Request`]; an [`AgentBuilder`] puts a wallet, skills, a spending policy and a
//! directory together and starts the agent on a [`Host`]; the [`Context`] a skill
//! gets lets it tell, ask with a timeout, keep dialogue state, find peers and pay
//! (only through the spending policy).
//!
//! Time: a skill reads wall-clock time through [`Context::clock`] (its host's
//! [`Clock`], set by [`HostConfig::clock`]), never from the system directly, so
//! that a test can give the host a [`ManualClock`] and move time instead of
//! sleeping. Timeouts (an ask's wait for its answer) are elapsed time, on tokio's
//! timers.
//!
//! Protocol gateways (x402, A2A) reach agents over HTTP: a host's port serves
//! HTTP/1.1 beside its WebSocket envelope traffic, and a gateway mounts its
//! `axum::Router` (any tower service of `http::Request`) under a path prefix with
//! [`Host::mount_http`]; see [`http`].
//!
//! A whole agent with one skill, and a second agent asking it:
//!
//! ```
//! use agent_sdk::prelude::*;
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct Greet { name: String }
//!
//! impl Request for Greet {
//!     const KIND: &'static str = "hello.Greet";
//!     type Response = String;
//! }
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Skill for Hello {
//!     type Request = Greet;
//!     async fn handle(&self, ctx: &Context, req: Greet) -> Result<String, SkillError> {
//!         Ok(format!("hello {}, from {}", req.name, ctx.name()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! let host = Host::spawn(HostConfig::new(1337, dir.path()))?;
//! let greeter = AgentBuilder::new("greeter").skill(Hello).spawn(&host)?;
//! let caller = AgentBuilder::new("caller").spawn(&host)?;
//! let answer = caller.context().ask(greeter.address(), Greet { name: "Ada".into() }).await?;
//! assert_eq!(answer, "hello Ada, from greeter");
//! # Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use agent_core::AgentSpec;
pub use agent_core::{
    AgentHandle, AgentLimits, AgentStats, ClientTls, Clock, Context, Directory, EdgeLimits, Error,
    Host, HostConfig, ManualClock, Payload, Peer, Request, Result, ServerTls, SkillError,
    SkillHandler, StateUpdate, StaticDirectory,
};
use futures::future::BoxFuture;
use wallets::{SpendingPolicy, Wallet};

/// The HTTP edge of a host's port, for gateway crates: what mounts with
/// [`Host::mount_http`] and what a mounted service gets.
pub use agent_core::http;

#[cfg(feature = "registry")]
pub mod registry;
pub mod testing;

/// Everything an agent author usually needs.
pub mod prelude {
    pub use crate::{
        skill_fn, AgentBuilder, AgentHandle, Context, Host, HostConfig, Request, Skill, SkillError,
    };
    pub use async_trait::async_trait;
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use wallets::{Address, Amount, Wallet};
}

/// Handles one typed request. The runtime has already checked the message
/// (recipient, chain, expiry, signature, replays) before `handle` runs.
#[async_trait::async_trait]
pub trait Skill: Send + Sync + 'static {
    /// The request it handles; `Request::KIND` is its name on the wire.
    type Request: Request;

    /// Answers one request.
    async fn handle(
        &self,
        ctx: &Context,
        request: Self::Request,
    ) -> Result<<Self::Request as Request>::Response, SkillError>;
}

/// Adapts a typed [`Skill`] to the runtime's type-erased [`SkillHandler`].
struct Adapter<S>(Arc<S>);

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

impl<S: Skill> SkillHandler for Adapter<S> {
    fn kind(&self) -> &'static str {
        S::Request::KIND
    }

    fn call(
        &self,
        ctx: Context,
        payload: Payload,
        json: bool,
    ) -> BoxFuture<'static, Result<Payload, SkillError>> {
        let skill = self.0.clone();
        Box::pin(async move {
            let request: S::Request = payload
                .into_typed(S::Request::KIND)
                .map_err(|e| SkillError::bad_request(e.to_string()))?;
            let response = skill.handle(&ctx, request).await?;
            if json {
                serde_json::to_value(response)
                    .map(Payload::Json)
                    .map_err(|e| SkillError::internal(format!("response does not serialize: {e}")))
            } else {
                Ok(Payload::local(response))
            }
        })
    }

    fn schemas(&self) -> (serde_json::Value, serde_json::Value) {
        (
            schema_of::<S::Request>(),
            schema_of::<<S::Request as Request>::Response>(),
        )
    }
}

/// A skill made from an async closure; see [`skill_fn`].
pub struct FnSkill<R, F> {
    f: F,
    _request: PhantomData<fn(R)>,
}

impl<R, F> std::fmt::Debug for FnSkill<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSkill").finish_non_exhaustive()
    }
}

/// A skill from an async closure taking the context and the request:
///
/// ```
/// # use agent_sdk::prelude::*;
/// # #[derive(Serialize, Deserialize, JsonSchema)] struct Ping(u32);
/// # impl Request for Ping { const KIND: &'static str = "Ping"; type Response = u32; }
/// let pong = skill_fn(|_ctx: Context, Ping(n): Ping| async move { Ok(n + 1) });
/// ```
pub fn skill_fn<R, F, Fut>(f: F) -> FnSkill<R, F>
where
    R: Request,
    F: Fn(Context, R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Response, SkillError>> + Send + 'static,
{
    FnSkill {
        f,
        _request: PhantomData,
    }
}

#[async_trait::async_trait]
impl<R, F, Fut> Skill for FnSkill<R, F>
where
    R: Request,
    F: Fn(Context, R) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Response, SkillError>> + Send + 'static,
{
    type Request = R;

    async fn handle(&self, ctx: &Context, request: R) -> Result<R::Response, SkillError> {
        (self.f)(ctx.clone(), request).await
    }
}

/// Puts an agent together and starts it on a [`Host`].
pub struct AgentBuilder {
    name: String,
    wallet: Option<Arc<Wallet>>,
    handlers: Vec<Arc<dyn SkillHandler>>,
    policy: Option<Arc<SpendingPolicy>>,
    directory: Option<Arc<dyn Directory>>,
    limits: AgentLimits,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("name", &self.name)
            .field("wallet", &self.wallet.as_ref().map(|w| w.address()))
            .field(
                "skills",
                &self.handlers.iter().map(|h| h.kind()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    /// An agent called `name` (a fresh random wallet unless [`AgentBuilder::wallet`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            wallet: None,
            handlers: Vec::new(),
            policy: None,
            directory: None,
            limits: AgentLimits::default(),
        }
    }

    /// The agent's wallet, which is its identity.
    #[must_use]
    pub fn wallet(mut self, wallet: impl Into<Arc<Wallet>>) -> Self {
        self.wallet = Some(wallet.into());
        self
    }

    /// Adds a skill.
    #[must_use]
    pub fn skill<S: Skill>(mut self, skill: S) -> Self {
        self.handlers.push(Arc::new(Adapter(Arc::new(skill))));
        self
    }

    /// The spending policy: the only way the agent can pay.
    #[must_use]
    pub fn policy(mut self, policy: Arc<SpendingPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Where the agent finds peers: the on-chain registry
    /// (`registry::RegistryDirectory`, feature `registry`) or a [`StaticDirectory`].
    #[must_use]
    pub fn directory(mut self, directory: impl Directory) -> Self {
        self.directory = Some(Arc::new(directory));
        self
    }

    /// Mailbox size, message lifetime, default ask timeout, check memory.
    #[must_use]
    pub fn limits(mut self, limits: AgentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Starts the agent on `host`.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when an agent with this wallet already runs there, and
    /// [`Error::Host`] when two skills handle the same request kind.
    pub fn spawn(self, host: &Host) -> Result<AgentHandle> {
        let mut kinds: Vec<&str> = self.handlers.iter().map(|h| h.kind()).collect();
        kinds.sort_unstable();
        if let Some(w) = kinds.windows(2).find(|w| w.first() == w.get(1)) {
            return Err(Error::Host(format!(
                "agent {}: two skills handle {}",
                self.name,
                w.first().copied().unwrap_or_default()
            )));
        }
        host.spawn_agent(AgentSpec {
            name: self.name,
            wallet: self.wallet.unwrap_or_else(|| Arc::new(Wallet::random())),
            handlers: self.handlers,
            policy: self.policy,
            directory: self.directory,
            limits: self.limits,
        })
    }
}
