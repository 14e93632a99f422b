//! The buyer's own check of a delivery, beyond the protocol's: [`DeliveryCheck`].

use async_trait::async_trait;
use wallets::B256;

use super::messages::{Agreement, Deliver};
use crate::Result;

/// A delivery as a [`DeliveryCheck`] sees it: it arrived for an agreement the buyer
/// signed, its result matches its hash, the seller signed it, and its payment checked
/// out.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryToCheck<'a> {
    /// The delivery's dialogue: the deal's, or a channel order's own.
    pub dialogue: B256,
    /// The agreement (for a channel order, the channel's agreement: its `task_hash` is
    /// the channel call's, not the order's).
    pub agreement: &'a Agreement,
    /// The task the buyer asked for, when it knows it: always for a channel order and
    /// a deal made by [`Buyer::hire`](crate::Buyer::hire), never for a deal resumed
    /// after a restart ([`Buyer::resume`](crate::Buyer::resume)).
    pub task: Option<&'a str>,
    /// What the seller delivered.
    pub delivery: &'a Deliver,
}

impl DeliveryToCheck<'_> {
    /// Who delivered.
    pub fn seller(&self) -> wallets::Address {
        self.agreement.seller
    }
}

/// A buyer's check of what it bought, run on every delivery before the receipt
/// ([`Buyer::with_delivery_check`](crate::Buyer::with_delivery_check)): for example
/// that an attested LLM inference verifies, or that a result is well-formed.
///
/// A delivery the check refuses takes the protocol's dispute path, like a delivery
/// whose result does not match its hash: the buyer journals a `dispute` with the
/// delivery and signs no receipt; in `escrow` mode it also disputes the escrow on
/// chain, so that the arbiter rules instead of the seller being paid; in `channel`
/// mode the order's voucher has paid the seller, and the dispute stays in the journal
/// for the audit.
#[async_trait]
pub trait DeliveryCheck: Send + Sync + 'static {
    /// `Ok(None)` to accept the delivery, `Ok(Some(problem))` to dispute it.
    ///
    /// # Errors
    /// When the check could not be made (a node that does not answer): nothing is
    /// disputed, the deal stays open (a resumed buyer checks it again) and
    /// [`Buyer::hire`](crate::Buyer::hire) returns the error. Make one with
    /// [`Error::DeliveryCheck`](crate::Error::DeliveryCheck).
    async fn check(&self, delivery: DeliveryToCheck<'_>) -> Result<Option<String>>;
}

/// A shared check, so that its owner keeps a handle on it (to read what it counted).
#[async_trait]
impl<T: DeliveryCheck + ?Sized> DeliveryCheck for std::sync::Arc<T> {
    async fn check(&self, delivery: DeliveryToCheck<'_>) -> Result<Option<String>> {
        (**self).check(delivery).await
    }
}
