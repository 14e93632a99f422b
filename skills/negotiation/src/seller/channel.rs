//! The seller side of `channel` mode: funding the channel of an accepted agreement,
//! orders paid by vouchers, and settling the best voucher on chain.
//!
//! Every order of a channel agreement at price `p` is paid by a voucher for `k × p`
//! (`k` = 1, 2, …, at most the deposit) and travels in the dialogue
//! [`order_id`]`(agreement, k × p)`. The seller's state of that dialogue makes each `k`
//! buy one order only, so whatever order vouchers arrive in, the highest one covers
//! every order delivered: no shared counter has to be updated in order, and concurrent
//! orders share the disk flushes.

use agent_sdk::{Context, SkillError, StateUpdate};
use wallets::{Amount, Channel, ChannelFunding, Payment, SignedPayment, Voucher, B256};

use super::{
    internal, refused, Handled, SellerChannel, SellerDeal, SellerInner, ServiceOutput, Turn,
};
use crate::journal::{ChannelSettlementBody, DeliveryBody, FundingBody, OrderPaymentBody};
use crate::messages::{
    order_id, Agreement, Fund, Funded, Order, PaymentMode, Settled, SignedAgreement,
    CHANNEL_SETTLE_WINDOW,
};
use crate::settlement::ChannelState;
use crate::{crash_point, verify_signer};
use crate::{Error, Result};

/// A settlement with no transaction: channel orders are settled later, together.
pub(crate) const NO_SETTLEMENT: Settled = Settled {
    tx_hash: B256::ZERO,
    block: 0,
    gas_used: 0,
};

impl SellerInner {
    pub(super) async fn on_fund(&self, ctx: &Context, fund: Fund) -> Handled<Funded> {
        let t = self.turn(ctx).await?;
        let channels = self
            .settlement
            .channels()
            .ok_or_else(|| refused("this seller takes no channel payments"))?;
        let agreement = match self.state(ctx, &t)? {
            Some(SellerDeal::Accepted { agreement, .. }) => agreement,
            Some(SellerDeal::Channel(c)) if c.agreement.agreement.hash() == fund.agreement => {
                return Ok(Funded {
                    settlement: c.funded,
                });
            }
            _ => {
                return Err(SkillError::bad_request(
                    "no accepted channel agreement in this dialogue",
                ))
            }
        };
        let a = &agreement.agreement;
        let hash = a.hash();
        if fund.agreement != hash {
            return Err(refused("the funding is for another agreement"));
        }
        if a.mode != PaymentMode::Channel {
            return Err(refused("the agreement is not paid through a channel"));
        }
        if a.deadline <= ctx.clock().unix_secs() {
            return Err(refused("the deadline has passed"));
        }
        let (channel, deposit) = self
            .check_funding(
                a,
                &fund.funding,
                channels.channel_contract(),
                ctx.clock().unix_secs(),
            )
            .map_err(refused)?;
        crash_point("seller.funding");
        let funded = channels
            .fund_channel(&fund.funding)
            .await
            .map_err(|e| internal(format!("opening the channel: {e}")))?;
        let record = channels
            .channel(channel.id())
            .await
            .map_err(|e| internal(format!("reading the channel: {e}")))?;
        if record.state != ChannelState::Open
            || record.payer != a.buyer
            || record.payee != a.seller
            || record.deposit < deposit
        {
            return Err(internal(format!(
                "channel {} is not open as funded: {record:?}",
                channel.id()
            )));
        }
        tracing::info!(target: "skill::negotiation", dialogue = %t.dialogue, channel = %channel.id(),
            deposit = %record.deposit, tx = %funded.tx_hash, gas = funded.gas_used, "channel opened");
        crash_point("seller.funded");
        self.save(
            ctx,
            &t,
            &SellerDeal::Channel(SellerChannel {
                agreement: agreement.clone(),
                channel,
                deposit: record.deposit,
                expires_at: record.expires_at,
                funded,
                orders: 0,
                best: None,
                settled: record.paid,
            }),
        )
        .await?;
        self.journal(FundingBody {
            agreement_hash: hash,
            channel_id: channel.id(),
            payment_id: fund.funding.payment.id(),
            payment: fund.funding,
            settlement: funded,
        })
        .await?;
        Ok(Funded { settlement: funded })
    }

