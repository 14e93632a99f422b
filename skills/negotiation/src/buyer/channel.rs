//! The buyer side of `channel` mode: fund the channel of an accepted agreement once,
//! then pay each order with a voucher, and reuse the channel for later orders of the
//! same skill while its agreement, deposit and spending policy allow.

use std::collections::HashMap;
use std::sync::Arc;

use agent_sdk::{Context, StateUpdate};
use wallets::{
    Amount, Channel, ChannelFunding, Payment, ReceiveWithAuthorization, SignedPayment, Voucher,
    B256,
};

use super::{Buyer, BuyerDeal, Deal};
use crate::crash_point;
use crate::journal::{FundingBody, OrderPaymentBody};
use crate::messages::{
    order_id, Fund, PaymentMode, Settled, SignedAgreement, CHANNEL_SETTLE_WINDOW,
};
use crate::settlement::{ChannelState, Channels};
use crate::{Error, Result};

/// A funded channel the buyer can order through.
#[derive(Debug)]
pub(super) struct OpenChannel {
    /// The agreement's dialogue.
    dialogue: B256,
    agreement: SignedAgreement,
    channel: Channel,
    deposit: Amount,
    funded: Settled,
    /// The last voucher's cumulative amount.
    cumulative: Amount,
    /// Vouchers of orders the seller refused without counting them, by order id:
    /// the next orders are paid with these before any new voucher.
    unused: Vec<(B256, SignedPayment)>,
}

/// The buyer's funded channels, by agreement dialogue; loaded from the store on first
/// use.
pub(super) type ChannelBook =
    tokio::sync::Mutex<Option<HashMap<B256, Arc<tokio::sync::Mutex<OpenChannel>>>>>;

impl Buyer {
    /// The buyer's channel settlement.
    pub(super) fn channel_settlement(&self) -> Result<&dyn Channels> {
        self.settlement
            .as_ref()
            .and_then(|s| s.channels())
            .ok_or_else(|| {
                Error::Config(
                    "channel payments need a buyer settlement with a channel contract (Buyer::with_settlement)".into(),
                )
            })
    }

    /// Orders `task` through a funded channel of `kind` whose price is within
    /// `max_price` and whose deposit and deadline leave room, if there is one.
    pub(super) async fn order_in_open_channel(
        &self,
        ctx: &Context,
        task: &str,
        kind: &str,
        max_price: Amount,
    ) -> Result<Option<Deal>> {
        let candidates: Vec<_> = {
            let mut book = self.channels.lock().await;
            if book.is_none() {
                *book = Some(self.load_channels(ctx)?);
            }
            book.as_ref()
                .map(|b| b.values().cloned().collect())
                .unwrap_or_default()
        };
        let margin = self.strategy.deal_time().as_secs();
        for open in candidates {
            // Checked and paid under one lock: a concurrent order cannot take the
            // room between the check and the voucher.
            let c = open.lock().await;
            let a = &c.agreement.agreement;
            let usable = a.kind == kind
                && a.price <= max_price
                && a.deadline > ctx.clock().unix_secs().saturating_add(margin)
                && (!c.unused.is_empty()
                    || c.cumulative
                        .checked_add(a.price)
                        .is_ok_and(|n| n <= c.deposit));
            if usable {
                return self.order(ctx, c, task).await.map(Some);
            }
        }
        Ok(None)
    }

    fn load_channels(
        &self,
        ctx: &Context,
    ) -> Result<HashMap<B256, Arc<tokio::sync::Mutex<OpenChannel>>>> {
        let mut open = HashMap::new();
        let mut unused: HashMap<B256, Vec<(B256, SignedPayment)>> = HashMap::new();
        for (dialogue, record) in ctx.open_dialogues()? {
            match serde_json::from_value(record.state) {
                Ok(BuyerDeal::Channel {
                    agreement,
                    channel,
                    deposit,
                    funded,
                    cumulative,
                }) => {
                    let channel = OpenChannel {
                        dialogue,
                        agreement,
                        channel,
                        deposit,
                        funded,
                        cumulative,
                        unused: Vec::new(),
                    };
                    open.insert(dialogue, channel);
                }
                Ok(BuyerDeal::Unused {
                    channel_dialogue,
                    payment,
                }) => unused
                    .entry(channel_dialogue)
                    .or_default()
                    .push((dialogue, payment)),
                _ => {}
            }
        }
        for (channel_dialogue, vouchers) in unused {
            if let Some(c) = open.get_mut(&channel_dialogue) {
                c.unused = vouchers;
            }
        }
        Ok(open
            .into_iter()
            .map(|(d, c)| (d, Arc::new(tokio::sync::Mutex::new(c))))
            .collect())
    }

