//! # deploy
//!
//! An Agora deployment as a library: what `agora up`, `agora agent-run` and
//! `agora plan` do, without the command line.
//!
//! - [`config`]: `agents.toml`, parsed and validated, every error naming the file,
//!   line, column and key;
//! - [`layout`]: the state directory, the keystores' passwords, `up.json`;
//! - [`chain`]: the embedded devnet (deployed and funded for development) or a node
//!   by URL with its deployment;
//! - [`agent`]: one configured agent composed from its skills and started in this
//!   process ([`RunningAgent`]): weather sellers, LLM sellers and the oracle
//!   ([`llm_agent`], feature `llm`), travel agents, registration;
//! - [`demo`] (feature `llm`): the reference story once, end to end (`agora demo`);
//! - [`travel_agent`] (feature `llm`): the rules of paid work: only for a principal,
//!   the mandate sets the price, never hire twice while money is in flight;
//! - [`supervisor`]: agents as child processes, restarted with a doubling delay and
//!   stopped in order;
//! - [`dashboard`]: the operator's web dashboard of a running deployment: agents,
//!   money, live deals, history, journals, registry and chain;
//! - [`up`]: a whole deployment running: the chain, `up.json`, and every agent in a
//!   supervised child process (`agora up`).
//!
//! ```
//! use deploy::config::{Config, Network};
//!
//! let text = r#"
//! [network]
//! kind = "embedded"
//!
//! [agents.weather]
//! keystore = "keys/weather.json"
//! password_env = "WEATHER_PASSWORD"
//! listen = "127.0.0.1:7411"
//! skills = ["weather"]
//! services = [{ skill = "weather.forecast", price = "1.20 USDC", unit = "forecast" }]
//! "#;
//! let config = Config::parse("agents.toml".as_ref(), text)?;
//! assert!(matches!(config.network, Network::Embedded { .. }));
//! let weather = &config.agents[0];
//! assert_eq!(weather.services[0].price, "1.20 USDC".parse()?);
//! // A seller concedes down to 80 % of its listed price, no further.
//! assert_eq!(deploy::seller_floor(weather.services[0].price), "0.96 USDC".parse()?);
//!
//! // Every error says where: file, line, column and key.
//! let err = Config::parse("agents.toml".as_ref(), &text.replace("1.20 USDC", "lots")).unwrap_err();
//! assert!(err.to_string().starts_with("agents.toml:10:"), "{err}");
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

pub mod agent;
pub mod chain;
pub mod config;
pub mod dashboard;
#[cfg(feature = "llm")]
pub mod demo;
mod error;
pub mod layout;
#[cfg(feature = "llm")]
pub mod llm_agent;
mod messages;
pub mod supervisor;
#[cfg(feature = "llm")]
pub mod travel_agent;
pub mod up;

pub use agent::{seller_floor, AgentSite, RunningAgent, REGISTRATION_PATH};
pub use chain::ChainSetup;
pub use error::{Error, Result};
pub use messages::{PlanTrip, PlannedTrip};
pub use supervisor::{ChildSpec, Supervisor, SupervisorEvent};

/// The stablecoin's EIP-712 name in our deployments.
pub const TOKEN: &str = "USD Coin";
