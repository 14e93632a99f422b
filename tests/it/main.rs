//! Integration tests of the `agora` binary and of the crates working together.

mod audit_cli;
mod chain_cli;
mod config_cli;
#[cfg(feature = "llm")]
mod demo;
mod model_cli;
mod up;
mod wallet_cli;
