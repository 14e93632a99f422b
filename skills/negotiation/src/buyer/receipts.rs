//! Receipts of channel orders. Each order's receipt is signed, journaled with its
//! voucher and delivery and saved in one step; the receipts of one channel then travel to the
//! seller together: while one [`Receipts`] ask is in flight, the next receipts queue
//! up and leave in the following one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use agent_sdk::{Context, StateUpdate};
use tokio::sync::oneshot;
use wallets::{Address, SignedPayment, B256};

use super::{Buyer, BuyerDeal, Deal};
use crate::crash_point;
use crate::journal::{DeliveryBody, OrderPaymentBody, ReceiptBody};
use crate::messages::{Deliver, Receipt, Receipts, SignedAgreement, MAX_RECEIPTS};
use crate::Result;

/// Receipts waiting to be sent, by seller and channel dialogue.
#[derive(Debug, Default)]
pub(super) struct ReceiptOutbox(Mutex<HashMap<(Address, B256), Queue>>);

#[derive(Debug, Default)]
struct Queue {
    /// Each receipt with whom to tell whether the seller confirmed it.
    pending: Vec<(Receipt, oneshot::Sender<bool>)>,
    /// Whether a sender is at work on this queue.
    sending: bool,
}

impl Buyer {
    /// Signs the receipt of a checked channel-order delivery, saves and journals
    /// both (one flush each, together), and sends the receipt.
    pub(super) async fn finish_order(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        delivery: Deliver,
    ) -> Result<Deal> {
        let receipt = self.receipt(&agreement.agreement, &delivery)?;
        let state = BuyerDeal::Receipted {
            agreement: agreement.clone(),
            payment: payment.clone(),
            delivery: delivery.clone(),
            receipt: receipt.clone(),
        };
        ctx.write_states(&[StateUpdate::new(
            dialogue,
            agreement.agreement.seller,
            &state,
            false,
        )?])?;
        // A crash before both are on disk redoes the order (the seller answers it
        // with the same delivery) or resumes from `Receipted`; the journal keeps one
        // copy of each entry.
        let (saved, journaled) = futures::future::join(
            ctx.flush_states(),
            self.journal_receipted(dialogue, &agreement, &payment, &delivery, &receipt),
        )
        .await;
        saved?;
        journaled?;
        crash_point("buyer.journaled");
        self.confirm_receipt(ctx, dialogue, agreement, payment, delivery, receipt)
            .await
    }

    /// Journals a channel order's voucher, delivery and receipt (again, after a
    /// crash: the journal keeps one of each), in one write.
    async fn journal_receipted(
        &self,
        id: B256,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
        delivery: &Deliver,
        receipt: &Receipt,
    ) -> Result<()> {
        let hash = agreement.agreement.hash();
        self.journal
            .append_all(vec![
                OrderPaymentBody::new(id, agreement, payment).into(),
                DeliveryBody::new(hash, delivery).into(),
                ReceiptBody::new(hash, receipt).into(),
            ])
            .await
    }

    /// Resumes an order saved as `Receipted`: journals its voucher, delivery and
    /// receipt again (a crash may have come before they were on disk; the journal
    /// keeps one of each) and sends the receipt.
    pub(super) async fn resume_receipted(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        delivery: Deliver,
        receipt: Receipt,
    ) -> Result<Deal> {
        self.journal_receipted(dialogue, &agreement, &payment, &delivery, &receipt)
            .await?;
        self.confirm_receipt(ctx, dialogue, agreement, payment, delivery, receipt)
            .await
    }

    /// Sends a journaled receipt and, once the seller confirmed it, closes the order.
    async fn confirm_receipt(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        delivery: Deliver,
        receipt: Receipt,
    ) -> Result<Deal> {
        let a = &agreement.agreement;
        let done = BuyerDeal::Done {
            agreement: receipt.agreement,
            result_hash: receipt.result_hash,
            tx_hash: delivery.settlement.tx_hash,
        };
        if self
            .send_order_receipt(ctx, a.dialogue, a.seller, receipt)
            .await
        {
            crash_point("buyer.receipted");
            // Not flushed: if this is lost, a resume sends the receipt again, which
            // the seller confirms again.
            ctx.write_states(&[StateUpdate::new(dialogue, a.seller, &done, true)?])?;
        }
        tracing::debug!(target: "skill::negotiation", %dialogue, seller = %a.seller,
            price = %a.price, "channel order done");
        Ok(Deal {
            dialogue,
            agreement,
            payment,
            delivery,
        })
    }

    /// Queues `receipt` for `seller`'s channel in `channel_dialogue` and waits until
    /// the seller confirmed it, or sending failed (logged); whether it was confirmed.
    async fn send_order_receipt(
        &self,
        ctx: &Context,
        channel_dialogue: B256,
        seller: Address,
        receipt: Receipt,
    ) -> bool {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = self
                .receipts
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let queue = queues.entry((seller, channel_dialogue)).or_default();
            queue.pending.push((receipt, tx));
            !std::mem::replace(&mut queue.sending, true)
        };
        if lead {
            let (buyer, ctx) = (self.clone(), ctx.clone());
            tokio::spawn(async move {
                buyer.drain_receipts(&ctx, channel_dialogue, seller).await;
            });
        }
        rx.await.unwrap_or(false)
    }

    /// Sends the queued receipts of one channel, a batch at a time, until none is
    /// left.
    async fn drain_receipts(&self, ctx: &Context, channel_dialogue: B256, seller: Address) {
        loop {
            let batch: Vec<_> = {
                let mut queues = self
                    .receipts
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = queues.get_mut(&(seller, channel_dialogue)) else {
                    return;
                };
                if queue.pending.is_empty() {
                    queues.remove(&(seller, channel_dialogue));
                    return;
                }
                let n = queue.pending.len().min(MAX_RECEIPTS);
                queue.pending.drain(..n).collect()
            };
            let (receipts, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let confirmed = self
                .send_until_confirmed(ctx, channel_dialogue, seller, Receipts { receipts })
                .await;
            for w in waiting {
                let _ = w.send(confirmed);
            }
        }
    }
}