    /// Funds the channel of a freshly accepted agreement, then places the first order.
    pub(super) async fn fund_and_order(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        task: &str,
    ) -> Result<Deal> {
        let a = &agreement.agreement;
        let contract = self.channel_settlement()?.channel_contract();
        let channel = Channel {
            payer: a.buyer,
            payee: a.seller,
            salt: Channel::derive_salt(a.buyer, &a.hash()),
        };
        let expires_at = a.deadline.saturating_add(CHANNEL_SETTLE_WINDOW);
        // As many orders as asked for, or as the balance pays for if that is fewer.
        let balance = self.channel_settlement()?.token_balance(a.buyer).await?;
        let affordable = balance
            .base_units()
            .checked_div(a.price.base_units())
            .unwrap_or_default();
        let mut orders = u128::from(self.channel_orders.max(1)).min(affordable);
        if orders == 0 {
            tracing::warn!(target: "skill::negotiation", %dialogue, %balance, price = %a.price,
                "the balance does not pay for one order; rejecting the channel agreement");
            self.reject(ctx, dialogue, a.seller, "the buyer cannot fund the channel")
                .await;
            return Err(Error::InsufficientBalance {
                dialogue,
                buyer: a.buyer,
                balance,
                price: a.price,
            });
        }
        // The deposit counts against the policy's per-deal limit: open no more orders
        // than it allows (at least one, so that a limit below one order is refused by
        // the policy, with its reason).
        if let Some(per_deal) = ctx.spending_limits().and_then(|l| l.per_deal) {
            let within = per_deal
                .base_units()
                .checked_div(a.price.base_units())
                .unwrap_or_default();
            orders = orders.min(within.max(1));
        }
        let deposit = a.price.checked_mul(orders).map_err(Error::Wallet)?;
        let funding = Payment::ChannelFunding {
            domain: self.token.clone(),
            authorization: ReceiveWithAuthorization {
                from: a.buyer,
                to: contract,
                value: deposit,
                valid_after: 0,
                valid_before: a.deadline,
                nonce: channel.open_nonce(expires_at),
            },
            channel,
            funding: ChannelFunding::Open { expires_at },
        };
        let signed = self
            .authorize(ctx, dialogue, &agreement, funding, true)
            .await?;
        self.save(
            ctx,
            dialogue,
            a.seller,
            &BuyerDeal::Funding {
                agreement: agreement.clone(),
                funding: signed.clone(),
            },
        )
        .await?;
        crash_point("buyer.funding");
        let open = self.fund(ctx, dialogue, agreement, signed).await?;
        let c = open.lock().await;
        self.order(ctx, c, task).await
    }

