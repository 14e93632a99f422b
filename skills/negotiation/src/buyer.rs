//! The buyer side: find sellers, call for proposals, negotiate, accept, pay,
//! receive, and sign the receipt.

use std::sync::Arc;
use std::time::Duration;

use agent_sdk::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wallets::{
    Address, Amount, Eip712, Eip712Domain, Journal, Payment, Permit, Signature, SignedPayment,
    TransferWithAuthorization, Wallet, B256,
};

use super::check::{DeliveryCheck, DeliveryToCheck};
use super::journal::{
    AcceptanceBody, CfpBody, CounterBody, DeliveryBody, DisputeBody, PaymentBody, ProposalBody,
    ReceiptBody, RejectionBody,
};
use super::messages::Settled;
use super::messages::{
    escrow_job_id, negotiation_domain, result_hash, task_hash, Accept, Agreement, CallForProposal,
    Counter, Deliver, Order, Pay, PaymentMode, Proposal, ProposalReply, Receipt, ReceiptNote,
    Reject, SignedAgreement, ESCROW_REVIEW_WINDOW,
};
use super::settlement::{escrow_id_of, EscrowState, Settlement};
use super::strategy::{BuyerStrategy, DefaultBuyerStrategy};
use super::verify::{authorization_problem, PaymentVerifier};
use super::{crash_point, SharedJournal};
use crate::{Error, Result};

mod channel;
mod receipts;
mod recovery;

use channel::{delivery_id, ChannelBook};
use recovery::retryable;

/// A buyer's state of one deal (one dialogue with one seller), saved before it
/// acts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "buyer", rename_all = "snake_case")]
// Short-lived values on their way to or from JSON: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum BuyerDeal {
    /// The call is about to be sent.
    Called {
        /// The call.
        call: CallForProposal,
        /// To whom.
        seller: Address,
    },
    /// A valid offer stands.
    Proposed {
        /// The call.
        call: CallForProposal,
        /// The offer.
        proposal: Proposal,
    },
    /// A counter-offer is about to be sent.
    Countered {
        /// The call.
        call: CallForProposal,
        /// The offer countered.
        proposal: Proposal,
        /// The counter.
        counter: Counter,
    },
    /// The acceptance is about to be sent.
    Accepting {
        /// The offer accepted.
        proposal: Proposal,
        /// The buyer's signature over it.
        buyer_signature: Signature,
    },
    /// Both signed; the payment is next.
    Accepted {
        /// The agreement.
        agreement: SignedAgreement,
    },
    /// The payment is signed and being sent; a retry re-sends this one.
    Paying {
        /// The agreement.
        agreement: SignedAgreement,
        /// The payment.
        payment: SignedPayment,
    },
    /// The delivery arrived and checked out; the receipt is next.
    Delivered {
        /// The agreement.
        agreement: SignedAgreement,
        /// The payment.
        payment: SignedPayment,
        /// The delivery.
        delivery: Deliver,
    },
    /// Channel mode: the funding is signed and being sent; a retry re-sends this one.
    Funding {
        /// The agreement.
        agreement: SignedAgreement,
        /// The channel funding.
        funding: SignedPayment,
    },
    /// Channel mode: the funded channel of an agreement, in the agreement's dialogue;
    /// open while orders can be placed through it.
    Channel {
        /// The agreement (price per order, deadline for orders).
        agreement: SignedAgreement,
        /// The channel.
        channel: wallets::Channel,
        /// Its deposit.
        deposit: Amount,
        /// The transaction that opened it.
        funded: super::messages::Settled,
        /// The last voucher's cumulative amount.
        cumulative: Amount,
    },
    /// Channel mode: an order paid by a voucher, in the order's own dialogue; a retry
    /// re-sends the same order.
    Ordering {
        /// The channel agreement's dialogue.
        channel_dialogue: B256,
        /// The task.
        task: String,
        /// The channel agreement.
        agreement: SignedAgreement,
        /// The voucher.
        payment: SignedPayment,
    },
    /// Channel mode: an order the seller refused without counting it (its answer was
    /// an error other than `internal`: it checked the order or did the work and
    /// failed, before it recorded anything). Its voucher has left and counts in the
    /// spending policy, so the channel's next order is paid with it, in this same
    /// dialogue, instead of a new voucher: vouchers are cumulative, and a new one
    /// would pay the seller for the refused order too.
    Unused {
        /// The channel agreement's dialogue.
        channel_dialogue: B256,
        /// The voucher.
        payment: SignedPayment,
    },
    /// Channel mode: the order was delivered and its receipt signed and journaled;
    /// the seller has not confirmed the receipt yet. A retry sends it again.
    Receipted {
        /// The channel agreement.
        agreement: SignedAgreement,
        /// The voucher.
        payment: SignedPayment,
        /// The delivery.
        delivery: Deliver,
        /// The receipt.
        receipt: Receipt,
    },
    /// Paid, delivered and receipted.
    Done {
        /// The agreement's hash.
        agreement: B256,
        /// The result's hash.
        result_hash: B256,
        /// The settling transaction.
        tx_hash: B256,
    },
    /// Over without a deal (declined, rejected, failed), or disputed.
    Closed {
        /// What happened.
        outcome: String,
    },
}

