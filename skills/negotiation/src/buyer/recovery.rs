//! What a buyer does when a seller misbehaves or disappears: checks the settling
//! transaction on chain, records a payment that bought nothing, and takes back an
//! escrowed price after the deadline.

use crate::journal::{DisputeBody, PaymentBody, RefundBody};

use super::*;

/// Whether asking again may help: nothing answered, or the connection broke.
pub(super) fn retryable(e: &agent_sdk::Error) -> bool {
    matches!(
        e,
        agent_sdk::Error::Timeout { .. }
            | agent_sdk::Error::Transport { .. }
            | agent_sdk::Error::Stopped(_)
    )
}

impl Buyer {
    /// Sends the receipt and waits until the seller has it (journaled), again after
    /// a timeout or a broken connection; a receipt only told could die with this
    /// process before it left, and the seller's journal would lack it. Failures are
    /// logged: the deal is done either way.
    pub(super) async fn send_receipt(
        &self,
        ctx: &Context,
        dialogue: B256,
        seller: Address,
        receipt: Receipt,
    ) {
        self.send_until_confirmed(ctx, dialogue, seller, receipt)
            .await;
    }

    /// Asks `message` in `dialogue` until `seller` confirms it, again after a timeout
    /// or a broken connection, at most `pay_attempts` times; whether it was confirmed
    /// (failures are logged).
    pub(super) async fn send_until_confirmed<R>(
        &self,
        ctx: &Context,
        dialogue: B256,
        seller: Address,
        message: R,
    ) -> bool
    where
        R: agent_sdk::Request<Response = ()> + Clone,
    {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match ctx
                .ask_in(
                    dialogue,
                    seller,
                    message.clone(),
                    self.strategy.proposal_window(),
                )
                .await
            {
                Ok(()) => return true,
                Err(e) if attempt < self.pay_attempts && retryable(&e) => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, attempt, error = %e,
                        kind = R::KIND, "not confirmed; sending it again");
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                }
                Err(e) => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, error = %e,
                        kind = R::KIND, "not sent");
                    return false;
                }
            }
        }
    }

    /// Why the settlement a seller claims does not pay the agreement, if it does not
    /// (`authorization` mode, with a verifier; escrow deliveries are checked on the
    /// escrow record).
    pub(super) async fn settlement_problem(
        &self,
        a: &Agreement,
        payment: &SignedPayment,
        settled: &Settled,
    ) -> Result<Option<String>> {
        match (&self.verifier, a.mode) {
            (Some(v), PaymentMode::Authorization) => {
                authorization_problem(v.as_ref(), a, payment, settled).await
            }
            _ => Ok(None),
        }
    }

    /// In `escrow` mode, disputes a delivery the buyer refuses on chain (while the
    /// review window is open), so that the escrow is not released to the seller but
    /// ruled on by the arbiter. The dispute's transaction, if it was filed; failures
    /// are logged.
    pub(super) async fn dispute_escrow(&self, a: &Agreement, reason: &str) -> Option<Settled> {
        if a.mode != PaymentMode::Escrow {
            return None;
        }
        let (settlement, _) = self.escrow_settlement().ok()?;
        let id = escrow_id_of(a.buyer, escrow_job_id(&a.hash()));
        let filed = match settlement.escrow(id).await {
            Ok(job) if job.state == EscrowState::Delivered => settlement
                .dispute_escrow(id, wallets::keccak256(reason.as_bytes()))
                .await
                .map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        match filed {
            Ok(Some(s)) => {
                tracing::warn!(target: "skill::negotiation", escrow = %id, tx = %s.tx_hash, %reason,
                    "delivery disputed on chain");
                Some(s)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(target: "skill::negotiation", escrow = %id, error = %e,
                    "the escrow dispute was not filed");
                None
            }
        }
    }

    /// No delivery came for a sent payment. In `authorization` mode the seller may
    /// have settled it anyway: if the chain shows the authorization used, the payment
    /// is journaled with its transaction, and a dispute that nothing was delivered,
    /// and the deal is closed. Otherwise (escrow, or not paid) the deal stays open:
    /// [`Buyer::resume`] sends the same payment again, and [`Buyer::refund_expired`]
    /// takes an escrowed price back after the deadline.
    pub(super) async fn undelivered(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
        error: agent_sdk::Error,
    ) -> Error {
        let a = &agreement.agreement;
        let (Some(verifier), Payment::Authorization { transfer, .. }) =
            (&self.verifier, &payment.payment)
        else {
            return error.into();
        };
        let used = match verifier
            .authorization_used(transfer.from, transfer.nonce)
            .await
        {
            Ok(Some(used)) => used,
            Ok(None) => return error.into(),
            Err(e) => return e,
        };
        let hash = a.hash();
        let reason = format!(
            "paid in transaction {} but nothing was delivered ({error})",
            used.tx_hash
        );
        tracing::warn!(target: "skill::negotiation", %dialogue, seller = %a.seller, %reason, "no delivery");
        let entries = vec![
            PaymentBody::new(agreement, payment, used).into(),
            DisputeBody {
                agreement_hash: hash,
                reason: reason.clone(),
                delivery: None,
                escrow_dispute: None,
            }
            .into(),
        ];
        if let Err(e) = self.journal.append_all(entries).await {
            return e;
        }
        self.close(ctx, dialogue, a.seller, format!("disputed: {reason}"))
            .await;
        self.protocol(dialogue, a.seller, reason)
    }

    /// Takes back the price of this buyer's open escrow deals that are still locked
    /// on chain (the seller never recorded a delivery) and whose deadline has passed
    /// on chain: refunds each (the buyer pays the gas), journals a `refund` and closes
    /// the deal. Returns each deal tried and how it went; a deal whose deadline has not
    /// passed yet gives the chain's refusal and stays open.
    ///
    /// # Errors
    /// [`Error::Runtime`] when the agent's store cannot be read; [`Error::Config`]
    /// without an escrow settlement.
    pub async fn refund_expired(&self, ctx: &Context) -> Result<Vec<(B256, Result<Settled>)>> {
        self.check_wallet(ctx)?;
        let (settlement, _) = self.escrow_settlement()?;
        let mut out = Vec::new();
        for (dialogue, record) in ctx.open_dialogues()? {
            let Ok(BuyerDeal::Paying { agreement, .. }) =
                serde_json::from_value::<BuyerDeal>(record.state)
            else {
                continue;
            };
            let a = &agreement.agreement;
            if a.mode != PaymentMode::Escrow {
                continue;
            }
            let id = escrow_id_of(a.buyer, escrow_job_id(&a.hash()));
            let refunded = match settlement.escrow(id).await {
                Ok(job) if job.state == EscrowState::Locked => {
                    self.refund(ctx, dialogue, &agreement, settlement.as_ref(), id)
                        .await
                }
                Ok(_) => continue, // delivered or settled: resume receives it
                Err(e) => Err(e),
            };
            out.push((dialogue, refunded));
        }
        Ok(out)
    }

    async fn refund(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: &SignedAgreement,
        settlement: &dyn Settlement,
        escrow: B256,
    ) -> Result<Settled> {
        let a = &agreement.agreement;
        let settled = settlement.refund_escrow(escrow).await?;
        tracing::info!(target: "skill::negotiation", %dialogue, %escrow, tx = %settled.tx_hash,
            "the seller missed the deadline; the price is refunded");
        self.journal
            .append(RefundBody {
                agreement_hash: a.hash(),
                escrow_id: escrow,
                settlement: settled,
                reason: "the seller delivered nothing by the deadline".into(),
            })
            .await?;
        self.close(
            ctx,
            dialogue,
            a.seller,
            format!("refunded in {}", settled.tx_hash),
        )
        .await;
        Ok(settled)
    }
}
