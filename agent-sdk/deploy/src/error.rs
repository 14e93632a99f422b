//! The deploy crate's error type.

use std::path::PathBuf;

use crate::config::ConfigError;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in reading a deployment, composing its agents or
/// supervising them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `agents.toml` is invalid (the error names the file, line, column and key).
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"reading"`, `"creating"`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A state file (`addresses.json`, `up.json`) is not what it must be.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The environment variable with an agent's keystore password is missing or empty.
    #[error("agent {agent}: the environment variable {var} that holds its keystore password is {problem}")]
    Password {
        /// The agent.
        agent: String,
        /// The variable (`password_env` in agents.toml).
        var: String,
        /// `"not set"` or `"empty"`.
        problem: &'static str,
    },

    /// An agent's keystore does not open, or holds another address than it states.
    #[error("agent {agent}: opening the keystore {} with the password in ${var}: {source}", path.display())]
    Keystore {
        /// The agent.
        agent: String,
        /// The keystore file.
        path: PathBuf,
        /// The password's variable.
        var: String,
        /// Why it does not open.
        source: Box<wallets::Error>,
    },

    /// An agent's keystore states another address than the key it holds.
    #[error("agent {agent}: keystore {} is inconsistent: it states {stated} but holds the key of {actual}", path.display())]
    KeystoreAddress {
        /// The agent.
        agent: String,
        /// The keystore file.
        path: PathBuf,
        /// The address written in the file.
        stated: wallets::Address,
        /// The address of the decrypted key.
        actual: wallets::Address,
    },

    /// The deployment names no agent of that name.
    #[error("{}: no agent {name:?}", config.display())]
    NoAgent {
        /// The deployment file.
        config: PathBuf,
        /// The name asked for.
        name: String,
    },

    /// An agent's skills cannot be composed as configured.
    #[error("agent {agent}: {reason}")]
    Composition {
        /// The agent.
        agent: String,
        /// What is missing or contradictory.
        reason: String,
    },

    /// The chain named by the deployment is not usable (no deployment there, another
    /// chain id, contracts without code).
    #[error("network {url}: {reason}")]
    Network {
        /// The node's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },

    /// A wallet, policy, mandate or journal operation failed.
    #[error(transparent)]
    Wallet(#[from] wallets::Error),

    /// A chain call failed.
    #[error("chain: {0}")]
    Chain(#[from] registry::chain::ChainError),

    /// The embedded chain failed to start or to act.
    #[error("embedded chain: {0}")]
    Devnet(#[from] registry::devnet::DevnetError),

    /// Registry discovery failed.
    #[error("registry discovery: {0}")]
    Discovery(#[from] registry::discovery::DiscoveryError),

    /// The agent runtime failed (binding the listen address, spawning an agent).
    #[error("agent runtime: {0}")]
    Runtime(#[from] agent_sdk::Error),

    /// The weather skill failed to start.
    #[error(transparent)]
    Weather(#[from] weather::Error),

    /// The x402 seller failed to start (its sale store, its configuration).
    #[error("x402: {0}")]
    X402(#[from] x402::Error),

    /// The x402 buyer failed to open (its purchase store).
    #[error("x402 buyer: {0}")]
    X402Buyer(#[from] Box<x402::buyer::BuyError>),

    /// The A2A gateway failed to start (its task store, its configuration).
    #[error("A2A: {0}")]
    A2a(#[from] a2a::Error),

    /// The dashboard cannot be served as asked.
    #[error("dashboard: {0}")]
    Dashboard(String),

    /// The travel agent's model failed to load.
    #[cfg(feature = "llm")]
    #[error(transparent)]
    Llm(#[from] llm::Error),

    /// The travel agent's planner failed to start.
    #[cfg(feature = "llm")]
    #[error(transparent)]
    Travel(Box<travel::Error>),
}

#[cfg(feature = "llm")]
impl From<travel::Error> for Error {
    fn from(e: travel::Error) -> Self {
        Self::Travel(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