/// A completed deal: what was agreed, how it was paid, what was delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Deal {
    /// The deal's dialogue.
    pub dialogue: B256,
    /// The agreement both signed.
    pub agreement: SignedAgreement,
    /// The payment the buyer's policy signed.
    pub payment: SignedPayment,
    /// The delivery, checked against its hash and the seller's signature.
    pub delivery: Deliver,
}

impl Deal {
    /// Who delivered.
    pub fn seller(&self) -> Address {
        self.agreement.agreement.seller
    }

    /// What was paid.
    pub fn price(&self) -> Amount {
        self.agreement.agreement.price
    }

    /// The result.
    pub fn result(&self) -> &Value {
        &self.delivery.result
    }
}

/// The buyer side of negotiation, used from any code holding the agent's
/// [`Context`] (a skill, or the agent's handle).
#[derive(Clone)]
pub struct Buyer {
    wallet: Arc<Wallet>,
    token: Eip712Domain,
    strategy: Arc<dyn BuyerStrategy>,
    journal: SharedJournal,
    settlement: Option<Arc<dyn Settlement>>,
    verifier: Option<Arc<dyn PaymentVerifier>>,
    delivery_check: Option<Arc<dyn DeliveryCheck>>,
    delivery_timeout: Duration,
    pay_attempts: u32,
    channels: Arc<ChannelBook>,
    receipts: Arc<receipts::ReceiptOutbox>,
    channel_orders: u32,
    channel_validity: Duration,
}

impl std::fmt::Debug for Buyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buyer")
            .field("address", &self.wallet.address())
            .field("token", &self.token.verifying_contract)
            .finish_non_exhaustive()
    }
}

/// One seller's answer to the call.
struct Answer {
    dialogue: B256,
    seller: Address,
    proposal: std::result::Result<Proposal, String>,
}

impl Buyer {
    /// A buyer that signs agreements with `wallet` (the agent's own; payments are
    /// signed by the agent's spending policy), pays in the stablecoin of `token`
    /// (from the deployment, never from a peer) and journals to `journal`.
    pub fn new(wallet: Arc<Wallet>, token: Eip712Domain, journal: Journal) -> Self {
        Self {
            wallet,
            token,
            strategy: Arc::new(DefaultBuyerStrategy::default()),
            journal: SharedJournal::new(journal),
            settlement: None,
            verifier: None,
            delivery_check: None,
            delivery_timeout: Duration::from_secs(60),
            pay_attempts: 3,
            channels: Arc::default(),
            receipts: Arc::default(),
            channel_orders: 10,
            channel_validity: Duration::from_secs(3_600),
        }
    }

    /// In `channel` mode, deposit enough for `orders` orders at the agreed price when
    /// opening a channel (default 10). The deposit is not spent: only vouchers count
    /// against the spending policy, and the seller refunds the rest when it closes.
    #[must_use]
    pub fn with_channel_orders(mut self, orders: u32) -> Self {
        self.channel_orders = orders.max(1);
        self
    }

    /// In `channel` mode, how long a channel agreement takes orders (default an hour;
    /// the channel stays open [`super::CHANNEL_SETTLE_WINDOW`] longer for the seller to
    /// settle).
    #[must_use]
    pub fn with_channel_validity(mut self, validity: Duration) -> Self {
        self.channel_validity = validity;
        self
    }

