//! # agent-core
//!
//! The Agora agent runtime.
//!
//! - [`Host`]: one process's actix system. Each agent is an actix actor with its own
//!   wallet, a bounded mailbox and persisted state ([`store`]), started under a
//!   supervisor that restarts it from that state when a skill panics.
//! - [`envelope`]: the signed message between hosts and the checks every message
//!   passes before a handler sees it (recipient, chain, expiry neither past nor
//!   beyond the host's maximum TTL, signature, duplicates, replays), with a counter
//!   per rejection reason.
//! - [`transport`]: WebSocket between hosts (one connection per host pair,
//!   reconnect with backoff, optional TLS with rustls) behind tower layers (rate limit, concurrency cap,
//!   timeout) that turn overload into back-pressure or a clear refusal, signed by
//!   the agent that refuses.
//! - [`http`]: the host's port is an HTTP/1.1 server (hyper). WebSocket upgrades
//!   of `/` and `/ws…` carry envelopes; other requests get the host's routes
//!   (`/health`, `/metrics`, agent cards) or an HTTP service mounted under a path
//!   prefix ([`Host::mount_http`]): the protocol gateways, an `axum::Router` each.
//! - [`metrics`]: `/metrics` in the Prometheus text format (messages, rejections
//!   by reason, payments, spending headroom, skill and HTTP latency histograms);
//!   upper layers add theirs with [`Host::register_metrics`].
//! - Routing: a remote agent is reached at its configured endpoint
//!   ([`Host::add_peer`], or found through a [`Directory`]) if it has one, else over
//!   the connection its last admitted envelope arrived on. Such learned routes are
//!   bounded ([`HostConfig::max_learned_routes`]) and never learned from an
//!   envelope that failed a check, so a replayed envelope cannot re-point one.
//! - [`Context`]: what a skill can do as its agent: tell, ask with a timeout, keep
//!   dialogue state, find peers, pay through the spending policy. An ask whose
//!   connection is lost before its answer fails then ([`Error::Transport`]), not at
//!   its timeout: the answer could only have come back on that connection.
//! - [`clock`]: where wall-clock time comes from. A host reads it from its
//!   [`Clock`] ([`HostConfig::clock`]): the system clock, or a [`ManualClock`] that
//!   tests move by hand. Wall-clock facts (expiries, the maximum TTL, replay-record
//!   pruning, state timestamps, what skills read through [`Context::clock`]) go
//!   through it; elapsed-time waits (ask timeouts, backoff, rate limits) stay on
//!   tokio's timers.
//!
//! Agents on the same host exchange Rust values through their mailboxes without
//! serializing or signing: the runtime stamps the sender itself, so it cannot be
//! forged inside the process, and the recipient still checks chain, expiry and
//! replays. Messages that leave the process are signed envelopes.
//!
//! ## Inside the crate
//!
//! Modules depend on each other in one direction only; none uses a module that
//! uses it back:
//!
//! ```text
//! host ─> agent ─> router ─> transport ─> port ─> link
//!
//! host      ─> agent, router, transport, http, port, store, tls
//! agent     ─> router, port, link, store, message
//! router    ─> transport, link
//! transport ─> http, port, link, tls
//! port      ─> link
//! and any of them ─> envelope, error, clock (which use nothing above them)
//! ```
//!
//! - `link`: one side of a connection, a bounded queue of frames.
//! - `port`: the delivery port, the trait through which the transport hands
//!   inbound envelopes and refusals to the agents of its host.
//! - `http`: the routes of HTTP requests that are not WebSocket upgrades (the
//!   host's own, mounted services), and the type-erased [`http::HttpService`].
//! - `transport`: connections (hyper serves the listening side, WebSocket
//!   upgrades become links), the edge's tower stack and its stateless checks; it
//!   knows links, the port and the HTTP routes, never agents or routes to them.
//! - `router`: routes to remote agents (configured endpoints, learned routes),
//!   dialing through the transport.
//! - `agent`: the actors, their [`Context`], and the table of local agents, which
//!   implements the port and is looked up before the router.
//! - `host`: builds all of the above and wires the port into the transport.
//!
//! Agent authors use the `agent-sdk` crate on top of this one.
//!
//! ```
//! use agent_core::envelope::{Draft, Envelope, Inbox, InboxLimits, Rejection};
//! use wallets::{Wallet, B256};
//!
//! let (alice, bob) = (Wallet::random(), Wallet::random());
//! let now = agent_core::clock::Clock::system().unix_ms();
//! let draft = Draft {
//!     recipient: bob.address(), dialogue: B256([1; 32]), sequence: 1,
//!     expiry: now + 60_000, chain_id: 1337, kind: "tell/hello".into(),
//!     payload: serde_json::json!({"text": "hi"}),
//! };
//! let env = Envelope::seal(&alice, draft.clone())?;
//! let mut inbox = Inbox::new(bob.address(), 1337, InboxLimits::default());
//! let got = inbox.receive(&env.to_bytes(), now).expect("a valid envelope");
//! assert_eq!(got.sender, alice.address());
//! assert!(inbox.receive(&env.to_bytes(), now).is_err()); // a duplicate
//! // An expiry beyond the maximum TTL (10 minutes by default) is refused.
//! let forever = Envelope::seal(&alice, Draft { sequence: 2, expiry: u64::MAX, ..draft })?;
//! assert!(matches!(
//!     inbox.receive(&forever.to_bytes(), now),
//!     Err(Rejection::ExpiryTooFar { .. })
//! ));
//! # Ok::<(), agent_core::envelope::EnvelopeError>(())
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

mod agent;
pub mod clock;
pub mod envelope;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod host;
pub mod http;
mod link;
pub mod message;
pub mod metrics;
mod port;
mod router;
pub mod store;
mod tls;
pub mod transport;

pub use agent::{
    AgentHandle, AgentLimits, AgentSpec, AgentStats, Context, Directory, Peer, SkillHandler,
    StateUpdate, StaticDirectory,
};
pub use clock::{Clock, ManualClock};
pub use error::{Error, ForeignDialogue, Result, SkillError};
pub use host::{Host, HostConfig};
pub use message::{Payload, Request};
pub use prometheus_client;
pub use tls::{ClientTls, ServerTls};
pub use transport::{EdgeLimits, EdgeStats};