    /// Checks that `funding` opens the agreement's channel as the protocol says; returns
    /// the channel and its deposit.
    fn check_funding(
        &self,
        a: &Agreement,
        funding: &SignedPayment,
        contract: wallets::Address,
        now: u64,
    ) -> std::result::Result<(Channel, Amount), String> {
        let Payment::ChannelFunding {
            domain,
            authorization,
            channel,
            funding: ChannelFunding::Open { expires_at },
        } = &funding.payment
        else {
            return Err("a channel agreement is funded by a channel-opening authorization".into());
        };
        let min_expiry = a.deadline.saturating_add(CHANNEL_SETTLE_WINDOW);
        let checks = [
            (
                domain == self.settlement.token(),
                "is not in the agreed token's domain",
            ),
            (authorization.from == a.buyer, "is not from the buyer"),
            (
                authorization.to == contract,
                "is not to the channel contract",
            ),
            (channel.payer == a.buyer, "names another payer"),
            (channel.payee == a.seller, "names another payee"),
            (
                channel.salt == Channel::derive_salt(a.buyer, &a.hash()),
                "is not for this agreement's channel",
            ),
            (
                authorization.value >= a.price,
                "deposits less than one order",
            ),
            (
                *expires_at >= min_expiry,
                "expires too early to settle after the deadline",
            ),
            (
                authorization.nonce == channel.open_nonce(*expires_at),
                "has a nonce that does not bind the channel",
            ),
            (authorization.valid_before > now, "has expired"),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("the channel funding {what}"));
        }
        funding
            .verify()
            .map_err(|e| format!("the funding's signature: {e}"))?;
        Ok((*channel, authorization.value))
    }

    pub(super) async fn on_order(&self, ctx: &Context, order: Order) -> Handled<super::Deliver> {
        let t = self.turn(ctx).await?;
        match self.state(ctx, &t)? {
            None => {}
            Some(SellerDeal::Ordered {
                task,
                agreement,
                payment,
                ..
            }) if payment == order.payment => {
                // Left by an earlier version, which saved the order before its work.
                self.journal_order(&t, &agreement, &payment).await?;
                return self.fulfil(ctx, &t, task, agreement, payment).await;
            }
            Some(SellerDeal::Delivered {
                agreement,
                payment,
                delivery,
            }) if payment == order.payment => {
                // A crash may have come before the voucher and the delivery were
                // journaled: journaled again, kept once.
                self.journal_delivered(&t, &agreement, &payment, &delivery)
                    .await?;
                return Ok(delivery);
            }
            Some(_) => return Err(SkillError::bad_request("this dialogue already has a deal")),
        }
        // Outside any lock: the signature is the costly part.
        let p = &order.payment;
        verify_signer(&p.signature, &p.payment.signing_hash(), p.payment.payer())
            .map_err(|e| refused(format!("the voucher's signature: {e}")))?;
        // Checked against the channel first, then worked on with only this order's
        // dialogue locked: the voucher buys this dialogue's order and no other.
        let agreement = {
            let ch = self.turn_in(order.channel_dialogue, t.buyer).await;
            let c = self.open_channel(ctx, &ch)?;
            self.check_order(ctx, &t, &order, &c).map_err(refused)?;
            c.agreement
        };
        let output: ServiceOutput = self.service.perform(ctx, &order.task).await?;
        let delivery = self.sign_delivery(&agreement, output, NO_SETTLEMENT, t.dialogue)?;
        // The order is counted and delivered in one write, checked again against
        // the channel as it is now (a settlement may have closed it meanwhile).
        let ch = self.turn_in(order.channel_dialogue, t.buyer).await;
        let mut c = self.open_channel(ctx, &ch)?;
        let cumulative = self.check_order(ctx, &t, &order, &c).map_err(refused)?;
        if c.best
            .as_ref()
            .is_none_or(|b| b.payment.amount() < cumulative)
        {
            c.best = Some(order.payment.clone());
        }
        c.orders = c.orders.saturating_add(1);
        let updates = [
            StateUpdate::new(
                t.dialogue,
                t.buyer,
                &SellerDeal::Delivered {
                    agreement: c.agreement.clone(),
                    payment: order.payment.clone(),
                    delivery: delivery.clone(),
                },
                false,
            ),
            StateUpdate::new(ch.dialogue, t.buyer, &SellerDeal::Channel(c), false),
        ]
        .into_iter()
        .collect::<agent_sdk::Result<Vec<_>>>()
        .map_err(internal)?;
        ctx.write_states(&updates).map_err(internal)?;
        drop(ch);
        crash_point("seller.ordered");
        // Saved and journaled together; the delivery leaves once both are on disk.
        let (saved, journaled) = futures::future::join(
            ctx.flush_states(),
            self.journal_delivered(&t, &agreement, &order.payment, &delivery),
        )
        .await;
        saved.map_err(internal)?;
        journaled?;
        crash_point("seller.delivered");
        Ok(delivery)
    }

    /// The funded channel of the dialogue `ch` (locked by the caller).
    fn open_channel(&self, ctx: &Context, ch: &Turn) -> Handled<SellerChannel> {
        match self.state(ctx, ch)? {
            Some(SellerDeal::Channel(c)) => Ok(c),
            _ => Err(SkillError::bad_request(
                "no funded channel agreement in that dialogue",
            )),
        }
    }

    /// Journals an order's voucher and its delivery, in one write.
    async fn journal_delivered(
        &self,
        t: &Turn,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
        delivery: &super::Deliver,
    ) -> Handled<()> {
        let hash = agreement.agreement.hash();
        self.journal
            .append_all(vec![
                OrderPaymentBody::new(t.dialogue, agreement, payment).into(),
                DeliveryBody::new(hash, delivery).into(),
            ])
            .await
            .map_err(internal)
    }

    /// Journals an order's voucher (again, after a crash: the journal keeps one).
    async fn journal_order(
        &self,
        t: &Turn,
        agreement: &SignedAgreement,
        payment: &SignedPayment,
    ) -> Handled<()> {
        self.journal(OrderPaymentBody::new(t.dialogue, agreement, payment))
            .await
    }

    /// Checks an order against its funded channel; returns the voucher's cumulative
    /// amount.
    fn check_order(
        &self,
        ctx: &Context,
        t: &Turn,
        order: &Order,
        c: &SellerChannel,
    ) -> std::result::Result<Amount, String> {
        let (a, channel, deposit, expires_at) =
            (&c.agreement.agreement, &c.channel, c.deposit, c.expires_at);
        let Payment::ChannelVoucher {
            domain,
            channel: paid,
            voucher,
        } = &order.payment.payment
        else {
            return Err("a channel order is paid by a voucher".into());
        };
        let contract = self
            .settlement
            .channels()
            .map(|c| c.channel_contract())
            .ok_or("this seller takes no channel payments")?;
        let cumulative = voucher.cumulative_amount;
        let price = a.price.base_units();
        let now = ctx.clock().unix_secs();
        let checks = [
            (order.agreement == a.hash(), "is for another agreement"),
            (a.deadline > now, "comes after the agreement's deadline"),
            (
                expires_at > now.saturating_add(CHANNEL_SETTLE_WINDOW / 2),
                "comes too close to the channel's expiry",
            ),
            (
                *domain == Voucher::domain(ctx.chain_id(), contract),
                "is not in the channel contract's domain",
            ),
            (paid == channel, "pays another channel"),
            (
                voucher.channel_id == channel.id(),
                "names another channel id",
            ),
            (
                price != 0 && cumulative.base_units() % price == 0 && !cumulative.is_zero(),
                "is not a whole number of orders at the agreed price",
            ),
            (cumulative <= deposit, "is above the channel's deposit"),
            (
                t.dialogue == order_id(&order.agreement, cumulative),
                "is not in its order's dialogue",
            ),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("the order {what}"));
        }
        Ok(cumulative)
    }

    /// Does the work of an accepted order and delivers it.
    async fn fulfil(
        &self,
        ctx: &Context,
        t: &Turn,
        task: String,
        agreement: SignedAgreement,
        payment: SignedPayment,
    ) -> Handled<super::Deliver> {
        let output: ServiceOutput = self.service.perform(ctx, &task).await?;
        let id = t.dialogue;
        self.deliver(ctx, t, agreement, payment, output, NO_SETTLEMENT, id)
            .await
    }

    pub(super) async fn settle_channels(
        &self,
        ctx: &Context,
        close: bool,
    ) -> Result<Vec<(B256, Settled)>> {
        self.settle_where(ctx, |_| Some(close)).await
    }

    /// Settles and closes the channels that can take no more orders: their
    /// agreement's deadline has passed (`check_order` refuses orders from then on),
    /// so closing loses nothing, and the channel's settle window is still ahead.
    pub(super) async fn settle_due_channels(&self, ctx: &Context) -> Result<Vec<(B256, Settled)>> {
        let now = ctx.clock().unix_secs();
        self.settle_where(ctx, |c| {
            (now >= c.agreement.agreement.deadline).then_some(true)
        })
        .await
    }

    /// Settles the best voucher of each channel for which `due` says whether to
    /// settle (`Some`) and whether to close (`Some(true)`), under the channel's lock.
    async fn settle_where(
        &self,
        ctx: &Context,
        due: impl Fn(&SellerChannel) -> Option<bool>,
    ) -> Result<Vec<(B256, Settled)>> {
        let channels = self.settlement.channels().ok_or_else(|| {
            Error::Config("this seller's settlement has no payment channels".into())
        })?;
        let mut out = Vec::new();
        for (dialogue, record) in ctx.open_dialogues()? {
            let Ok(SellerDeal::Channel(_)) = serde_json::from_value(record.state) else {
                continue;
            };
            let t = self.turn_in(dialogue, record.peer).await;
            let Some(SellerDeal::Channel(c)) = ctx.state::<SellerDeal>(dialogue)? else {
                continue;
            };
            let Some(close) = due(&c) else {
                continue;
            };
            let Some(best) = c
                .best
                .clone()
                .filter(|b| b.payment.amount() > c.settled || close)
            else {
                continue;
            };
            let (channel, orders, hash) = (c.channel, c.orders, c.agreement.agreement.hash());
            let tx = channels.settle_channel(&best, close).await?;
            let paid = best.payment.amount();
            tracing::info!(target: "skill::negotiation", channel = %channel.id(), %paid, orders,
                tx = %tx.tx_hash, gas = tx.gas_used, close, "channel settled");
            let state = if close {
                SellerDeal::Closed {
                    buyer: record.peer,
                    agreement: Some(hash),
                    outcome: format!("channel closed after {orders} orders, {paid} paid"),
                }
            } else {
                SellerDeal::Channel(SellerChannel { settled: paid, ..c })
            };
            self.save(ctx, &t, &state).await.map_err(|e| {
                Error::Config(format!("saving channel {}: {}", channel.id(), e.message))
            })?;
            self.journal
                .append(ChannelSettlementBody {
                    agreement_hash: hash,
                    channel_id: channel.id(),
                    cumulative_amount: paid,
                    orders,
                    close,
                    payment_id: best.payment.id(),
                    payment: best,
                    settlement: tx,
                })
                .await?;
            out.push((channel.id(), tx));
        }
        Ok(out)
    }
}
