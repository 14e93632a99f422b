//! The seller's side: [`LlmService`].

use std::sync::Arc;

use agent_sdk::{Context, SkillError};
use async_trait::async_trait;
use negotiation::{Service, ServiceOutput};
use wallets::{Eip712Domain, Wallet};

use super::task::{InferenceKind, InferenceTask};
use super::wire::{inference_result, AttestedInference};
use crate::attestation::attestation_domain;
use crate::engine::{GenerationRequest, Isolation, LlmEngine};
use crate::grammar::GrammarLimits;
use crate::Error;

/// Most tokens an [`LlmService`] generates per job unless told otherwise.
pub const DEFAULT_SELLER_MAX_TOKENS: u32 = 512;

/// Sells inference from a shared [`LlmEngine`] as a negotiation [`Service`]:
/// `llm.complete` ([`LlmService::complete`]) or `llm.extract`
/// ([`LlmService::extract`]), the task an [`InferenceTask`] as JSON.
///
/// Each job's result is [`inference_result`] of its record (`{"model", "output"}`),
/// and its attestation an [`AttestedInference`]: the record and the seller's
/// signature in the [`attestation_domain`] of the deal's chain. A buyer checks both
/// with an [`AttestationCheck`](super::AttestationCheck).
pub struct LlmService {
    engine: Arc<LlmEngine>,
    wallet: Arc<Wallet>,
    domain: Eip712Domain,
    kind: InferenceKind,
    max_tokens: u32,
    isolation: Isolation,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("kind", &self.kind)
            .field("signer", &self.wallet.address())
            .field("model", &self.engine.fingerprint())
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl LlmService {
    /// Sells `kind` with `engine`, attesting with `wallet` (the seller agent's) for
    /// chain `chain_id`.
    pub fn new(
        kind: InferenceKind,
        engine: Arc<LlmEngine>,
        wallet: Arc<Wallet>,
        chain_id: u64,
    ) -> Self {
        Self {
            engine,
            wallet,
            domain: attestation_domain(Some(chain_id)),
            kind,
            max_tokens: DEFAULT_SELLER_MAX_TOKENS,
            isolation: Isolation::Shared,
        }
    }

    /// Sells `llm.complete`.
    pub fn complete(engine: Arc<LlmEngine>, wallet: Arc<Wallet>, chain_id: u64) -> Self {
        Self::new(InferenceKind::Complete, engine, wallet, chain_id)
    }

    /// Sells `llm.extract`.
    pub fn extract(engine: Arc<LlmEngine>, wallet: Arc<Wallet>, chain_id: u64) -> Self {
        Self::new(InferenceKind::Extract, engine, wallet, chain_id)
    }

    /// Refuses jobs that may generate more than `max_tokens` tokens (default
    /// [`DEFAULT_SELLER_MAX_TOKENS`]).
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Decodes jobs with `isolation` (default [`Isolation::Shared`], bit-exact with a
    /// re-run on the CPU backend; ask for [`Isolation::Alone`] on GPUs, see the crate
    /// docs).
    #[must_use]
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// The kind sold.
    pub fn kind(&self) -> InferenceKind {
        self.kind
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<LlmEngine> {
        &self.engine
    }

    /// Runs one job for the task text `task` (untrusted) and attests it: what
    /// [`Service::perform`] does, without an agent.
    ///
    /// # Errors
    /// [`SkillError::bad_request`] for a task that does not parse, is for the other
    /// kind, has a schema without a grammar, asks for more tokens than this seller
    /// generates or does not fit the context; [`SkillError::internal`] when the
    /// engine or the signature fails.
    pub async fn serve(&self, task: &str) -> Result<ServiceOutput, SkillError> {
        let task = InferenceTask::parse(task).map_err(SkillError::bad_request)?;
        if task.kind() != self.kind {
            return Err(SkillError::bad_request(format!(
                "this seller sells {}; the task is for {} (a schema makes an extraction)",
                self.kind.as_str(),
                task.kind().as_str()
            )));
        }
        let request = task
            .request(GrammarLimits::default())
            .map_err(SkillError::bad_request)?;
        if request.params.max_tokens() > self.max_tokens {
            return Err(SkillError::bad_request(format!(
                "the task may generate {} tokens; this seller generates at most {}",
                request.params.max_tokens(),
                self.max_tokens
            )));
        }
        let mut generation = GenerationRequest::new(request.prompt)
            .with_params(request.params)
            .with_isolation(self.isolation);
        if let Some(grammar) = &request.grammar {
            generation = generation.with_grammar(grammar.as_str());
        }
        let completion = self
            .engine
            .generate(generation)
            .await
            .map_err(|e| match e {
                Error::ContextOverflow { .. } | Error::EmptyPrompt | Error::ChatTemplate { .. } => {
                    SkillError::bad_request(e.to_string())
                }
                other => SkillError::internal(other.to_string()),
            })?;
        let signed = completion
            .attest(&self.wallet, &self.domain)
            .map_err(|e| SkillError::internal(format!("signing the attestation: {e}")))?;
        let record = completion.into_record();
        let result = inference_result(&record);
        Ok(ServiceOutput {
            result,
            attestation: Some(AttestedInference { record, signed }.to_value()),
        })
    }
}

#[async_trait]
impl Service for LlmService {
    async fn perform(&self, ctx: &Context, task: &str) -> Result<ServiceOutput, SkillError> {
        if ctx.me() != self.wallet.address() {
            return Err(SkillError::internal(format!(
                "the LLM service attests as {}, but runs in agent {}",
                self.wallet.address(),
                ctx.me()
            )));
        }
        self.serve(task).await
    }
}
