//! The crate's error type.

use std::path::PathBuf;

use crate::{Address, Amount};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the wallets crate.
///
/// Variants carry the context a user needs to act on the error (which file, which
/// field, which peer). No variant ever carries a secret: keys and passwords never
/// reach an error message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hex string could not be decoded.
    #[error("invalid hex in {what}: {reason}")]
    Hex {
        /// What was being parsed (e.g. "address", "signature").
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A byte string had the wrong length.
    #[error("{what} must be {expected} bytes, got {actual}")]
    Length {
        /// What was being parsed.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// A mixed-case address whose EIP-55 checksum does not match.
    #[error("address {0} has a wrong EIP-55 checksum")]
    Checksum(String),
    /// The bytes are not a valid secp256k1 secret key (zero or above the curve order).
    #[error("invalid secp256k1 secret key")]
    InvalidSecretKey,
    /// The signature's `s` is in the upper half of the curve order (malleable form).
    #[error("signature has a high s value; only low-s (EIP-2) signatures are accepted")]
    HighS,
    /// The signature's recovery id `v` is not 0, 1, 27 or 28.
    #[error("signature recovery id v = {0} is invalid; expected 27 or 28 (or 0 or 1)")]
    InvalidRecoveryId(u8),
    /// The signature is malformed or does not recover to a public key.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// The signature is valid but was made by someone else.
    #[error("signature was made by {actual}, expected {expected}")]
    WrongSigner {
        /// The address the signature should come from.
        expected: Address,
        /// The address it actually recovers to.
        actual: Address,
    },
    /// EIP-712 typed data could not be encoded.
    #[error("EIP-712 typed data: {path}: {reason}")]
    TypedData {
        /// Where in the typed data the problem is (e.g. `message.to.wallet`).
        path: String,
        /// What is wrong there.
        reason: String,
    },
    /// A payment type was given to a plain signing function.
    #[error(
        "refusing to sign a `{0}` outside the spending policy; payments are signed only by SpendingPolicy::authorize"
    )]
    PaymentOutsidePolicy(String),
    /// A transaction its [`crate::TxPolicy`] does not allow.
    #[error("refusing to sign the transaction: {0}")]
    TransactionRefused(String),
    /// A request was refused under its principal's mandate ([`crate::Mandates`]).
    #[error("refused for {principal}: {reason}")]
    MandateRefused {
        /// Who asked.
        principal: Address,
        /// The rule.
        reason: crate::mandate::MandateViolation,
    },
    /// A keystore file could not be read or written.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The keystore file (or `<memory>`).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The keystore's MAC does not match: wrong password or corrupted file.
    #[error("keystore {0}: wrong password or corrupted file (MAC mismatch)")]
    KeystoreMac(PathBuf),
    /// An amount string could not be parsed.
    #[error("invalid amount {input:?}: {reason}")]
    AmountParse {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Amount arithmetic overflowed or went below zero.
    #[error("amount arithmetic {0}")]
    AmountOverflow(&'static str),
    /// The spending policy refused a payment.
    #[error("payment {payment_id} of {amount} to {payee} refused: {reason}")]
    PolicyDenied {
        /// The payment's idempotency id.
        payment_id: String,
        /// The payee.
        payee: Address,
        /// The amount requested.
        amount: Amount,
        /// The policy rule that refused it.
        reason: PolicyViolation,
    },
    /// A payment id was reused for a different payment.
    #[error("payment id {0} was already used for a different payment")]
    PaymentIdReused(String),
    /// The payment journal is invalid at some entry.
    #[error("journal {path}: entry {index}: {reason}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// Zero-based index of the first bad entry.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Persistent storage (sled) failed.
    #[error("storage {path}: {source}")]
    Storage {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data could not be decoded.
    #[error("{what}: corrupt stored record: {reason}")]
    Corrupt {
        /// Which store.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why the spending policy refused a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// The payee is on the deny-list.
    #[error("payee is on the deny-list")]
    Denied,
    /// An allow-list is set and the payee is not on it.
    #[error("payee is not on the allow-list")]
    NotAllowed,
    /// The amount exceeds the per-deal limit.
    #[error("amount exceeds the per-deal limit of {limit}")]
    PerDeal {
        /// The configured limit.
        limit: Amount,
    },
    /// The payment would exceed the per-peer limit in the rolling window.
    #[error("would bring spending to this peer in the last 24h to {would_be}, over the limit of {limit}")]
    PerPeer {
        /// The configured limit.
        limit: Amount,
        /// What the total would have become.
        would_be: Amount,
    },
    /// The payment would exceed the daily limit in the rolling window.
    #[error(
        "would bring total spending in the last 24h to {would_be}, over the daily limit of {limit}"
    )]
    Daily {
        /// The configured limit.
        limit: Amount,
        /// What the total would have become.
        would_be: Amount,
    },
    /// The payment is for zero.
    #[error("amount is zero")]
    Zero,
    /// The payment is signed by a different wallet than the policy's.
    #[error("payment is from {0}, not from this wallet")]
    WrongPayer(Address),
    /// A channel voucher is not above the last voucher signed for its channel.
    #[error("the channel's last voucher was for {last} in all; a voucher must be above it")]
    StaleVoucher {
        /// The cumulative amount of the channel's last voucher.
        last: Amount,
    },
    /// A channel payment does not match the channel it names.
    #[error("channel payment does not match its channel: {0}")]
    ChannelMismatch(&'static str),
    /// Channel funding or a voucher for a contract the policy was not told to trust.
    #[error("{0} is not a trusted payment channel contract")]
    UntrustedChannelContract(Address),
    /// An escrow permit whose spender is not a trusted escrow contract.
    #[error("{0} is not a trusted escrow contract")]
    UntrustedEscrowContract(Address),
    /// A token payment in an EIP-712 domain that is not one the policy is pinned to
    /// (another chain id, contract, name or version).
    #[error("the token domain {0} is not one this policy is pinned to")]
    UnpinnedToken(String),
    /// Before the limits' validity window opens.
    #[error("the limits are valid from {valid_from} (unix seconds), it is {now}")]
    NotYetValid {
        /// When the window opens.
        valid_from: u64,
        /// The policy's clock.
        now: u64,
    },
    /// After the limits' validity window closed.
    #[error("the limits expired at {valid_until} (unix seconds), it is {now}")]
    Expired {
        /// When the window closed.
        valid_until: u64,
        /// The policy's clock.
        now: u64,
    },
    /// The payment would exceed the number of payments allowed in the rolling window.
    #[error("would be payment number {would_be} in the last 24h, over the limit of {limit}")]
    Recurrence {
        /// The configured number.
        limit: u32,
        /// What the count would have become.
        would_be: u64,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn storage(path: impl Into<PathBuf>, source: sled::Error) -> Self {
        Self::Storage {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn typed(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::TypedData {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
