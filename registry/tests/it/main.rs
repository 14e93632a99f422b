//! Integration tests of the registry crate: the embedded devnet and the contracts on it.

mod cast;
mod channel;
mod devnet;
mod discovery;
mod escrow;
mod proxy;
mod support;
