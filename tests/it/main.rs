//! Integration tests of the `agora` binary and of the crates working together.

mod audit_browser;
mod audit_cli;
mod browser;
mod chain_cli;
mod config_cli;
#[cfg(feature = "llm")]
mod demo;
mod model_cli;
#[cfg(feature = "llm")]
mod multihost;
#[cfg(feature = "llm")]
mod oracle_cli;
mod up;
mod wallet_cli;

/// Held by the tests that run the real model in a subprocess (the demo, `agora up`):
/// two of them at once on a small machine slow each other past their timeouts.
#[cfg(feature = "llm")]
pub(crate) static MODEL_SUBPROCESS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