    /// Negotiates with `strategy` instead of [`DefaultBuyerStrategy`].
    #[must_use]
    pub fn with_strategy(mut self, strategy: impl BuyerStrategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// The buyer's own chain access, needed for `escrow` mode (the buyer locks the
    /// price and accepts the delivery on chain, and pays that gas) and `channel` mode
    /// (the buyer checks the channel the seller opened).
    #[must_use]
    pub fn with_settlement(mut self, settlement: impl Settlement) -> Self {
        self.settlement = Some(Arc::new(settlement));
        self
    }

    /// The buyer's own read access to the chain: in `authorization` mode the buyer
    /// then checks that the transaction the seller names used this agreement's
    /// authorization and moved the price to the seller before it signs a receipt, and
    /// when no delivery comes, whether it was paid anyway. Without it the buyer takes
    /// the seller's word for the transaction.
    #[must_use]
    pub fn with_verifier(mut self, verifier: impl PaymentVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// Checks every delivery with `check` before the receipt, after the protocol's
    /// own checks (agreement, result hash, seller's signature, payment); a delivery
    /// it refuses is disputed as a bad delivery is (see [`DeliveryCheck`]).
    #[must_use]
    pub fn with_delivery_check(mut self, check: impl DeliveryCheck) -> Self {
        self.delivery_check = Some(Arc::new(check));
        self
    }

    /// How long to wait for a delivery after paying (settlement and the work); the
    /// same payment is re-sent up to three times on a timeout.
    #[must_use]
    pub fn with_delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Changes after each write to this buyer's journal: a reader of the journal file
    /// (a monitor, a test) waits on it for entries written after a call returned,
    /// such as the receipt of a delivery.
    pub fn journal_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.journal.writes()
    }

    /// The buyer's journal, to share with the agent's other buyers (an x402 buyer
    /// paying with the same policy), so that one writer appends to it.
    pub fn journal(&self) -> SharedJournal {
        self.journal.clone()
    }

    /// Hires a seller of `kind` for `task`, paying at most `max_price` in `mode`:
    /// finds sellers, calls up to [`BuyerStrategy::max_sellers`] of them, collects
    /// proposals for [`BuyerStrategy::proposal_window`], negotiates with the chosen
    /// one, accepts, pays through the agent's spending policy, receives and checks the
    /// delivery, and sends the receipt. The others are rejected.
    ///
    /// The task text is never interpreted here: prices come only from proposals, and
    /// whatever is agreed, the spending policy decides what is signed.
    ///
    /// # Errors
    /// [`Error::NoSellers`], [`Error::NoAcceptableProposal`],
    /// [`Error::PaymentRefused`] when the policy refuses (the seller is rejected and
    /// nothing is paid), [`Error::Protocol`] when a seller misbehaves, and
    /// [`Error::Runtime`] when messages fail.
    #[tracing::instrument(target = "skill::negotiation", skip(self, ctx, task), fields(agent = %ctx.me()))]
    pub async fn hire(
        &self,
        ctx: &Context,
        task: &str,
        kind: &str,
        max_price: Amount,
        mode: PaymentMode,
    ) -> Result<Deal> {
        self.check_wallet(ctx)?;
        if mode == PaymentMode::Escrow {
            self.escrow_settlement()?;
        }
        let reservation = self.strategy.reservation_price(max_price).min(max_price);
        if mode == PaymentMode::Channel {
            self.channel_settlement()?;
            if let Some(deal) = self
                .order_in_open_channel(ctx, task, kind, reservation)
                .await?
            {
                return Ok(deal);
            }
        }
        let sellers: Vec<Address> = ctx
            .find_peers(kind, Some(reservation))
            .await?
            .into_iter()
            // A2A agents are hired over A2A (`a2a::market`), not negotiated with.
            .filter(|p| !p.is_a2a())
            .map(|p| p.address)
            .filter(|a| *a != ctx.me())
            .take(self.strategy.max_sellers())
            .collect();
        if sellers.is_empty() {
            return Err(Error::NoSellers {
                kind: kind.to_owned(),
                max_price: reservation,
            });
        }
        let token = self
            .token
            .verifying_contract
            .ok_or_else(|| Error::Config("the token domain has no contract".into()))?;
        let call = CallForProposal {
            task: task.to_owned(),
            kind: kind.to_owned(),
            max_price: reservation,
            deadline: ctx.clock().unix_secs().saturating_add(match mode {
                PaymentMode::Channel => self.channel_validity.as_secs(),
                PaymentMode::Authorization | PaymentMode::Escrow => {
                    self.strategy.deal_time().as_secs()
                }
            }),
            modes: vec![mode],
            token,
        };
        let answers =
            futures::future::join_all(sellers.iter().map(|s| self.call_one(ctx, *s, call.clone())))
                .await;
        let mut reasons = Vec::new();
        let mut valid = Vec::new();
        for a in answers {
            match a.proposal {
                Ok(p) => valid.push((a.dialogue, p)),
                Err(r) => {
                    // A seller that could not be heard or declined: worth a line, as
                    // the deal may well go on without it.
                    tracing::info!(target: "skill::negotiation", dialogue = %a.dialogue,
                        seller = %a.seller, reason = %r, "no proposal");
                    reasons.push(format!("{}: {r}", a.seller));
                }
            }
        }
        let proposals: Vec<Proposal> = valid.iter().map(|(_, p)| p.clone()).collect();
        let chosen = self
            .strategy
            .choose(&proposals)
            .and_then(|i| valid.get(i).cloned());
        for (d, p) in &valid {
            if chosen.as_ref().is_none_or(|(c, _)| c != d) {
                self.reject(ctx, *d, p.agreement.seller, "another offer was chosen")
                    .await;
            }
        }
        let Some((dialogue, proposal)) = chosen else {
            return Err(Error::NoAcceptableProposal {
                kind: kind.to_owned(),
                max_price: reservation,
                reasons,
            });
        };
        let proposal = self
            .negotiate(ctx, &call, dialogue, proposal, reservation)
            .await?;
        let agreement = self.accept(ctx, dialogue, proposal).await?;
        if mode == PaymentMode::Channel {
            return self.fund_and_order(ctx, dialogue, agreement, task).await;
        }
        self.settle(ctx, dialogue, agreement, Some(task)).await
    }

    /// Resumes this buyer's open deals after a restart: deals not yet agreed are
    /// rejected; agreed ones are paid (with the same payment, if it was signed
    /// before) and received. Returns the outcome of each deal it continued.
    ///
    /// # Errors
    /// [`Error::Runtime`] when the agent's store cannot be read.
    pub async fn resume(&self, ctx: &Context) -> Result<Vec<Result<Deal>>> {
        self.check_wallet(ctx)?;
        let mut out = Vec::new();
        for (dialogue, record) in ctx.open_dialogues()? {
            let Ok(deal) = serde_json::from_value::<BuyerDeal>(record.state) else {
                continue; // another skill's dialogue
            };
            match deal {
                BuyerDeal::Called { .. }
                | BuyerDeal::Proposed { .. }
                | BuyerDeal::Countered { .. }
                | BuyerDeal::Accepting { .. } => {
                    self.reject(
                        ctx,
                        dialogue,
                        record.peer,
                        "the buyer restarted before the deal was agreed",
                    )
                    .await;
                }
                BuyerDeal::Accepted { agreement }
                    if agreement.agreement.mode == PaymentMode::Channel =>
                {
                    // No order waits on it: the task was the caller's.
                    self.reject(
                        ctx,
                        dialogue,
                        record.peer,
                        "the buyer restarted before funding the channel",
                    )
                    .await;
                }
                BuyerDeal::Accepted { agreement } => {
                    out.push(self.settle(ctx, dialogue, agreement, None).await);
                }
                BuyerDeal::Paying { agreement, payment } => {
                    out.push(self.receive(ctx, dialogue, agreement, payment, None).await);
                }
                BuyerDeal::Funding { agreement, funding } => {
                    if let Err(e) = self.fund(ctx, dialogue, agreement, funding).await {
                        out.push(Err(e));
                    }
                }
                BuyerDeal::Ordering {
                    task,
                    agreement,
                    payment,
                    ..
                } => {
                    out.push(
                        self.receive_order(ctx, dialogue, agreement, payment, &task)
                            .await,
                    );
                }
                BuyerDeal::Channel { .. } | BuyerDeal::Unused { .. } => {}
                BuyerDeal::Delivered {
                    agreement,
                    payment,
                    delivery,
                } => {
                    out.push(
                        self.finish(ctx, dialogue, agreement, payment, delivery)
                            .await,
                    );
                }
                BuyerDeal::Receipted {
                    agreement,
                    payment,
                    delivery,
                    receipt,
                } => {
                    out.push(
                        self.resume_receipted(ctx, dialogue, agreement, payment, delivery, receipt)
                            .await,
                    );
                }
                BuyerDeal::Done { .. } | BuyerDeal::Closed { .. } => {}
            }
        }
        Ok(out)
    }

    /// The buyer's settlement, if it supports escrow.
    fn escrow_settlement(&self) -> Result<(&Arc<dyn Settlement>, Address)> {
        self.settlement
            .as_ref()
            .and_then(|s| s.escrow_contract().map(|c| (s, c)))
            .ok_or_else(|| {
                Error::Config(
                    "escrow payments need a buyer settlement with an escrow contract (Buyer::with_settlement)".into(),
                )
            })
    }

    fn check_wallet(&self, ctx: &Context) -> Result<()> {
        if self.wallet.address() == ctx.me() {
            Ok(())
        } else {
            Err(Error::WrongWallet {
                wallet: self.wallet.address(),
                agent: ctx.me(),
            })
        }
    }

    async fn save(
        &self,
        ctx: &Context,
        dialogue: B256,
        peer: Address,
        deal: &BuyerDeal,
    ) -> Result<()> {
        let closed = matches!(deal, BuyerDeal::Done { .. } | BuyerDeal::Closed { .. });
        Ok(ctx.save_state(dialogue, peer, deal, closed).await?)
    }

    /// Ends a dialogue without a deal and tells the seller; failures to tell are
    /// logged (the seller's offer expires anyway).
    async fn reject(&self, ctx: &Context, dialogue: B256, seller: Address, reason: &str) {
        let closed = BuyerDeal::Closed {
            outcome: format!("rejected: {reason}"),
        };
        if let Err(e) = self.save(ctx, dialogue, seller, &closed).await {
            tracing::warn!(target: "skill::negotiation", %dialogue, error = %e, "rejection not saved");
        }
        if let Err(e) = self
            .journal
            .append(RejectionBody {
                dialogue,
                seller: Some(seller),
                agreement_hash: None,
                by: None,
                reason: reason.to_owned(),
            })
            .await
        {
            tracing::warn!(target: "skill::negotiation", %dialogue, error = %e, "rejection not journaled");
        }
        let reject = Reject {
            reason: reason.to_owned(),
        };
        if let Err(e) = ctx.tell_in(dialogue, seller, reject).await {
            tracing::warn!(target: "skill::negotiation", %dialogue, %seller, error = %e, "rejection not sent");
        }
    }

    async fn close(&self, ctx: &Context, dialogue: B256, seller: Address, outcome: String) {
        if let Err(e) = self
            .save(ctx, dialogue, seller, &BuyerDeal::Closed { outcome })
            .await
        {
            tracing::warn!(target: "skill::negotiation", %dialogue, error = %e, "outcome not saved");
        }
    }

    /// Calls one seller and checks its proposal.
    async fn call_one(&self, ctx: &Context, seller: Address, call: CallForProposal) -> Answer {
        let dialogue = ctx.new_dialogue();
        let proposal = self.call_checked(ctx, dialogue, seller, call).await;
        Answer {
            dialogue,
            seller,
            proposal,
        }
    }

    async fn call_checked(
        &self,
        ctx: &Context,
        dialogue: B256,
        seller: Address,
        call: CallForProposal,
    ) -> std::result::Result<Proposal, String> {
        let called = BuyerDeal::Called {
            call: call.clone(),
            seller,
        };
        self.save(ctx, dialogue, seller, &called)
            .await
            .map_err(|e| e.to_string())?;
        self.journal
            .append(CfpBody {
                dialogue,
                seller: Some(seller),
                buyer: None,
                call: call.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
        crash_point("buyer.called");
        let answer = ctx
            .ask_in(
                dialogue,
                seller,
                call.clone(),
                self.strategy.proposal_window(),
            )
            .await;
        match answer {
            Ok(ProposalReply::Propose(p)) => {
                self.journal_proposal(&p).await.map_err(|e| e.to_string())?;
                if let Err(reason) = self.check_proposal(ctx, dialogue, seller, &call, &p, 0) {
                    self.reject(ctx, dialogue, seller, &reason).await;
                    return Err(reason);
                }
                let proposed = BuyerDeal::Proposed {
                    call,
                    proposal: p.clone(),
                };
                self.save(ctx, dialogue, seller, &proposed)
                    .await
                    .map_err(|e| e.to_string())?;
                crash_point("buyer.proposed");
                Ok(p)
            }
            Ok(ProposalReply::Decline { reason }) => {
                self.close(ctx, dialogue, seller, format!("declined: {reason}"))
                    .await;
                Err(format!("declined: {reason}"))
            }
            Err(e) => {
                self.close(ctx, dialogue, seller, format!("failed: {e}"))
                    .await;
                Err(e.to_string())
            }
        }
    }

    async fn journal_proposal(&self, p: &Proposal) -> Result<()> {
        self.journal
            .append(ProposalBody {
                agreement_hash: p.agreement.hash(),
                proposal: p.clone(),
            })
            .await
    }

    /// Checks that a proposal answers `call` in `dialogue` from `seller`, is still
    /// valid, within the call's maximum, and signed by the seller if signed.
    fn check_proposal(
        &self,
        ctx: &Context,
        dialogue: B256,
        seller: Address,
        call: &CallForProposal,
        p: &Proposal,
        round: u32,
    ) -> std::result::Result<(), String> {
        let a = &p.agreement;
        let checks = [
            (a.dialogue == dialogue, "is for another dialogue"),
            (a.buyer == ctx.me(), "names another buyer"),
            (a.seller == seller, "names another seller"),
            (a.task_hash == task_hash(&call.task), "is for another task"),
            (a.kind == call.kind, "is for another skill"),
            (
                call.modes.contains(&a.mode),
                "asks for another payment mode",
            ),
            (a.token == call.token, "asks for another token"),
            (a.chain_id == ctx.chain_id(), "is on another chain"),
            (a.deadline == call.deadline, "changes the deadline"),
            (a.expiry > ctx.clock().unix_secs(), "has expired"),
            (!a.price.is_zero(), "is free (zero payments are refused)"),
            (p.round == round, "answers another round"),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("the proposal {what}"));
        }
        if a.price > call.max_price {
            return Err(format!(
                "the price {} is above the maximum {}",
                a.price, call.max_price
            ));
        }
        if let Some(sig) = &p.signature {
            sig.verify(&a.hash(), seller)
                .map_err(|e| format!("the proposal's signature: {e}"))?;
        }
        Ok(())
    }

    /// Counters as the strategy says until the seller meets the counter, stops
    /// conceding, or the rounds run out; returns the offer to accept.
    async fn negotiate(
        &self,
        ctx: &Context,
        call: &CallForProposal,
        dialogue: B256,
        mut current: Proposal,
        reservation: Amount,
    ) -> Result<Proposal> {
        let seller = current.agreement.seller;
        for round in 1..=self.strategy.max_rounds() {
            let ask = current.agreement.price;
            let Some(offer) = self.strategy.counter(round, ask, reservation) else {
                break;
            };
            let counter = Counter {
                price: offer,
                round,
            };
            self.save(
                ctx,
                dialogue,
                seller,
                &BuyerDeal::Countered {
                    call: call.clone(),
                    proposal: current.clone(),
                    counter: counter.clone(),
                },
            )
            .await?;
            self.journal
                .append(CounterBody {
                    dialogue,
                    seller: Some(seller),
                    buyer: None,
                    counter: counter.clone(),
                })
                .await?;
            let reply = ctx
                .ask_in(dialogue, seller, counter, self.strategy.proposal_window())
                .await;
            let revised = match reply {
                Ok(ProposalReply::Propose(p)) => p,
                Ok(ProposalReply::Decline { reason }) => {
                    self.close(ctx, dialogue, seller, format!("declined: {reason}"))
                        .await;
                    return Err(self.protocol(dialogue, seller, format!("withdrew: {reason}")));
                }
                Err(e) => {
                    self.reject(ctx, dialogue, seller, &format!("counter failed: {e}"))
                        .await;
                    return Err(e.into());
                }
            };
            self.journal_proposal(&revised).await?;
            if let Err(reason) = self.check_proposal(ctx, dialogue, seller, call, &revised, round) {
                self.reject(ctx, dialogue, seller, &reason).await;
                return Err(self.protocol(dialogue, seller, reason));
            }
            if revised.agreement.price > ask {
                self.reject(ctx, dialogue, seller, "the price went up")
                    .await;
                return Err(self.protocol(dialogue, seller, "raised its price".into()));
            }
            let conceded = revised.agreement.price < ask;
            self.save(
                ctx,
                dialogue,
                seller,
                &BuyerDeal::Proposed {
                    call: call.clone(),
                    proposal: revised.clone(),
                },
            )
            .await?;
            current = revised;
            tracing::debug!(target: "skill::negotiation", %dialogue, round, price = %current.agreement.price, "seller answered the counter");
            if current.agreement.price <= offer || !conceded {
                break;
            }
        }
        Ok(current)
    }

    fn protocol(&self, dialogue: B256, peer: Address, reason: String) -> Error {
        Error::Protocol {
            dialogue,
            peer,
            reason,
        }
    }

    /// Signs and sends the acceptance; returns the agreement signed by both.
    async fn accept(
        &self,
        ctx: &Context,
        dialogue: B256,
        proposal: Proposal,
    ) -> Result<SignedAgreement> {
        let a = proposal.agreement.clone();
        let seller = a.seller;
        let buyer_signature = self
            .wallet
            .sign_typed(&negotiation_domain(a.chain_id), &a)?;
        self.save(
            ctx,
            dialogue,
            seller,
            &BuyerDeal::Accepting {
                proposal,
                buyer_signature,
            },
        )
        .await?;
        let accept = Accept {
            agreement: a.clone(),
            buyer_signature,
        };
        let accepted = match self.ask_accept(ctx, dialogue, seller, accept).await {
            Ok(accepted) => accepted,
            Err(e) => {
                self.reject(ctx, dialogue, seller, &format!("acceptance failed: {e}"))
                    .await;
                return Err(e.into());
            }
        };
        let agreement = SignedAgreement {
            agreement: a,
            seller_signature: accepted.seller_signature,
            buyer_signature,
        };
        if let Err(e) = agreement.verify() {
            self.reject(ctx, dialogue, seller, "the seller's signature is invalid")
                .await;
            return Err(self.protocol(dialogue, seller, format!("agreement signature: {e}")));
        }
        self.save(
            ctx,
            dialogue,
            seller,
            &BuyerDeal::Accepted {
                agreement: agreement.clone(),
            },
        )
        .await?;
        let hash = agreement.agreement.hash();
        self.journal.append(AcceptanceBody::new(&agreement)).await?;
        crash_point("buyer.accepted");
        tracing::info!(target: "skill::negotiation", %dialogue, %seller, agreement = %hash,
            price = %agreement.agreement.price, "agreed");
        Ok(agreement)
    }

    /// Sends the acceptance, again after a timeout or a broken connection (the seller
    /// answers a repeated acceptance with the same signature), so that a seller that
    /// restarted after it accepted is not left with an agreement the buyer dropped.
    async fn ask_accept(
        &self,
        ctx: &Context,
        dialogue: B256,
        seller: Address,
        accept: Accept,
    ) -> std::result::Result<super::Accepted, agent_sdk::Error> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match ctx
                .ask_in(
                    dialogue,
                    seller,
                    accept.clone(),
                    self.strategy.proposal_window(),
                )
                .await
            {
                Err(e) if attempt < self.pay_attempts && retryable(&e) => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, attempt, error = %e,
                        "no answer to the acceptance; sending it again");
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                }
                other => return other,
            }
        }
    }

    /// The payment of an agreement: the same for the same agreement (an escrow permit
    /// also carries the buyer's permit nonce, read from the chain until it is used).
    async fn payment_for(&self, a: &Agreement) -> Result<Payment> {
        match a.mode {
            PaymentMode::Authorization => Ok(Payment::Authorization {
                domain: self.token.clone(),
                transfer: TransferWithAuthorization {
                    from: a.buyer,
                    to: a.seller,
                    value: a.price,
                    valid_after: 0,
                    valid_before: a.deadline,
                    nonce: TransferWithAuthorization::derive_nonce(a.buyer, &a.hash()),
                },
            }),
            PaymentMode::Escrow => {
                let (settlement, escrow) = self.escrow_settlement()?;
                Ok(Payment::EscrowDeposit {
                    domain: self.token.clone(),
                    permit: Permit {
                        owner: a.buyer,
                        spender: escrow,
                        value: a.price,
                        nonce: settlement.permit_nonce(a.buyer).await?,
                        deadline: a.deadline,
                    },
                    seller: a.seller,
                    job_id: escrow_job_id(&a.hash()),
                })
            }
            PaymentMode::Channel => Err(Error::Config(
                "a channel agreement is paid by funding its channel and a voucher per order".into(),
            )),
        }
    }

    /// Has the spending policy sign the agreement's payment, then pays and receives.
    async fn settle(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        task: Option<&str>,
    ) -> Result<Deal> {
        let a = &agreement.agreement;
        let payment = self.payment_for(a).await?;
        let signed = self
            .authorize(ctx, dialogue, &agreement, payment, true)
            .await?;
        crash_point("buyer.paid");
        self.save(
            ctx,
            dialogue,
            a.seller,
            &BuyerDeal::Paying {
                agreement: agreement.clone(),
                payment: signed.clone(),
            },
        )
        .await?;
        crash_point("buyer.paying");
        self.receive(ctx, dialogue, agreement, signed, task).await
    }

    /// Has the spending policy sign `payment` for `agreement`; a refusal rejects the
    /// deal. Unless `durable`, the signature must not leave before
    /// `Context::flush_payments`.
    async fn authorize(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: &SignedAgreement,
        payment: Payment,
        durable: bool,
    ) -> Result<SignedPayment> {
        let a = &agreement.agreement;
        let signed = if durable {
            ctx.pay(payment).await
        } else {
            ctx.pay_unflushed(payment).await
        };
        match signed {
            Ok(s) => Ok(s),
            Err(agent_sdk::Error::Wallet(source)) => {
                tracing::warn!(target: "skill::negotiation", %dialogue, seller = %a.seller,
                    price = %a.price, reason = %source, "the spending policy refused the payment");
                self.reject(
                    ctx,
                    dialogue,
                    a.seller,
                    &format!("the buyer's spending policy refused the payment: {source}"),
                )
                .await;
                Err(Error::PaymentRefused {
                    dialogue,
                    seller: a.seller,
                    price: a.price,
                    source: Box::new(source),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends the payment (again, after a timeout) until the delivery arrives, and
    /// checks it. `task` is the order's task in `channel` mode (required), the deal's
    /// task otherwise when it is known (for the [`DeliveryCheck`]).
    async fn receive(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        task: Option<&str>,
    ) -> Result<Deal> {
        let seller = agreement.agreement.seller;
        let hash = agreement.agreement.hash();
        let id = delivery_id(&agreement, &payment);
        let escrow = match agreement.agreement.mode {
            PaymentMode::Authorization | PaymentMode::Channel => None,
            PaymentMode::Escrow => {
                let (settlement, _) = self.escrow_settlement()?;
                let lock = settlement
                    .lock_escrow(&payment, agreement.agreement.deadline, ESCROW_REVIEW_WINDOW)
                    .await?;
                let id = escrow_id_of(agreement.agreement.buyer, escrow_job_id(&hash));
                tracing::info!(target: "skill::negotiation", %dialogue, escrow = %id,
                    tx = %lock.tx_hash, gas = lock.gas_used, "price locked in escrow");
                Some((id, lock))
            }
        };
        let mut attempt = 0;
        let delivery = loop {
            attempt += 1;
            let answer = match (agreement.agreement.mode, task) {
                (PaymentMode::Channel, Some(task)) => {
                    let order = Order {
                        channel_dialogue: agreement.agreement.dialogue,
                        agreement: hash,
                        task: task.to_owned(),
                        payment: payment.clone(),
                    };
                    ctx.ask_in(dialogue, seller, order, self.delivery_timeout)
                        .await
                }
                (PaymentMode::Channel, None) => {
                    return Err(Error::Config("a channel order needs its task".into()))
                }
                _ => {
                    let pay = Pay {
                        agreement: hash,
                        payment: payment.clone(),
                    };
                    ctx.ask_in(dialogue, seller, pay, self.delivery_timeout)
                        .await
                }
            };
            match answer {
                Ok(d) => break d,
                // No answer in time, or the connection broke under the ask: the seller
                // settles a payment once however often it gets it, so the same one
                // goes again.
                Err(e) if retryable(&e) && attempt < self.pay_attempts => {
                    tracing::warn!(target: "skill::negotiation", %dialogue, attempt, error = %e, "no delivery yet; re-sending the same payment");
                    if !matches!(e, agent_sdk::Error::Timeout { .. }) {
                        // A broken connection fails at once: give it a moment to be
                        // dialed again.
                        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                    }
                }
                Err(e) if retryable(&e) => {
                    return Err(self
                        .undelivered(ctx, dialogue, &agreement, &payment, e)
                        .await);
                }
                Err(e) => return Err(e.into()),
            }
        };
        crash_point("buyer.delivered");
        let on_chain = match (&escrow, &self.settlement) {
            (Some((id, _)), Some(s)) => Some(s.escrow(*id).await?),
            _ => None,
        };
        let mut problem = if delivery.agreement != id {
            Some("the delivery is for another agreement".to_owned())
        } else if result_hash(&delivery.result) != delivery.result_hash {
            Some("the result does not match its hash".to_owned())
        } else if on_chain.is_some_and(|j| {
            j.state != EscrowState::Delivered || j.result_hash != delivery.result_hash
        }) {
            Some(format!(
                "the escrow does not record this delivery: {on_chain:?}"
            ))
        } else if let Err(e) = super::verify_signer(
            &delivery.signature,
            &delivery
                .delivery()
                .signing_hash(&negotiation_domain(agreement.agreement.chain_id)),
            seller,
        ) {
            Some(format!("the delivery's signature: {e}"))
        } else {
            self.settlement_problem(&agreement.agreement, &payment, &delivery.settlement)
                .await?
        };
        if let (None, Some(check)) = (&problem, &self.delivery_check) {
            let to_check = DeliveryToCheck {
                dialogue,
                agreement: &agreement.agreement,
                task,
                delivery: &delivery,
            };
            problem = check
                .check(to_check)
                .await?
                .map(|reason| format!("the delivery check refused it: {reason}"));
        }
        if let Some(reason) = problem {
            let escrow_dispute = self.dispute_escrow(&agreement.agreement, &reason).await;
            self.journal
                .append(DisputeBody {
                    agreement_hash: hash,
                    reason: reason.clone(),
                    delivery: Some(delivery.clone()),
                    escrow_dispute,
                })
                .await?;
            self.close(ctx, dialogue, seller, format!("disputed: {reason}"))
                .await;
            return Err(self.protocol(dialogue, seller, reason));
        }
        if agreement.agreement.mode == PaymentMode::Channel {
            // Its voucher is journaled with the delivery and the receipt.
            return self
                .finish_order(ctx, dialogue, agreement, payment, delivery)
                .await;
        }
        let paid = PaymentBody {
            agreement_hash: hash,
            agreement: agreement.clone(),
            payment_id: payment.payment.id(),
            payment: payment.clone(),
            settlement: delivery.settlement,
            escrow_id: escrow.map(|(id, _)| id),
            lock: escrow.map(|(_, lock)| lock),
        };
        self.journal
            .append_all(vec![paid.into(), DeliveryBody::new(hash, &delivery).into()])
            .await?;
        // Journaled first: after a crash here the deal is redone from `Paying`, and
        // the journal keeps one copy of each entry.
        crash_point("buyer.journaled");
        self.save(
            ctx,
            dialogue,
            seller,
            &BuyerDeal::Delivered {
                agreement: agreement.clone(),
                payment: payment.clone(),
                delivery: delivery.clone(),
            },
        )
        .await?;
        crash_point("buyer.receipt");
        self.finish(ctx, dialogue, agreement, payment, delivery)
            .await
    }

    /// Signs and sends the receipt, and closes the deal.
    async fn finish(
        &self,
        ctx: &Context,
        dialogue: B256,
        agreement: SignedAgreement,
        payment: SignedPayment,
        delivery: Deliver,
    ) -> Result<Deal> {
        let a = &agreement.agreement;
        let release = match a.mode {
            PaymentMode::Authorization | PaymentMode::Channel => None,
            PaymentMode::Escrow => {
                let (settlement, _) = self.escrow_settlement()?;
                let id = escrow_id_of(a.buyer, escrow_job_id(&a.hash()));
                settlement.accept_escrow(id).await?
            }
        };
        let receipt = self.receipt(a, &delivery)?;
        let entry = ReceiptBody {
            release,
            ..ReceiptBody::new(a.hash(), &receipt)
        };
        // Journaled first, as in `receive`: a crash here redoes `finish`, which finds
        // the escrow released by the same transaction and signs the same receipt.
        self.journal.append(entry).await?;
        crash_point("buyer.receipted");
        self.save(
            ctx,
            dialogue,
            a.seller,
            &BuyerDeal::Done {
                agreement: receipt.agreement,
                result_hash: receipt.result_hash,
                tx_hash: release.map_or(delivery.settlement.tx_hash, |r| r.tx_hash),
            },
        )
        .await?;
        self.send_receipt(ctx, dialogue, a.seller, receipt).await;
        tracing::info!(target: "skill::negotiation", %dialogue, seller = %a.seller,
            price = %a.price, tx = %delivery.settlement.tx_hash, "deal done");
        Ok(Deal {
            dialogue,
            agreement,
            payment,
            delivery,
        })
    }

    /// The buyer's signed receipt of `delivery` under `a`.
    fn receipt(&self, a: &Agreement, delivery: &Deliver) -> Result<Receipt> {
        let note = ReceiptNote {
            agreement: delivery.agreement,
            result_hash: delivery.result_hash,
        };
        Ok(Receipt {
            agreement: note.agreement,
            result_hash: note.result_hash,
            signature: self
                .wallet
                .sign_typed(&negotiation_domain(a.chain_id), &note)?,
        })
    }
}
