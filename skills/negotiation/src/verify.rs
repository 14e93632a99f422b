//! The buyer's own look at the chain: before it signs a receipt, a buyer checks that
//! the transaction a seller names really paid this agreement, instead of taking the
//! seller's word for it.

use std::sync::Arc;

use async_trait::async_trait;
use registry::chain::{self, Addresses, Deployment, TxEffects};
use wallets::{Address, Payment, SignedPayment, Wallet, B256};

use super::messages::{Agreement, Settled};
use crate::Result;

/// Read-only chain lookups a [`Buyer`](super::Buyer) checks payments with.
#[async_trait]
pub trait PaymentVerifier: Send + Sync + 'static {
    /// What transaction `tx` did to the stablecoin (and the escrow), read from its
    /// receipt; `None` when the chain knows no such transaction.
    ///
    /// # Errors
    /// [`Error::Chain`](crate::Error::Chain) when the node cannot be asked.
    async fn tx_effects(&self, tx: B256) -> Result<Option<TxEffects>>;

    /// The transaction that used the EIP-3009 authorization `(authorizer, nonce)`,
    /// if one did.
    ///
    /// # Errors
    /// [`Error::Chain`](crate::Error::Chain) when the node cannot be asked.
    async fn authorization_used(&self, authorizer: Address, nonce: B256)
        -> Result<Option<Settled>>;
}

/// [`PaymentVerifier`] on a chain through [`registry::chain`] (no key: it only reads).
#[derive(Debug)]
pub struct ChainVerifier {
    contracts: Deployment,
    from_block: u64,
}

impl ChainVerifier {
    /// Reads the deployment at `addresses` through the node at `url`.
    ///
    /// # Errors
    /// [`Error::Chain`](crate::Error::Chain) when the node cannot be reached.
    pub async fn connect(url: &str, addresses: &Addresses) -> Result<Self> {
        let client = chain::connect(url, Arc::new(Wallet::random())).await?;
        Ok(Self {
            contracts: Deployment::at(client, addresses),
            from_block: addresses.deployed_at,
        })
    }
}

#[async_trait]
impl PaymentVerifier for ChainVerifier {
    async fn tx_effects(&self, tx: B256) -> Result<Option<TxEffects>> {
        Ok(self.contracts.tx_effects(tx).await?)
    }

    async fn authorization_used(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<Option<Settled>> {
        let used = self
            .contracts
            .authorization_used(authorizer, nonce, self.from_block)
            .await?;
        Ok(used.map(|m| Settled {
            tx_hash: m.tx_hash,
            block: m.block,
            gas_used: m.gas_used,
        }))
    }
}

/// Why `settled` does not show the agreement paid by `payment` (an EIP-3009
/// authorization), if it does not: the transaction must be on chain, have
/// succeeded, used the payment's authorization and moved exactly the price from the
/// buyer to the seller, in the block and for the gas the seller says.
pub(crate) async fn authorization_problem(
    verifier: &dyn PaymentVerifier,
    a: &Agreement,
    payment: &SignedPayment,
    settled: &Settled,
) -> Result<Option<String>> {
    let Payment::Authorization { transfer, .. } = &payment.payment else {
        return Ok(Some("the payment is not an EIP-3009 authorization".into()));
    };
    let tx = settled.tx_hash;
    let Some(effects) = verifier.tx_effects(tx).await? else {
        return Ok(Some(format!(
            "the settling transaction {tx} is not on chain"
        )));
    };
    let problem = if !effects.success {
        Some(format!("the settling transaction {tx} reverted"))
    } else if !effects
        .authorizations_used
        .contains(&(transfer.from, transfer.nonce))
    {
        Some(format!(
            "transaction {tx} did not use this agreement's authorization (nonce {})",
            transfer.nonce
        ))
    } else if !effects
        .transfers
        .iter()
        .any(|t| t.from == a.buyer && t.to == a.seller && t.value == a.price)
    {
        Some(format!(
            "transaction {tx} moved no {} base units from {} to {}",
            a.price.base_units(),
            a.buyer,
            a.seller
        ))
    } else if (effects.tx.block, effects.tx.gas_used) != (settled.block, settled.gas_used) {
        Some(format!(
            "transaction {tx} is in block {} using {} gas, not block {} using {} as the seller says",
            effects.tx.block, effects.tx.gas_used, settled.block, settled.gas_used
        ))
    } else {
        None
    };
    Ok(problem)
}
