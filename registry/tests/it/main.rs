//! Integration tests of the registry crate: the embedded devnet and the contracts on it.

mod devnet;
mod discovery;
