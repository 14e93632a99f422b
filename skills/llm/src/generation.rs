//! What the engine and its inference thread share: a request's stream of events,
//! its finished [`Completion`], and the engine's counters. Both `engine` and
//! `worker` use this module, and it uses neither, so the two do not depend on each
//! other in both directions.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use wallets::{Eip712Domain, Wallet};

use crate::attestation::{InferenceRecord, SignedAttestation};
use crate::{Error, Result};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The model ended its turn (an end-of-generation token), or the grammar was
    /// complete.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// Where the time of a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// From submission until its prompt entered a decode step.
    pub queued: Duration,
    /// From submission until the first generated token.
    pub first_token: Duration,
    /// From submission until the end.
    pub total: Duration,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    record: InferenceRecord,
    tokens: Vec<i32>,
    prompt_tokens: usize,
    finish: FinishReason,
    timings: Timings,
}

impl Completion {
    pub(crate) fn new(
        record: InferenceRecord,
        tokens: Vec<i32>,
        prompt_tokens: usize,
        finish: FinishReason,
        timings: Timings,
    ) -> Self {
        Self {
            record,
            tokens,
            prompt_tokens,
            finish,
            timings,
        }
    }

    /// The generated text.
    pub fn text(&self) -> &str {
        &self.record.output
    }
    /// The generated token ids (without the end-of-generation token).
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }
    /// Tokens in the prompt, after the chat template.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }
    /// Why generation stopped.
    pub fn finish_reason(&self) -> FinishReason {
        self.finish
    }
    /// Where the time went.
    pub fn timings(&self) -> Timings {
        self.timings
    }
    /// What an attestation of this completion attests.
    pub fn record(&self) -> &InferenceRecord {
        &self.record
    }
    /// The record, by value.
    pub fn into_record(self) -> InferenceRecord {
        self.record
    }

    /// Signs an attestation of this completion with `wallet`.
    ///
    /// # Errors
    /// [`Error::Wallet`] if signing fails.
    pub fn attest(&self, wallet: &Wallet, domain: &Eip712Domain) -> Result<SignedAttestation> {
        SignedAttestation::sign(wallet, domain, self.record.attestation())
    }
}

/// One generated token, as streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token id.
    pub id: i32,
    /// The text it completes: empty while a multi-byte character is split across
    /// tokens, then the whole character.
    pub text: String,
}

/// What the inference thread sends to a request's stream.
#[derive(Debug)]
pub(crate) enum Event {
    Token(Token),
    Done(Box<Completion>),
    Failed(Error),
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) generated_tokens: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) decode_steps: AtomicU64,
    pub(crate) batched_sequences: AtomicU64,
    pub(crate) grammar_resamples: AtomicU64,
}
