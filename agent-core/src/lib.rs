//! # agent-core
//!
//! The Agora agent runtime. Each agent will be an actix actor with its own wallet,
//! bounded mailbox and persisted state; envelopes are EIP-712 signed with the
//! [`wallets`] crate and verified before any handler sees them; hosts talk over
//! WebSocket behind tower layers. See the workspace's DESIGN notes, "Runtime".
//!
//! Not built yet: this crate is the placeholder the workspace layout fixes, and it
//! exports nothing so far.