    /// Sends the funding (again, after a crash), checks the channel on chain, saves and
    /// journals it.
    pub(super) async fn fund(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        funding: SignedPayment,
    ) -> Result<Arc<tokio::sync::Mutex<OpenChannel>>> {
        let a = &agreement.agreement;
        let hash = a.hash();
        let Payment::ChannelFunding { channel, .. } = funding.payment else {
            return Err(Error::Config("not a channel funding".into()));
        };
        let deposit = funding.payment.amount();
        let fund = Fund {
            agreement: hash,
            funding: funding.clone(),
        };
        // The funding is signed: the seller may have opened the channel whatever we
        // heard, so it is never rejected from here; it is re-sent (now, or by
        // `Buyer::resume`) until the seller answers, which it does from the chain.
        let mut attempt: u32 = 0;
        let funded = loop {
            attempt += 1;
            match ctx
                .ask_in(dialogue, a.seller, fund.clone(), self.delivery_timeout)
                .await
            {
                Ok(f) => break f.settlement,
                Err(e) if attempt < self.pay_attempts && super::retryable(&e) => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, attempt, error = %e,
                        "the channel funding was not confirmed; sending it again");
                    tokio::time::sleep(std::time::Duration::from_millis(500) * attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        crash_point("buyer.funded");
        let record = self.channel_settlement()?.channel(channel.id()).await?;
        if record.state != ChannelState::Open
            || record.payer != a.buyer
            || record.payee != a.seller
            || record.deposit < deposit
        {
            let reason = format!("channel {} is not open as funded: {record:?}", channel.id());
            self.close(ctx, dialogue, a.seller, format!("disputed: {reason}"))
                .await;
            return Err(self.protocol(dialogue, a.seller, reason));
        }
        self.save(
            ctx,
            dialogue,
            a.seller,
            &BuyerDeal::Channel {
                agreement: agreement.clone(),
                channel,
                deposit,
                funded,
                cumulative: Amount::ZERO,
            },
        )
        .await?;
        self.journal
            .append(FundingBody {
                agreement_hash: hash,
                channel_id: channel.id(),
                payment_id: funding.payment.id(),
                payment: funding.clone(),
                settlement: funded,
            })
            .await?;
        tracing::info!(target: "skill::negotiation", %dialogue, channel = %channel.id(),
            %deposit, tx = %funded.tx_hash, "channel funded");
        let open = Arc::new(tokio::sync::Mutex::new(OpenChannel {
            dialogue,
            agreement,
            channel,
            deposit,
            funded,
            cumulative: Amount::ZERO,
            unused: Vec::new(),
        }));
        let mut book = self.channels.lock().await;
        if book.is_none() {
            *book = Some(self.load_channels(ctx)?);
        }
        if let Some(b) = book.as_mut() {
            b.insert(dialogue, open.clone());
        }
        Ok(open)
    }

    /// Pays the channel's next order with a voucher and receives the delivery.
    /// Pays the next order of the channel `c` (locked by the caller) with a voucher,
    /// then, with the lock released, receives the delivery.
    async fn order(
        &self,
        ctx: &Context,
        mut c: tokio::sync::MutexGuard<'_, OpenChannel>,
        task: &str,
    ) -> Result<Deal> {
        if let Some((id, payment)) = c.unused.pop() {
            // A voucher the seller refused without counting its order pays this one,
            // in the same dialogue; the seller holds no state there.
            let agreement = c.agreement.clone();
            let ordering = BuyerDeal::Ordering {
                channel_dialogue: c.dialogue,
                task: task.to_owned(),
                agreement: agreement.clone(),
                payment: payment.clone(),
            };
            let seller = agreement.agreement.seller;
            ctx.write_states(&[StateUpdate::new(id, seller, &ordering, false)?])?;
            drop(c);
            ctx.flush_states().await?;
            tracing::debug!(target: "skill::negotiation", dialogue = %id,
                "paying the order with an unused voucher");
            return self.receive_order(ctx, id, agreement, payment, task).await;
        }
        let (id, agreement, payment) = {
            let a = &c.agreement.agreement;
            let cumulative = c.cumulative.checked_add(a.price).map_err(Error::Wallet)?;
            let contract = self.channel_settlement()?.channel_contract();
            let voucher = Payment::ChannelVoucher {
                domain: Voucher::domain(a.chain_id, contract),
                channel: c.channel,
                voucher: Voucher {
                    channel_id: c.channel.id(),
                    cumulative_amount: cumulative,
                },
            };
            let agreement = c.agreement.clone();
            // Signed in order under the channel's lock; on disk after it (below).
            let payment = self
                .authorize(ctx, c.dialogue, &agreement, voucher, false)
                .await?;
            let id = order_id(&agreement.agreement.hash(), cumulative);
            let seller = agreement.agreement.seller;
            let updates = [
                StateUpdate::new(
                    c.dialogue,
                    seller,
                    &BuyerDeal::Channel {
                        agreement: agreement.clone(),
                        channel: c.channel,
                        deposit: c.deposit,
                        funded: c.funded,
                        cumulative,
                    },
                    false,
                ),
                StateUpdate::new(
                    id,
                    seller,
                    &BuyerDeal::Ordering {
                        channel_dialogue: c.dialogue,
                        task: task.to_owned(),
                        agreement: agreement.clone(),
                        payment: payment.clone(),
                    },
                    false,
                ),
            ]
            .into_iter()
            .collect::<agent_sdk::Result<Vec<_>>>()?;
            ctx.write_states(&updates)?;
            c.cumulative = cumulative;
            (id, agreement, payment)
        };
        drop(c);
        // The voucher leaves once the order and the policy's record of it are on
        // disk; a crash before that redoes the same order. It is journaled with the
        // order's delivery and receipt, in one write (`finish_order`), or alone if
        // the order fails.
        let (states, payments) =
            futures::future::join(ctx.flush_states(), ctx.flush_payments()).await;
        states?;
        payments?;
        crash_point("buyer.ordered");
        self.receive_order(ctx, id, agreement, payment, task).await
    }

    /// Sends a saved order (again, after a crash) and receives its delivery. A voucher
    /// that left is journaled whatever happens: with the delivery and the receipt
    /// when the order succeeds, alone when it fails.
    pub(super) async fn receive_order(
        &self,
        ctx: &Context,
        id: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        task: &str,
    ) -> Result<Deal> {
        let result = self
            .receive(ctx, id, agreement.clone(), payment.clone(), Some(task))
            .await;
        if let Err(e) = &result {
            if refused_uncounted(e) {
                if let Err(e) = self.keep_unused(ctx, id, &agreement, &payment).await {
                    tracing::warn!(target: "skill::negotiation", dialogue = %id, error = %e,
                        "cannot keep the voucher of a refused order for the next one");
                }
            }
            if let Err(e) = self.journal_order(id, &agreement, &payment).await {
                tracing::error!(target: "skill::negotiation", dialogue = %id, error = %e,
                    "cannot journal the voucher of a failed order");
            }
        }
        result
    }

    /// Saves the voucher of the order `id`, which the seller refused without counting
    /// it, for the channel's next order ([`BuyerDeal::Unused`]).
    async fn keep_unused(
        &self,
        ctx: &Context,
        id: B256,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
    ) -> Result<()> {
        let channel_dialogue = agreement.agreement.dialogue;
        let unused = BuyerDeal::Unused {
            channel_dialogue,
            payment: payment.clone(),
        };
        self.save(ctx, id, agreement.agreement.seller, &unused)
            .await?;
        let open = self
            .channels
            .lock()
            .await
            .as_ref()
            .and_then(|b| b.get(&channel_dialogue).cloned());
        if let Some(open) = open {
            open.lock().await.unused.push((id, payment.clone()));
        }
        Ok(())
    }

    /// Journals an order's voucher (again, after a crash: the journal keeps one).
    async fn journal_order(
        &self,
        id: B256,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
    ) -> Result<()> {
        self.journal
            .append(OrderPaymentBody::new(id, agreement, payment))
            .await
    }
}

/// Whether `e` is the seller's answer that it did not count the order: an error of
/// its skill other than `internal`. The seller's order handler fails that way only
/// before it records the order (checks, the service's own errors); a timeout, a
/// broken connection or an internal error may come after.
fn refused_uncounted(e: &Error) -> bool {
    matches!(e, Error::Runtime(agent_sdk::Error::Skill(s)) if s.code != "internal")
}

/// The id a delivery must carry for `agreement` paid by `payment`: the agreement hash,
/// or for a channel order its [`order_id`].
pub(super) fn delivery_id(agreement: &SignedAgreement, payment: &SignedPayment) -> B256 {
    let hash = agreement.agreement.hash();
    match agreement.agreement.mode {
        PaymentMode::Channel => order_id(&hash, payment.payment.amount()),
        PaymentMode::Authorization | PaymentMode::Escrow => hash,
    }
}
