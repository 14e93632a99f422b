//! The negotiation crate's error type.

use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a negotiation, a payment, a settlement or an audit.
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

    /// A wallet operation (signing, recovery) failed.
    #[error(transparent)]
    Wallet(#[from] wallets::Error),

    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The agent runtime failed (no route, timeout, refused message, store).
    #[error("agent runtime: {0}")]
    Runtime(#[from] agent_sdk::Error),

    /// A chain call failed.
    #[error("chain: {0}")]
    Chain(#[from] registry::chain::ChainError),

    /// The directory knows no seller of the skill at that price.
    #[error("no seller of {kind} at {max_price} or less")]
    NoSellers {
        /// The skill.
        kind: String,
        /// The most the buyer would pay.
        max_price: wallets::Amount,
    },

    /// Sellers were called but none made an acceptable proposal.
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
    #[error("the negotiation wallet {wallet} is not the agent's ({agent})")]
    WrongWallet {
        /// The wallet the skill holds.
        wallet: wallets::Address,
        /// The agent it runs as.
        agent: wallets::Address,
    },

    /// A buyer's [`DeliveryCheck`](crate::DeliveryCheck) could not check a delivery
    /// (as opposed to refusing it): nothing was disputed and the deal stays open.
    #[error("the delivery check could not be made: {0}")]
    DeliveryCheck(String),

    /// A journal entry whose body is not a negotiation entry's (unknown kind or
    /// field, a value of the wrong form).
    #[error(transparent)]
    JournalBody(#[from] crate::journal::BodyError),
}

impl Error {
    /// Whether hiring another seller cannot help: the spending policy refused the
    /// payment, and would refuse it to anyone.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, Self::PaymentRefused { .. })
    }
}
