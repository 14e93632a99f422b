//! # registry
//!
//! Agora's on-chain layer:
//!
//! - the Solidity contracts in `registry/contracts` (`Stablecoin`, `AgentRegistry`,
//!   `JobEscrow`, `Reputation`, `PaymentChannel`, and the ERC-8004 `IdentityRegistry`,
//!   `ReputationRegistry` and `SettledFeedback`), compiled artifacts committed and
//!   checked in CI;
//! - [`chain`]: typed ethers bindings generated from those artifacts, a signer that
//!   keeps keys inside [`wallets`], and connection helpers: the only module that
//!   knows ethers. It also registers ERC-8004 identities linked to `AgentRegistry`
//!   and gives payment-backed ERC-8004 feedback ([`chain::Deployment::ensure_identity`],
//!   [`chain::Deployment::give_escrow_feedback`]);
//! - [`erc8004`]: ERC-8004 registration files (the JSON an identity's `agentURI`
//!   names), built from plain inputs;
//! - [`devnet`]: the embedded chain, an in-process EVM serving Ethereum JSON-RPC on a
//!   local port, persisted on disk.
//!
//! - [`discovery`]: registry events synced into a local sled cache that answers
//!   "who sells skill X at price ≤ P" without a chain round trip.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod anvil;
pub mod chain;
pub mod devnet;
pub mod discovery;
pub mod erc8004;
mod sender;
