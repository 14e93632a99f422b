//! # agent-sdk
//!
//! What agent authors will use: the `Skill` trait, `AgentBuilder`, `Context` and a
//! prelude, as a facade over `agent-core`. Payments go only through the
//! [`wallets::SpendingPolicy`].
//!
//! Not built yet: this crate is the placeholder the workspace layout fixes, and it
//! exports nothing so far.
