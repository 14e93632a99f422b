//! Settling payments on chain, behind a small trait so the skill does not care how.

use std::sync::Arc;

use async_trait::async_trait;
use registry::chain::{self, Addresses, Deployment};
use wallets::{Address, Eip712Domain, Payment, SignedPayment, Wallet};

use super::messages::Settled;
use crate::{Error, Result};

/// Where a seller settles the payments it is given.
#[async_trait]
pub trait Settlement: Send + Sync + 'static {
    /// The EIP-712 domain of the stablecoin payments are made in.
    fn token(&self) -> &Eip712Domain;

    /// Settles a signed EIP-3009 authorization (`transferWithAuthorization`) and
    /// waits until it is mined. Idempotent: an authorization that was already used
    /// gives the transaction that used it, so a retry never pays twice.
    ///
    /// # Errors
    /// [`Error::Chain`] when the node refuses it or cannot be reached.
    async fn settle_authorization(&self, payment: &SignedPayment) -> Result<Settled>;
}

/// [`Settlement`] on a chain through [`registry::chain`]: the seller's account
/// submits, and pays the gas.
#[derive(Debug)]
pub struct ChainSettlement {
    contracts: Deployment,
    token: Eip712Domain,
    from_block: u64,
}

/// The EIP-712 domain of the deployment's stablecoin, named `token_name` (as
/// `DeployConfig::token_name`, e.g. "USD Coin"), version "2" like USDC.
pub fn token_domain(addresses: &Addresses, token_name: &str) -> Eip712Domain {
    Eip712Domain::new(
        token_name,
        "2",
        addresses.chain_id,
        Address(addresses.stablecoin.0),
    )
}

impl ChainSettlement {
    /// Connects `wallet` to the node at `url` and binds the deployed contracts.
    ///
    /// # Errors
    /// [`Error::Chain`] when the node cannot be reached.
    pub async fn connect(
        url: &str,
        wallet: Arc<Wallet>,
        addresses: &Addresses,
        token_name: &str,
    ) -> Result<Self> {
        let client = chain::connect(url, wallet).await?;
        Ok(Self {
            contracts: Deployment::at(client, addresses),
            token: token_domain(addresses, token_name),
            from_block: addresses.deployed_at,
        })
    }
}

#[async_trait]
impl Settlement for ChainSettlement {
    fn token(&self) -> &Eip712Domain {
        &self.token
    }

    async fn settle_authorization(&self, payment: &SignedPayment) -> Result<Settled> {
        let Payment::Authorization { transfer, .. } = &payment.payment else {
            return Err(Error::Chain(chain::ChainError::Contract {
                call: "settle".into(),
                message: "not an EIP-3009 authorization".into(),
            }));
        };
        let used = || {
            self.contracts
                .authorization_used(transfer.from, transfer.nonce, self.from_block)
        };
        if let Some(m) = used().await? {
            tracing::info!(target: "skill::negotiation", tx = %m.tx_hash, "authorization already settled");
            return Ok(settled(m));
        }
        match self.contracts.transfer_with_authorization(payment).await {
            Ok(m) => Ok(settled(m)),
            // Someone (a concurrent retry) may have submitted it meanwhile.
            Err(e) => match used().await? {
                Some(m) => Ok(settled(m)),
                None => Err(e.into()),
            },
        }
    }
}

fn settled(m: chain::Mined) -> Settled {
    Settled {
        tx_hash: m.tx_hash,
        block: m.block,
        gas_used: m.gas_used,
    }
}
