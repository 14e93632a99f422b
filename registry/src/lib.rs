//! # registry
//!
//! The on-chain layer: the Solidity contracts in `registry/contracts` (Stablecoin,
//! AgentRegistry, JobEscrow, reputation and governance), their ethers bindings, the
//! embedded EVM devnet and the discovery client.
//!
//! Not built yet: the contracts are being written; the Rust side exports nothing so far.
