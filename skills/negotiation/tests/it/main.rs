//! Integration tests of the `negotiation` crate, one binary (see STYLE.md): whole
//! deals between real agents over loopback on the embedded devnet, adversarial peers,
//! crashes at every step, channels and the audit.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod adversarial;
mod audit;
mod channel;
mod crash;
mod deals;
mod delivery_check;
