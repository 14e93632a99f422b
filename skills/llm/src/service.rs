//! Inference as a service (feature `service`): LLM completions and extractions sold
//! between agents through the negotiation, every result attested, checked by the
//! buyer and, in a dispute, ruled on by re-running it.
//!
//! - Sellers: [`LlmService`] sells `llm.complete` or `llm.extract` from a shared
//!   [`LlmEngine`](crate::LlmEngine). The task is an [`InferenceTask`] as JSON
//!   (untrusted: parsed, bounded, validated); the result is [`inference_result`] of
//!   the job's [`InferenceRecord`](crate::InferenceRecord), the attestation an
//!   [`AttestedInference`] (the record and the seller's signature in the
//!   [`attestation_domain`](crate::attestation_domain) of the deal's chain).
//! - Buyers: [`AttestationCheck`] is a [`negotiation::DeliveryCheck`]
//!   (`Buyer::with_delivery_check`): signature, hashes, result, the seller's
//!   registered and unsuspended model, the task; and with a local engine of the same
//!   model, a deterministic share of re-runs. A refused delivery is disputed (on chain
//!   in `escrow` mode; journaled, without a receipt, in `channel` mode).
//! - Arbiters: [`InferenceArbiter`] rules on a disputed escrow by re-running the
//!   attested inference and calls `JobEscrow.resolveDispute`: the buyer refunded in
//!   full on a proven mismatch, the seller paid when the re-run matches.
//! - HTTP clients (x402, A2A): an agent sells the same service over x402 with
//!   [`task_schema`] and [`result_schema`], and serves [`served_attestation`] (the
//!   signature without the record) beside each result; the client checks it with
//!   [`check_served`].
//! - Auditors: [`rerun_journals`] re-runs every attested inference of the delivery
//!   entries of payment journals (`agora audit --model`).
//!
//! Re-runs are bit-exact with the seller's run when both use the same model file,
//! the same llama.cpp build and backend (CPU: any thread count and batch layout, see
//! the crate docs); a GPU seller should attest runs made [`Isolation::Alone`]
//! (`LlmService::with_isolation`), and a verifier on another backend or build may see
//! a different output for an honest job.
//!
//! [`Isolation::Alone`]: crate::Isolation::Alone

mod arbiter;
mod audit;
mod check;
mod seller;
mod task;
mod wire;

pub use arbiter::{DisputedInference, InferenceArbiter, Resolution, Ruling};
pub use audit::{rerun_journals, InferenceAudit};
pub use check::AttestationCheck;
pub use seller::{LlmService, DEFAULT_SELLER_MAX_TOKENS};
pub use task::task_schema;
pub use task::{
    InferenceKind, InferenceRequest, InferenceTask, COMPLETE_KIND, DEFAULT_MAX_TOKENS,
    EXTRACT_KIND, MAX_MESSAGES, MAX_PROMPT_BYTES, MAX_SCHEMA_BYTES, MAX_TASK_BYTES,
};
pub use wire::{
    check_served, inference_result, result_schema, served_attestation, AttestedInference,
    ATTESTED_INFERENCE_TYPE, SERVED_INFERENCE_TYPE,
};
