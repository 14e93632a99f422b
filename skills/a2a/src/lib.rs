//! # a2a
//!
//! Agora's side of [A2A](https://a2a-protocol.org) 1.0 (Agent2Agent), as the real SDKs
//! speak it (PyPI `a2a-sdk` 1.3, npm `@a2a-js/sdk` 1.3): an [`A2aGateway`] serves a
//! host's agents to any A2A client, mounted on the host's HTTP edge at `/agents`
//! ([`http::router`]).
//!
//! - **Cards**: each agent at `/agents/<address>/.well-known/agent-card.json`, an A2A
//!   1.0 card with `supportedInterfaces` (JSON-RPC at `/agents/<address>/`, HTTP+JSON
//!   at `/agents/<address>`, protocol version 1.0), its skills and their descriptions,
//!   and streaming. `GET /agents` names the agents.
//! - **Methods**: `SendMessage`, `SendStreamingMessage` (server-sent events), `GetTask`,
//!   `ListTasks`, `CancelTask`, in both bindings; a client must send `A2A-Version: 1.x`.
//! - **Skills**: a message's first data part is the request (its text, when it has no
//!   data part); `message.metadata.skillId` names the skill, or the one skill that takes
//!   the request is chosen. [`A2aAgent::from_handle`] serves a running agent's skills
//!   ([`agent_sdk::AgentHandle::invoke`]: no sender, so paid work that needs a
//!   principal is refused); [`skill_fn`] serves a typed function.
//! - **Tasks** are kept in a sled store, so a restart keeps them (a task a stop left
//!   unfinished is marked failed). The result is an artifact with one data part.
//! - **Hiring**: [`client::A2aClient`] hires an outside A2A agent, paying through the
//!   agent's spending policy; [`market::Market::hire`] hires the cheapest seller of a
//!   kind among the Agora sellers and the A2A agents the registry lists.
//! - **Errors** are A2A errors with their codes ([`A2aError`]): JSON-RPC errors in a
//!   `200`, HTTP+JSON errors with their status and `google.rpc.ErrorInfo` reason. No
//!   input stops the gateway.
//!
//! ```
//! use std::sync::Arc;
//! use a2a::{skill_fn, wire::AgentSkill, A2aAgent, A2aGateway, GatewayConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let gateway = Arc::new(A2aGateway::open(GatewayConfig::new(dir.path().join("tasks"),
//!                                                            "http://127.0.0.1:7411"))?);
//! let me = wallets::Wallet::random().address();
//! gateway.add(A2aAgent::new(me, "greeter").skill(skill_fn(
//!     AgentSkill { id: "hello.greet".into(), name: "Greet".into(), ..Default::default() },
//!     |name: String| async move { Ok::<_, agent_sdk::SkillError>(format!("hello {name}")) },
//! )))?;
//! let card = gateway.card(me).unwrap();
//! assert_eq!(card.supported_interfaces[0].url, format!("http://127.0.0.1:7411/agents/{me}/"));
//! assert_eq!(card.skills[0].id, "hello.greet");
//! let app = a2a::http::router(gateway); // host.mount_http("/agents", app)
//! # drop(app);
//! # Ok::<(), Box<dyn std::error::Error>>(())
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

pub mod client;
mod error;
pub mod http;
pub mod market;
pub mod paid;
mod server;
mod store;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod wire;

pub use error::{A2aError, Error, Result};
pub use server::{skill_fn, A2aAgent, A2aGateway, A2aSkill, GatewayConfig, SKILL_ID_KEY};
