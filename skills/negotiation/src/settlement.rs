//! Settling payments on chain, behind a small trait so the skill does not care how.

use std::sync::Arc;

use async_trait::async_trait;
use registry::chain::{self, Addresses, Deployment};
pub use registry::chain::{escrow_id_of, ChannelRecord, ChannelState, EscrowJob, EscrowState};
use wallets::{Address, Amount, Eip712Domain, Payment, SignedPayment, Wallet, B256};

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

    /// The `JobEscrow` contract escrow payments are locked in, if this settlement
    /// supports escrow.
    fn escrow_contract(&self) -> Option<Address> {
        None
    }

    /// The owner's current EIP-2612 permit nonce (the buyer builds its escrow permit
    /// with it).
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn permit_nonce(&self, owner: Address) -> Result<u64> {
        let _ = owner;
        Err(no_escrow())
    }

    /// Locks a signed escrow deposit (`lockWithPermit`, from the buyer's account) for
    /// delivery by `deadline` with a review window of `review_window` seconds.
    /// Idempotent: an escrow already locked gives the transaction that locked it.
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn lock_escrow(
        &self,
        payment: &SignedPayment,
        deadline: u64,
        review_window: u32,
    ) -> Result<Settled> {
        let _ = (payment, deadline, review_window);
        Err(no_escrow())
    }

    /// The escrow `escrow_id`.
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn escrow(&self, escrow_id: B256) -> Result<EscrowJob> {
        let _ = escrow_id;
        Err(no_escrow())
    }

    /// Records the delivery of `result_hash` (from the seller's account). Idempotent:
    /// an escrow already delivered gives the transaction that delivered it.
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn deliver_escrow(&self, escrow_id: B256, result_hash: B256) -> Result<Settled> {
        let _ = (escrow_id, result_hash);
        Err(no_escrow())
    }

    /// Accepts the delivery (from the buyer's account), which pays the seller.
    /// Idempotent: an escrow already released gives the transaction that released it
    /// (`None` if it cannot be found).
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn accept_escrow(&self, escrow_id: B256) -> Result<Option<Settled>> {
        let _ = escrow_id;
        Err(no_escrow())
    }

    /// Refunds an escrow whose seller missed the deadline (from the buyer's account).
    ///
    /// # Errors
    /// [`Error::Chain`] (also when the deadline has not passed on chain);
    /// [`Error::Config`] when escrow is not supported.
    async fn refund_escrow(&self, escrow_id: B256) -> Result<Settled> {
        let _ = escrow_id;
        Err(no_escrow())
    }

    /// Disputes a delivered escrow within its review window (from the buyer's
    /// account), so that it is not released to the seller; `reason_hash` is the hash
    /// of the complaint.
    ///
    /// # Errors
    /// [`Error::Chain`]; [`Error::Config`] when escrow is not supported.
    async fn dispute_escrow(&self, escrow_id: B256, reason_hash: B256) -> Result<Settled> {
        let _ = (escrow_id, reason_hash);
        Err(no_escrow())
    }
    /// Payment channels, if this settlement supports them.
    fn channels(&self) -> Option<&dyn Channels> {
        None
    }
}

/// Payment channels, for settlements that support them (see [`Settlement`]).
#[async_trait]
pub trait Channels: Send + Sync + 'static {
    /// The `PaymentChannel` contract.
    fn channel_contract(&self) -> Address;

    /// Opens or tops up a channel with a signed channel funding and waits until it is
    /// mined. Idempotent: a channel already opened with this funding gives the
    /// transaction that opened it.
    ///
    /// # Errors
    /// [`Error::Chain`].
    async fn fund_channel(&self, funding: &SignedPayment) -> Result<Settled>;

    /// The channel `channel_id`.
    ///
    /// # Errors
    /// [`Error::Chain`].
    async fn channel(&self, channel_id: B256) -> Result<ChannelRecord>;

    /// How much of the stablecoin `who` holds (the buyer sizes a channel's deposit
    /// to it).
    ///
    /// # Errors
    /// [`Error::Chain`].
    async fn token_balance(&self, who: Address) -> Result<Amount>;

    /// Settles a voucher (from the payee's account), or closes the channel with it
    /// (`close`: the rest of the deposit goes back to the payer).
    ///
    /// # Errors
    /// [`Error::Chain`].
    async fn settle_channel(&self, voucher: &SignedPayment, close: bool) -> Result<Settled>;
}

fn no_escrow() -> Error {
    Error::Config("this settlement does not support escrow payments".into())
}

/// [`Settlement`] on a chain through [`registry::chain`]: the seller's account
/// submits, and pays the gas.
#[derive(Debug)]
pub struct ChainSettlement {
    contracts: Deployment,
    token: Eip712Domain,
    escrow: Address,
    channel: Address,
    from_block: u64,
}

