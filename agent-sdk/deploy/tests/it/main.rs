//! Integration tests of the `deploy` crate, one binary (see STYLE.md): a deployment's
//! agents composed and run in this process, without the command line, on the
//! embedded chain and the real default model.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "llm")]
mod deployment;
mod up;
mod x402;
