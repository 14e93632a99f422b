//! # wallets
//!
//! Everything an Agora agent needs to hold and spend money safely, with no actor or
//! chain code in it:
//!
//! - [`Wallet`]: a secp256k1 key ([`k256`]) with its EIP-55 [`Address`]; the secret is
//!   zeroized on drop and never printed.
//! - Signing and recovery: EIP-191 personal messages ([`eip191`]) and EIP-712 typed
//!   data ([`eip712`]: Rust structs through [`Eip712`], JSON through [`TypedData`]);
//!   [`Signature`]s are recoverable and low-s, and high-s or wrong-length signatures
//!   are rejected. The elliptic curve work (signing, recovery, verification) is
//!   libsecp256k1's, through the `secp256k1` crate; the crate has none of its own.
//! - [`keystore`]: Web3 Secret Storage v3 files (scrypt and pbkdf2 on read, scrypt on
//!   write) that geth, cast and eth-account read and write too.
//! - [`Amount`]: integer base units of a 6-decimal stablecoin.
//! - [`SpendingPolicy`]: per-deal, per-peer and rolling-day limits with allow and deny
//!   lists; [`SpendingPolicy::authorize`] is the only way to get a [`Payment`] signed:
//!   EIP-3009 authorizations, escrow permits, payment channel funding
//!   ([`ReceiveWithAuthorization`]) and channel [`Voucher`]s (counted by their increment).
//! - [`Eip1559Transaction`]: transactions the wallet signs only when they move no
//!   money ([`Wallet::sign_transaction`]).
//! - [`journal`]: the append-only, hash-chained, signed, crash-safe payment journal.
//!
//! ```
//! use wallets::{Signature, Wallet};
//!
//! let wallet = Wallet::random();
//! let sig: Signature = wallet.sign_message("hello agents")?;
//! assert_eq!(sig.recover_message(b"hello agents")?, wallet.address());
//! // The signature survives a round trip through its 65-byte hex form.
//! let parsed: Signature = sig.to_string().parse()?;
//! assert_eq!(parsed, sig);
//! # Ok::<(), wallets::Error>(())
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod amount;
pub mod eip191;
pub mod eip712;
mod error;
#[cfg(test)]
mod fuzz_tests;
pub mod journal;
pub mod keystore;
mod mandate;
mod payment;
mod policy;
mod primitives;
mod scrypt;
mod signature;
pub mod store;
mod transaction;
mod wallet;

pub use amount::Amount;
pub use eip712::{Eip712, Eip712Domain, TypedData};
pub use error::{Error, PolicyViolation, Result};
pub use journal::{Journal, JournalEntry};
pub use keystore::{KdfStrength, KeystoreFile};
pub use mandate::{Commission, Mandate, MandateViolation, Mandates};
pub use payment::{
    Channel, ChannelFunding, Payment, Permit, ReceiveWithAuthorization, SignedPayment,
    TransferWithAuthorization, Voucher,
};
pub use policy::{Limits, SpendingPolicy, WINDOW_SECS};
pub use primitive_types::U256;
pub use primitives::{keccak256, Address, B256};
pub use signature::{PublicKey, Signature};
pub use transaction::{Eip1559Transaction, TxPolicy};
pub use wallet::Wallet;
