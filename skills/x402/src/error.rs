//! The crate's error type.

use std::path::PathBuf;

/// Errors of the x402 crate. Protocol-level refusals (a payment that does not verify)
/// are not errors: they are [`crate::verify::Invalid`] values that become the
/// protocol's `invalidReason` / `errorReason`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An x402 header is longer than [`crate::wire::MAX_HEADER_LEN`].
    #[error("{header} header: {len} bytes, more than the {max} allowed")]
    HeaderTooLarge {
        /// The header's name.
        header: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An x402 header is not standard base64 (with padding).
    #[error("{header} header: not standard base64 with padding: {reason}")]
    HeaderBase64 {
        /// The header's name.
        header: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// An x402 header's content is not UTF-8 JSON of the expected object.
    #[error("{header} header: not UTF-8 JSON of a {expected}: {reason}")]
    HeaderJson {
        /// The header's name.
        header: &'static str,
        /// The object it should hold (`PaymentPayload`, …).
        expected: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A value could not be encoded as JSON.
    #[error("encoding {what} as JSON: {reason}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A network identifier is not `eip155:<chain id>`.
    #[error("network {0:?} is not of the form eip155:<chain id>")]
    Network(String),
    /// The settlement record store could not be opened, read or written.
    #[error("settlement store {path}: {message}")]
    Store {
        /// Its directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Chain access failed.
    #[error(transparent)]
    Chain(#[from] registry::chain::ChainError),
    /// A configuration that cannot work (e.g. no asset to settle).
    #[error("facilitator configuration: {0}")]
    Config(String),
    /// An x402 seller that cannot work (its wallet is not the agent's, a skill name
    /// that is no URL segment, clashing schemas).
    #[error("x402 seller configuration: {0}")]
    SellerConfig(String),
    /// Binding or serving a socket failed.
    #[error("{what} {addr}: {source}")]
    Io {
        /// What was being done (`binding`, `serving`).
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