/// The EIP-712 domain of the deployment's stablecoin, named `token_name` (as
/// `DeployConfig::token_name`, e.g. "USD Coin"), version "2" like USDC.
pub fn token_domain(addresses: &Addresses, token_name: &str) -> Eip712Domain {
    addresses.token_domain(token_name)
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
        Ok(Self::with_client(
            chain::connect(url, wallet).await?,
            addresses,
            token_name,
        ))
    }

    /// As [`ChainSettlement::connect`], through a client connected already (for example
    /// with a fee cap of its own, [`chain::connect_with_fee_cap`]).
    pub fn with_client(
        client: Arc<chain::Client>,
        addresses: &Addresses,
        token_name: &str,
    ) -> Self {
        Self {
            contracts: Deployment::at(client, addresses),
            token: token_domain(addresses, token_name),
            escrow: Address(addresses.escrow.0),
            channel: Address(addresses.channel.0),
            from_block: addresses.deployed_at,
        }
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
    fn escrow_contract(&self) -> Option<Address> {
        Some(self.escrow)
    }

    async fn permit_nonce(&self, owner: Address) -> Result<u64> {
        Ok(self.contracts.permit_nonce(owner).await?)
    }

    async fn lock_escrow(
        &self,
        payment: &SignedPayment,
        deadline: u64,
        review_window: u32,
    ) -> Result<Settled> {
        let Payment::EscrowDeposit { permit, job_id, .. } = &payment.payment else {
            return Err(Error::Chain(chain::ChainError::Contract {
                call: "lock".into(),
                message: "not an escrow deposit".into(),
            }));
        };
        let id = escrow_id_of(permit.owner, *job_id);
        let locked = || self.contracts.escrow_lock_tx(id, self.from_block);
        if let Some(m) = locked().await? {
            return Ok(settled(m));
        }
        match self
            .contracts
            .lock_with_permit(payment, deadline, review_window)
            .await
        {
            Ok(m) => Ok(settled(m)),
            Err(e) => match locked().await? {
                Some(m) => Ok(settled(m)),
                None => Err(e.into()),
            },
        }
    }

    async fn escrow(&self, escrow_id: B256) -> Result<EscrowJob> {
        Ok(self.contracts.escrow_job(escrow_id).await?)
    }

    async fn deliver_escrow(&self, escrow_id: B256, result_hash: B256) -> Result<Settled> {
        let delivered = || {
            self.contracts
                .escrow_delivery_tx(escrow_id, self.from_block)
        };
        if let Some(m) = delivered().await? {
            return Ok(settled(m));
        }
        match self.contracts.deliver_escrow(escrow_id, result_hash).await {
            Ok(m) => Ok(settled(m)),
            Err(e) => match delivered().await? {
                Some(m) => Ok(settled(m)),
                None => Err(e.into()),
            },
        }
    }

    async fn accept_escrow(&self, escrow_id: B256) -> Result<Option<Settled>> {
        if self.contracts.escrow_job(escrow_id).await?.state == EscrowState::Released {
            let released = self
                .contracts
                .escrow_release_tx(escrow_id, self.from_block)
                .await?;
            return Ok(released.map(settled));
        }
        Ok(Some(settled(
            self.contracts.accept_escrow(escrow_id).await?,
        )))
    }

    async fn refund_escrow(&self, escrow_id: B256) -> Result<Settled> {
        Ok(settled(self.contracts.refund_escrow(escrow_id).await?))
    }

    async fn dispute_escrow(&self, escrow_id: B256, reason_hash: B256) -> Result<Settled> {
        Ok(settled(
            self.contracts
                .dispute_escrow(escrow_id, reason_hash)
                .await?,
        ))
    }

    fn channels(&self) -> Option<&dyn Channels> {
        Some(self)
    }
}

#[async_trait]
impl Channels for ChainSettlement {
    fn channel_contract(&self) -> Address {
        self.channel
    }

    async fn fund_channel(&self, funding: &SignedPayment) -> Result<Settled> {
        let Payment::ChannelFunding { channel, .. } = &funding.payment else {
            return Err(Error::Chain(chain::ChainError::Contract {
                call: "fund".into(),
                message: "not a channel funding".into(),
            }));
        };
        let id = channel.id();
        let opened = || self.contracts.channel_open_tx(id, self.from_block);
        if let Some(m) = opened().await? {
            return Ok(settled(m));
        }
        match self.contracts.fund_channel(funding).await {
            Ok(m) => Ok(settled(m)),
            Err(e) => match opened().await? {
                Some(m) => Ok(settled(m)),
                None => Err(e.into()),
            },
        }
    }

    async fn channel(&self, channel_id: B256) -> Result<ChannelRecord> {
        Ok(self.contracts.channel_record(channel_id).await?)
    }

    async fn token_balance(&self, who: Address) -> Result<Amount> {
        Ok(self.contracts.balance_of(who).await?)
    }

    async fn settle_channel(&self, voucher: &SignedPayment, close: bool) -> Result<Settled> {
        Ok(settled(
            self.contracts.settle_channel(voucher, close).await?,
        ))
    }
}

fn settled(m: chain::Mined) -> Settled {
    Settled {
        tx_hash: m.tx_hash,
        block: m.block,
        gas_used: m.gas_used,
    }
}
