//! The runtime's errors.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wallets::{Address, B256};

use crate::envelope::Rejection;

/// Errors of the agent runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The agent's store could not be read or written.
    #[error("agent store at {path}: {source}")]
    Store {
        /// The store's directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// Writing the store to disk failed.
    #[error("agent store at {path}: flush failed: {reason}")]
    Flush {
        /// The store's directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A stored record did not decode.
    #[error("agent store: corrupt {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it did not decode.
        reason: String,
    },
    /// A dialogue id used by a peer other than the one the dialogue belongs to.
    #[error("{0}")]
    ForeignDialogue(Box<ForeignDialogue>),
    /// No route to the recipient: not on this host and no endpoint known.
    #[error("no route to agent {0}: not on this host and no endpoint known")]
    NoRoute(Address),
    /// The recipient's mailbox or connection is gone.
    #[error("agent {0} is not running")]
    Stopped(Address),
    /// The transport failed.
    #[error("transport to {peer}: {reason}")]
    Transport {
        /// Where to.
        peer: String,
        /// What failed.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("no reply from {peer} in dialogue {dialogue} within {millis} ms")]
    Timeout {
        /// Who was asked.
        peer: Address,
        /// The dialogue.
        dialogue: B256,
        /// The timeout.
        millis: u64,
    },
    /// The peer's host refused the message before any handler saw it.
    #[error("refused by {peer}: {reason}")]
    Refused {
        /// Who refused.
        peer: Address,
        /// Why (rate limit, overload, bad envelope ...).
        reason: String,
    },
    /// The envelope checks dropped a message.
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The remote skill answered with an error.
    #[error("{0}")]
    Skill(#[from] SkillError),
    /// A payload did not (de)serialize as its declared type.
    #[error("payload of kind {kind}: {reason}")]
    Payload {
        /// The message kind.
        kind: String,
        /// What was wrong.
        reason: String,
    },
    /// Signing failed or was refused.
    #[error("wallet: {0}")]
    Wallet(#[from] wallets::Error),
    /// An agent with this address already runs on the host.
    #[error("agent {0} is already running on this host")]
    Duplicate(Address),
    /// The host could not start or has shut down.
    #[error("host: {0}")]
    Host(String),
    /// An HTTP service could not be mounted under this prefix.
    #[error("cannot mount an HTTP service at {prefix:?}: {reason}")]
    Mount {
        /// The prefix asked for.
        prefix: String,
        /// Why not.
        reason: String,
    },
}

/// A dialogue used by a peer it does not belong to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dialogue {dialogue} belongs to {owner}, not to {peer}")]
pub struct ForeignDialogue {
    /// The dialogue.
    pub dialogue: B256,
    /// The peer it belongs to.
    pub owner: Address,
    /// The peer that used it.
    pub peer: Address,
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a skill answers with; it travels back to the asker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("skill error {code}: {message}")]
pub struct SkillError {
    /// A short stable code (`bad_request`, `unknown_skill`, `refused`, `failed`,
    /// `internal`...).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl SkillError {
    /// The code of [`SkillError::internal`].
    pub const INTERNAL: &'static str = "internal";

    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The request was malformed or not acceptable.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }

    /// The skill failed on its side. The message is for the agent's operator: an
    /// asker on another host gets only where to look in the host's log (the
    /// dialogue and message), never the message. Use another code for what the
    /// asker should read.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL, message)
    }

    /// What an asker on another host, or a client of a gateway, may read of this
    /// error: the error itself, or for an `internal` one only where the operator
    /// finds it; `reference` says what the host's log files it under (a dialogue, a
    /// task, a payment). The caller logs the original.
    #[must_use]
    pub fn for_asker(self, reference: impl std::fmt::Display) -> Self {
        if self.code == Self::INTERNAL {
            Self::internal(format!(
                "the skill failed on the agent's side; its host's log has the details \
                 ({reference})"
            ))
        } else {
            self
        }
    }

    /// The skill could not do what was asked, for a reason meant for the asker
    /// (no seller found, a budget too small ...).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new("failed", message)
    }
}
