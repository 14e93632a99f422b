//! # agent-core
//!
//! The Agora agent runtime. So far: [`envelope`], the signed message every agent
//! sends and the [`envelope::Inbox`] checks every message passes before a handler
//! sees it (recipient, chain, expiry, signature, duplicates, replays), with bounded
//! memory and a counter per rejection reason.
//!
//! Still to come (issue #4): agents as actix actors with persisted state and
//! supervision, the WebSocket transport and its tower layers.
//!
//! ```
//! use agent_core::envelope::{Draft, Envelope, Inbox, InboxLimits};
//! use wallets::{Wallet, B256};
//!
//! let (alice, bob) = (Wallet::random(), Wallet::random());
//! let env = Envelope::seal(&alice, Draft {
//!     recipient: bob.address(), dialogue: B256([1; 32]), sequence: 1,
//!     expiry: u64::MAX, chain_id: 1337, kind: "hello".into(),
//!     payload: serde_json::json!({"text": "hi"}),
//! })?;
//! let mut inbox = Inbox::new(bob.address(), 1337, InboxLimits::default());
//! let got = inbox.receive(&env.to_bytes(), 0).expect("a valid envelope");
//! assert_eq!(got.sender, alice.address());
//! assert!(inbox.receive(&env.to_bytes(), 0).is_err()); // a duplicate
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

pub mod envelope;
