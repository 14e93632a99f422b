//! # x402
//!
//! Agora's side of [x402](https://x402.org) v2, HTTP 402 payments, as the real clients
//! speak it (PyPI `x402` 2.25, npm `@x402/*` 2.27): an x402 `exact` payment on an EVM
//! chain is an EIP-3009 `transferWithAuthorization` of our `Stablecoin`, the same
//! payment as an Agora `authorization` payment.
//!
//! - [`wire`]: the v2 JSON objects ([`wire::PaymentRequired`],
//!   [`wire::PaymentRequirements`], [`wire::PaymentPayload`], [`wire::SettleResponse`],
//!   the facilitator API's requests and answers) and the header codec
//!   ([`wire::encode_header`], [`wire::decode_payment_signature`], …): standard padded
//!   base64 of UTF-8 JSON, at most [`wire::MAX_HEADER_LEN`] bytes.
//! - [`verify`]: the exact-EVM checks in the reference facilitator's order, each
//!   refusal an [`verify::Invalid`] with the x402 reason code ([`verify::InvalidReason`]).
//! - [`facilitator`]: a [`Facilitator`] that verifies and settles with a relayer wallet
//!   (settlements serialized, a used authorization never broadcast, a re-settle answered
//!   from a persistent record), and its axum [`facilitator::router`]
//!   (`POST /verify`, `POST /settle`, `GET /supported`, always HTTP 200).
//! - [`seller`]: an [`X402Seller`] that sells an agent's priced services at
//!   `POST /x402/<skill>`: 402 with the requirements and the bazaar schemas, the
//!   payment settled by the agent's wallet before the skill runs, each sale recorded
//!   before every irreversible step so that a retried payment gets its first result
//!   and is never charged twice, and journaled for `agora audit`
//!   ([`seller::router`], [`seller::serve`]); [`X402Seller::reconcile`] settles the
//!   account of sales a stopped process left mid-settlement.
//! - [`buyer`]: an [`X402Buyer`] that pays any x402 v2 server through the agent's
//!   [`wallets::SpendingPolicy`]: an offer in a pinned token, signed within the limits,
//!   stored and journaled before it is sent, re-sent (never re-signed) after a lost
//!   answer, one payment per purchase id.
//!
//! All chain access goes through [`registry::chain`].
//!
//! ```
//! use x402::wire::{self, PaymentRequired, PaymentRequirements, Network};
//! use x402::verify::InvalidReason;
//!
//! // What a seller puts in the PAYMENT-REQUIRED header of its 402.
//! let offer = PaymentRequirements {
//!     scheme: "exact".into(),
//!     network: Network::eip155(1337),
//!     amount: "950000".into(),
//!     asset: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
//!     pay_to: "0x209693bc6afc0c5328ba36faf03c514ef312287c".into(),
//!     max_timeout_seconds: 60,
//!     extra: Some(serde_json::from_str(r#"{"name":"USD Coin","version":"2"}"#)?),
//!     ..Default::default()
//! };
//! let required = PaymentRequired {
//!     x402_version: wire::X402_VERSION,
//!     error: Some("PAYMENT-SIGNATURE header is required".into()),
//!     accepts: vec![offer.clone()],
//!     ..Default::default()
//! };
//! let header = wire::encode_header(&required)?;
//!
//! // What a buyer reads back.
//! let read = wire::decode_payment_required(header.as_bytes())?;
//! let first = &read.accepts[0];
//! assert_eq!(first, &offer);
//! assert_eq!(first.network.chain_id()?, 1337);
//! assert_eq!(first.amount_units()?, 950_000u64.into());
//!
//! // Garbage is refused with a reason, never a panic.
//! let err = wire::decode_payment_signature(b"%%%").unwrap_err();
//! assert!(err.to_string().starts_with("PAYMENT-SIGNATURE header: not standard base64"));
//! assert_eq!(InvalidReason::NonceAlreadyUsed.as_str(), "invalid_exact_evm_nonce_already_used");
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

pub mod buyer;
mod error;
pub mod facilitator;
#[cfg(test)]
mod fuzz_tests;
mod locks;
pub mod seller;
mod server;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod verify;
pub mod wire;

pub use buyer::{BuyerConfig, Purchase, X402Buyer};
pub use error::{Error, Result};
pub use facilitator::{Facilitator, FacilitatorConfig, FacilitatorServer};
pub use seller::{Outcome, PricedService, Reconciled, SellerConfig, X402Seller};
pub use server::HttpServer;
