//! The seller side: skills answering calls, counters, acceptances and payments.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_sdk::{AgentBuilder, Context, Skill, SkillError, StateUpdate};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wallets::{
    Address, Amount, Channel, Eip712, Journal, Payment, SignedPayment, TransferWithAuthorization,
    Wallet, B256,
};

use super::journal::{
    AcceptanceBody, CfpBody, CounterBody, DeliveryBody, JournalBody, PaymentBody, ProposalBody,
    ReceiptBody, RejectionBody,
};
use super::messages::{
    escrow_job_id, negotiation_domain, result_hash, task_hash, Accept, Accepted, Agreement,
    CallForProposal, Counter, Deliver, Delivery, Fund, Order, Pay, PaymentMode, Proposal,
    ProposalReply, Receipt, Receipts, Reject, Settled, SignedAgreement, ESCROW_REVIEW_WINDOW,
    MAX_RECEIPTS,
};
use super::settlement::{escrow_id_of, EscrowState, Settlement};
use super::strategy::SellerStrategy;
use super::{crash_point, verify_signer, SharedJournal};

mod expiry;

mod channel;

pub(super) use channel::NO_SETTLEMENT;

/// What a seller sells: produces the result of a task once it is paid.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Does the work for `task` (untrusted text from the buyer).
    ///
    /// # Errors
    /// A [`SkillError`] that goes back to the buyer, who may pay-retry.
    async fn perform(&self, ctx: &Context, task: &str) -> Result<ServiceOutput, SkillError>;
}

/// A service's result, and an attestation of how it was made if it has one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceOutput {
    /// The result.
    pub result: Value,
    /// For example a signed LLM inference attestation.
    pub attestation: Option<Value>,
}

impl ServiceOutput {
    /// A result without attestation.
    pub fn new(result: Value) -> Self {
        Self {
            result,
            attestation: None,
        }
    }
}

/// A [`Service`] made from an async closure; see [`service_fn`].
pub struct FnService<F>(F);

impl<F> std::fmt::Debug for FnService<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnService").finish_non_exhaustive()
    }
}

/// A service from an async closure taking the task text.
pub fn service_fn<F, Fut>(f: F) -> FnService<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ServiceOutput, SkillError>> + Send + 'static,
{
    FnService(f)
}

#[async_trait]
impl<F, Fut> Service for FnService<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ServiceOutput, SkillError>> + Send + 'static,
{
    async fn perform(&self, _ctx: &Context, task: &str) -> Result<ServiceOutput, SkillError> {
        (self.0)(task.to_owned()).await
    }
}

/// A seller's state of one deal, saved before it acts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "seller", rename_all = "snake_case")]
// Short-lived values on their way to or from JSON: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum SellerDeal {
    /// An offer stands.
    Proposed {
        /// The buyer's call.
        call: CallForProposal,
        /// The current offer.
        proposal: Proposal,
    },
    /// Both signed; waiting for the payment.
    Accepted {
        /// The task.
        task: String,
        /// The agreement.
        agreement: SignedAgreement,
    },
    /// A valid payment arrived; it is being settled (and the work done).
    Settling {
        /// The task.
        task: String,
        /// The agreement.
        agreement: SignedAgreement,
        /// The payment.
        payment: SignedPayment,
    },
    /// Escrow mode: the work is done and its delivery is being recorded on chain.
    Delivering {
        /// The agreement.
        agreement: SignedAgreement,
        /// The payment (the escrow deposit).
        payment: SignedPayment,
        /// The result.
        result: Value,
        /// Its attestation.
        attestation: Option<Value>,
    },
    /// Paid and delivered; a repeated payment gets this delivery again.
    Delivered {
        /// The agreement.
        agreement: SignedAgreement,
        /// The payment.
        payment: SignedPayment,
        /// The delivery.
        delivery: Deliver,
    },
    /// Channel mode: the funded channel of an agreement, in the agreement's dialogue.
    /// Open until the seller closes the channel.
    Channel(SellerChannel),
    /// Channel mode: an order whose voucher was accepted as the channel's order number
    /// `seq`, in the order's own dialogue; the work is being done.
    Ordered {
        /// The channel agreement's dialogue.
        channel_dialogue: B256,
        /// The task.
        task: String,
        /// The channel agreement.
        agreement: SignedAgreement,
        /// The voucher.
        payment: SignedPayment,
        /// The order's number in the channel.
        seq: u64,
    },
    /// Over: received, or rejected before payment.
    Closed {
        /// The buyer.
        buyer: Address,
        /// The agreement hash, if there was one.
        agreement: Option<B256>,
        /// `received` or `rejected: reason`.
        outcome: String,
    },
}

/// A seller's funded channel ([`SellerDeal::Channel`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SellerChannel {
    /// The agreement (price per order, deadline for orders).
    pub agreement: SignedAgreement,
    /// The channel.
    pub channel: Channel,
    /// Its deposit.
    pub deposit: Amount,
    /// The last second the seller may settle.
    pub expires_at: u64,
    /// The transaction that opened it.
    pub funded: Settled,
    /// Orders accepted so far.
    pub orders: u64,
    /// The highest voucher received: it pays for every order accepted.
    pub best: Option<SignedPayment>,
    /// The cumulative amount settled on chain so far.
    pub settled: Amount,
}

/// The seller side of negotiation; add it to an agent with [`Seller::install`].
#[derive(Clone)]
pub struct Seller {
    inner: Arc<SellerInner>,
}

struct SellerInner {
    kind: String,
    wallet: Arc<Wallet>,
    strategy: Arc<dyn SellerStrategy>,
    service: Arc<dyn Service>,
    settlement: Arc<dyn Settlement>,
    journal: SharedJournal,
    /// One handler at a time per dialogue.
    locks: Mutex<HashMap<B256, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Seller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seller")
            .field("kind", &self.inner.kind)
            .field("address", &self.inner.wallet.address())
            .finish_non_exhaustive()
    }
}

type Handled<T> = Result<T, SkillError>;

fn internal(e: impl std::fmt::Display) -> SkillError {
    SkillError::internal(e.to_string())
}

fn refused(message: impl Into<String>) -> SkillError {
    SkillError::new("refused", message)
}

/// A dialogue state the runtime would not read or write: `refused` for a dialogue
/// that belongs to another agent (the sender is told no more: not whose it is),
/// `internal` otherwise.
fn state_error(e: agent_sdk::Error) -> SkillError {
    if matches!(e, agent_sdk::Error::ForeignDialogue(_)) {
        refused(FOREIGN_DIALOGUE)
    } else {
        internal(e)
    }
}

const FOREIGN_DIALOGUE: &str = "this dialogue belongs to another agent";

impl Seller {
    /// A seller of `kind` (e.g. `weather.Forecast`) that signs with `wallet` (the
    /// agent's own), prices with `strategy`, works with `service`, settles with
    /// `settlement` and journals to `journal`.
    pub fn new(
        kind: impl Into<String>,
        wallet: Arc<Wallet>,
        strategy: impl SellerStrategy,
        service: impl Service,
        settlement: impl Settlement,
        journal: Journal,
    ) -> Self {
        Self {
            inner: Arc::new(SellerInner {
                kind: kind.into(),
                wallet,
                strategy: Arc::new(strategy),
                service: Arc::new(service),
                settlement: Arc::new(settlement),
                journal: SharedJournal::new(journal),
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Changes after each write to this seller's journal: a reader of the journal
    /// file (a monitor, a test) waits on it for entries written after a call
    /// returned, such as the receipt the buyer sends after a delivery.
    pub fn journal_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.journal.writes()
    }

    /// The seller's journal, to share with the agent's other sellers (an x402 seller
    /// of the same services), so that one writer appends to it.
    pub fn journal(&self) -> SharedJournal {
        self.inner.journal.clone()
    }

    /// Adds the seller's skills (one per protocol message) to an agent.
    pub fn install(&self, builder: AgentBuilder) -> AgentBuilder {
        builder
            .skill(On::<CallForProposal>::new(self))
            .skill(On::<Counter>::new(self))
            .skill(On::<Accept>::new(self))
            .skill(On::<Reject>::new(self))
            .skill(On::<Pay>::new(self))
            .skill(On::<Receipt>::new(self))
            .skill(On::<Receipts>::new(self))
            .skill(On::<Fund>::new(self))
            .skill(On::<Order>::new(self))
    }

    /// Settles the best voucher of every channel that has more to settle (`close`: and
    /// closes it, refunding the rest of the deposit to the buyer), from the seller's
    /// account. `ctx` is the seller agent's context (`AgentHandle::context`). Returns
    /// each channel settled with its transaction; a failure stops at that channel.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the settlement has no channels,
    /// [`crate::Error::Chain`] when a settlement fails, [`crate::Error::Runtime`] when the
    /// store fails.
    pub async fn settle_channels(
        &self,
        ctx: &Context,
        close: bool,
    ) -> crate::Result<Vec<(B256, Settled)>> {
        self.inner.settle_channels(ctx, close).await
    }

    /// Settles and closes every channel whose agreement's deadline has passed: it
    /// takes no more orders, and its best voucher must reach the chain before the
    /// channel expires ([`crate::CHANNEL_SETTLE_WINDOW`] after the
    /// deadline), or the buyer may take the whole deposit back. A channel with no
    /// voucher is left to expire.
    ///
    /// # Errors
    /// As [`Seller::settle_channels`].
    pub async fn settle_due_channels(&self, ctx: &Context) -> crate::Result<Vec<(B256, Settled)>> {
        self.inner.settle_due_channels(ctx).await
    }

    /// One round of the seller's upkeep: closes the deals that ran out
    /// ([`Seller::expire`]) and settles the channels that are due
    /// ([`Seller::settle_due_channels`]; skipped when the settlement takes no
    /// channels).
    ///
    /// # Errors
    /// As [`Seller::expire`] and [`Seller::settle_due_channels`].
    pub async fn upkeep(&self, ctx: &Context) -> crate::Result<Upkeep> {
        let expired = self.expire(ctx).await?;
        let settled = if self.inner.settlement.channels().is_some() {
            self.settle_due_channels(ctx).await?
        } else {
            Vec::new()
        };
        Ok(Upkeep { expired, settled })
    }

    /// Runs [`Seller::upkeep`] now and then every `every`, logging what it did and
    /// any failure (a failed round is tried again at the next), until the task is
    /// aborted or the runtime stops. `ctx` is the seller agent's context.
    pub fn spawn_upkeep(&self, ctx: Context, every: Duration) -> tokio::task::JoinHandle<()> {
        let seller = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match seller.upkeep(&ctx).await {
                    Ok(done) if done.expired > 0 || !done.settled.is_empty() => {
                        tracing::info!(target: "skill::negotiation", expired = done.expired,
                            settled = done.settled.len(), "seller upkeep");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target: "skill::negotiation", error = %e,
                            "seller upkeep failed; trying again at the next round");
                    }
                }
            }
        })
    }
}

/// What one round of [`Seller::upkeep`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Deals closed because they ran out.
    pub expired: usize,
    /// Channels settled and closed, with their transactions.
    pub settled: Vec<(B256, Settled)>,
}

/// The skill handling one message kind for a seller.
struct On<R>(Arc<SellerInner>, std::marker::PhantomData<fn(R)>);

impl<R> On<R> {
    fn new(seller: &Seller) -> Self {
        Self(seller.inner.clone(), std::marker::PhantomData)
    }
}

/// Who sent the message, in which dialogue; with the dialogue's lock held.
struct Turn {
    dialogue: B256,
    buyer: Address,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl SellerInner {
    async fn turn(&self, ctx: &Context) -> Handled<Turn> {
        let (Some(dialogue), Some(buyer)) = (ctx.dialogue(), ctx.sender()) else {
            return Err(SkillError::bad_request(
                "negotiation messages need a dialogue",
            ));
        };
        if self.wallet.address() != ctx.me() {
            return Err(internal(crate::Error::WrongWallet {
                wallet: self.wallet.address(),
                agent: ctx.me(),
            }));
        }
        Ok(self.turn_in(dialogue, buyer).await)
    }

    /// Waits for `dialogue`'s lock (with `buyer`).
    async fn turn_in(&self, dialogue: B256, buyer: Address) -> Turn {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget the locks no turn holds or waits for, so the map stays small.
            if locks.len() > 64 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(dialogue).or_default().clone()
        };
        Turn {
            dialogue,
            buyer,
            _guard: lock.lock_owned().await,
        }
    }

    /// The dialogue's state, if it is this buyer's. Dialogue ids are chosen by
    /// buyers, so another agent could name a dialogue that is not its own; the
    /// runtime already refuses that (`Error::ForeignDialogue`), and the deal's own
    /// record of its buyer is checked here as well.
    fn state(&self, ctx: &Context, t: &Turn) -> Handled<Option<SellerDeal>> {
        let deal = ctx.state::<SellerDeal>(t.dialogue).map_err(state_error)?;
        match &deal {
            Some(d) if d.buyer() != t.buyer => {
                tracing::warn!(target: "skill::negotiation", dialogue = %t.dialogue,
                    sender = %t.buyer, "a message in another buyer's dialogue");
                Err(refused(FOREIGN_DIALOGUE))
            }
            _ => Ok(deal),
        }
    }

    async fn save(&self, ctx: &Context, t: &Turn, deal: &SellerDeal) -> Handled<()> {
        let closed = matches!(deal, SellerDeal::Closed { .. });
        ctx.save_state(t.dialogue, t.buyer, deal, closed)
            .await
            .map_err(state_error)
    }

    async fn journal(&self, body: impl Into<JournalBody>) -> Handled<()> {
        self.journal.append(body).await.map_err(internal)
    }

    fn sign(&self, agreement: &Agreement) -> Handled<wallets::Signature> {
        self.wallet
            .sign_typed(&negotiation_domain(agreement.chain_id), agreement)
            .map_err(internal)
    }

    /// The offer for `call` at `price`.
    fn offer(
        &self,
        ctx: &Context,
        t: &Turn,
        call: &CallForProposal,
        price: wallets::Amount,
        mode: PaymentMode,
        round: u32,
    ) -> Handled<Proposal> {
        let validity = self.strategy.offer_validity().as_secs();
        let agreement = Agreement {
            dialogue: t.dialogue,
            buyer: t.buyer,
            seller: ctx.me(),
            task_hash: task_hash(&call.task),
            kind: call.kind.clone(),
            price,
            mode,
            token: call.token,
            chain_id: ctx.chain_id(),
            expiry: ctx
                .clock()
                .unix_secs()
                .saturating_add(validity)
                .min(call.deadline),
            deadline: call.deadline,
        };
        let signature = Some(self.sign(&agreement)?);
        Ok(Proposal {
            agreement,
            round,
            signature,
        })
    }

    async fn on_call(&self, ctx: &Context, call: CallForProposal) -> Handled<ProposalReply> {
        let t = self.turn(ctx).await?;
        self.expire_stale(ctx, Some(t.dialogue)).await;
        match self.state(ctx, &t)? {
            None => {}
            Some(SellerDeal::Proposed { call: c, proposal }) if c == call => {
                return Ok(ProposalReply::Propose(proposal));
            }
            Some(_) => return Err(SkillError::bad_request("this dialogue already has a deal")),
        }
        let decline = |reason: String| {
            tracing::debug!(target: "skill::negotiation", dialogue = %t.dialogue, %reason, "declining");
            Ok(ProposalReply::Decline { reason })
        };
        if call.kind != self.kind {
            return decline(format!("this agent sells {}, not {}", self.kind, call.kind));
        }
        let token = self.settlement.token();
        if Some(call.token) != token.verifying_contract || token.chain_id != Some(ctx.chain_id()) {
            return decline(format!(
                "payment only in the token {:?}",
                token.verifying_contract
            ));
        }
        let escrow = self.settlement.escrow_contract().is_some();
        let channels = self.settlement.channels().is_some();
        let Some(mode) = call.modes.iter().copied().find(|m| match m {
            PaymentMode::Authorization => true,
            PaymentMode::Escrow => escrow,
            PaymentMode::Channel => channels,
        }) else {
            return decline("none of the payment modes is supported".into());
        };
        if call.deadline <= ctx.clock().unix_secs() {
            return decline("the deadline has passed".into());
        }
        let Some(price) = self.strategy.open(&call) else {
            return decline(format!("no offer at {} or less", call.max_price));
        };
        let proposal = self.offer(ctx, &t, &call, price, mode, 0)?;
        let cause = CfpBody {
            dialogue: t.dialogue,
            seller: None,
            buyer: Some(t.buyer),
            call: call.clone(),
        };
        self.stand(ctx, &t, call, &proposal, cause.into()).await?;
        crash_point("seller.proposed");
        tracing::info!(target: "skill::negotiation", dialogue = %t.dialogue, buyer = %t.buyer, %price, "proposed");
        Ok(ProposalReply::Propose(proposal))
    }

    /// Saves `proposal` as the offer standing in the dialogue, then journals what
    /// prompted it (`cause`) and the proposal itself.
    async fn stand(
        &self,
        ctx: &Context,
        t: &Turn,
        call: CallForProposal,
        proposal: &Proposal,
        cause: JournalBody,
    ) -> Handled<()> {
        let deal = SellerDeal::Proposed {
            call,
            proposal: proposal.clone(),
        };
        self.save(ctx, t, &deal).await?;
        self.journal(cause).await?;
        self.journal(ProposalBody {
            agreement_hash: proposal.agreement.hash(),
            proposal: proposal.clone(),
        })
        .await
    }

    async fn on_counter(&self, ctx: &Context, counter: Counter) -> Handled<ProposalReply> {
        let t = self.turn(ctx).await?;
        let Some(SellerDeal::Proposed { call, proposal }) = self.state(ctx, &t)? else {
            return Err(SkillError::bad_request("no offer stands in this dialogue"));
        };
        if counter.round == proposal.round && counter.round > 0 {
            return Ok(ProposalReply::Propose(proposal)); // a retry
        }
        if counter.round != proposal.round.saturating_add(1) {
            return Err(SkillError::bad_request(format!(
                "counter round {} after round {}",
                counter.round, proposal.round
            )));
        }
        let current = proposal.agreement.price;
        let price = self
            .strategy
            .respond(counter.round, current, counter.price)
            .min(current);
        let revised = self.offer(
            ctx,
            &t,
            &call,
            price,
            proposal.agreement.mode,
            counter.round,
        )?;
        let cause = CounterBody {
            dialogue: t.dialogue,
            seller: None,
            buyer: Some(t.buyer),
            counter,
        };
        self.stand(ctx, &t, call, &revised, cause.into()).await?;
        Ok(ProposalReply::Propose(revised))
    }

    async fn on_accept(&self, ctx: &Context, accept: Accept) -> Handled<Accepted> {
        let t = self.turn(ctx).await?;
        let (call, proposal) = match self.state(ctx, &t)? {
            Some(SellerDeal::Proposed { call, proposal }) => (call, proposal),
            Some(SellerDeal::Accepted { agreement, .. })
                if agreement.agreement == accept.agreement =>
            {
                // A retry; journals the acceptance if a crash lost it.
                self.journal(AcceptanceBody::new(&agreement)).await?;
                return Ok(Accepted {
                    seller_signature: agreement.seller_signature,
                });
            }
            _ => return Err(SkillError::bad_request("no offer stands in this dialogue")),
        };
        if accept.agreement != proposal.agreement {
            return Err(refused("the accepted terms are not the ones offered"));
        }
        if proposal.agreement.expiry < ctx.clock().unix_secs() {
            return Err(refused("the offer has expired"));
        }
        let hash = accept.agreement.hash();
        accept
            .buyer_signature
            .verify(&hash, t.buyer)
            .map_err(|e| refused(format!("the buyer's signature: {e}")))?;
        let seller_signature = match proposal.signature {
            Some(s) => s,
            None => self.sign(&proposal.agreement)?,
        };
        let agreement = SignedAgreement {
            agreement: accept.agreement,
            seller_signature,
            buyer_signature: accept.buyer_signature,
        };
        self.save(
            ctx,
            &t,
            &SellerDeal::Accepted {
                task: call.task,
                agreement: agreement.clone(),
            },
        )
        .await?;
        self.journal(AcceptanceBody::new(&agreement)).await?;
        crash_point("seller.accepted");
        tracing::info!(target: "skill::negotiation", dialogue = %t.dialogue, agreement = %hash, "accepted");
        Ok(Accepted { seller_signature })
    }

    async fn on_reject(&self, ctx: &Context, reject: Reject) -> Handled<()> {
        let t = self.turn(ctx).await?;
        let agreement = match self.state(ctx, &t)? {
            Some(SellerDeal::Proposed { proposal, .. }) => proposal.agreement.hash(),
            Some(SellerDeal::Accepted { agreement, .. }) => agreement.agreement.hash(),
            other => {
                tracing::warn!(target: "skill::negotiation", dialogue = %t.dialogue,
                    state = ?other.map(|s| step_name(&s)), "ignoring a rejection");
                return Ok(());
            }
        };
        self.save(
            ctx,
            &t,
            &SellerDeal::Closed {
                buyer: t.buyer,
                agreement: Some(agreement),
                outcome: format!("rejected: {}", reject.reason),
            },
        )
        .await?;
        self.journal(RejectionBody {
            dialogue: t.dialogue,
            seller: None,
            agreement_hash: Some(agreement),
            by: Some(t.buyer),
            reason: reject.reason,
        })
        .await
    }

    /// Checks that `payment` pays exactly `agreement`.
    fn check_payment(&self, a: &Agreement, payment: &SignedPayment) -> Result<(), String> {
        if a.mode == PaymentMode::Escrow {
            return self.check_escrow_payment(a, payment);
        }
        let Payment::Authorization { domain, transfer } = &payment.payment else {
            return Err("the agreement is paid by an EIP-3009 authorization".into());
        };
        if domain != self.settlement.token() {
            return Err("the authorization is not in the agreed token's domain".into());
        }
        let want = TransferWithAuthorization {
            from: a.buyer,
            to: a.seller,
            value: a.price,
            valid_after: 0,
            valid_before: a.deadline,
            nonce: TransferWithAuthorization::derive_nonce(a.buyer, &a.hash()),
        };
        if transfer != &want {
            return Err(format!(
                "the authorization {transfer:?} does not pay the agreement ({want:?})"
            ));
        }
        payment
            .verify()
            .map_err(|e| format!("the payment's signature: {e}"))
    }

    /// Checks that an escrow deposit locks exactly `agreement` for this seller.
    fn check_escrow_payment(&self, a: &Agreement, payment: &SignedPayment) -> Result<(), String> {
        let Payment::EscrowDeposit {
            domain,
            permit,
            seller,
            job_id,
        } = &payment.payment
        else {
            return Err("the agreement is paid by an escrow deposit".into());
        };
        let checks = [
            (
                domain == self.settlement.token(),
                "is not in the agreed token's domain",
            ),
            (permit.owner == a.buyer, "is not the buyer's"),
            (
                Some(permit.spender) == self.settlement.escrow_contract(),
                "is for another escrow contract",
            ),
            (permit.value == a.price, "is not the agreed price"),
            (permit.deadline == a.deadline, "has another deadline"),
            (*seller == a.seller, "pays another seller"),
            (*job_id == escrow_job_id(&a.hash()), "is for another job"),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("the escrow deposit {what}"));
        }
        payment
            .verify()
            .map_err(|e| format!("the deposit's signature: {e}"))
    }

    async fn on_pay(&self, ctx: &Context, pay: Pay) -> Handled<Deliver> {
        let t = self.turn(ctx).await?;
        let (task, agreement) = match self.state(ctx, &t)? {
            Some(SellerDeal::Accepted { task, agreement }) => (task, agreement),
            Some(SellerDeal::Settling {
                task,
                agreement,
                payment,
            }) if payment == pay.payment => {
                return self
                    .settle_and_deliver(ctx, &t, task, agreement, payment)
                    .await;
            }
            Some(SellerDeal::Delivering {
                agreement,
                payment,
                result,
                attestation,
            }) if payment == pay.payment => {
                let output = ServiceOutput {
                    result,
                    attestation,
                };
                return self
                    .deliver_escrow(ctx, &t, agreement, payment, output)
                    .await;
            }
            Some(SellerDeal::Delivered {
                agreement,
                payment,
                delivery,
            }) if payment == pay.payment => {
                return self.deliver_again(&agreement, delivery).await;
            }
            _ => return Err(SkillError::bad_request("nothing to pay in this dialogue")),
        };
        if pay.agreement != agreement.agreement.hash() {
            return Err(refused("the payment is for another agreement"));
        }
        if agreement.agreement.mode == PaymentMode::Channel {
            return Err(refused(
                "a channel agreement is paid by Fund and then a voucher per Order",
            ));
        }
        if agreement.agreement.deadline <= ctx.clock().unix_secs() {
            return Err(refused("the deadline has passed"));
        }
        self.check_payment(&agreement.agreement, &pay.payment)
            .map_err(refused)?;
        self.save(
            ctx,
            &t,
            &SellerDeal::Settling {
                task: task.clone(),
                agreement: agreement.clone(),
                payment: pay.payment.clone(),
            },
        )
        .await?;
        crash_point("seller.settling");
        self.settle_and_deliver(ctx, &t, task, agreement, pay.payment)
            .await
    }

    async fn settle_and_deliver(
        &self,
        ctx: &Context,
        t: &Turn,
        task: String,
        agreement: SignedAgreement,
        payment: SignedPayment,
    ) -> Handled<Deliver> {
        if agreement.agreement.mode == PaymentMode::Escrow {
            return self
                .escrow_and_deliver(ctx, t, task, agreement, payment)
                .await;
        }
        let hash = agreement.agreement.hash();
        let settled = self
            .settlement
            .settle_authorization(&payment)
            .await
            .map_err(|e| internal(format!("settling the payment: {e}")))?;
        crash_point("seller.settled");
        tracing::info!(target: "skill::negotiation", dialogue = %t.dialogue, agreement = %hash,
            tx = %settled.tx_hash, gas = settled.gas_used, "payment settled");
        self.journal(PaymentBody::new(&agreement, &payment, settled))
            .await?;
        crash_point("seller.journaled");
        let output = self.service.perform(ctx, &task).await?;
        let id = agreement.agreement.hash();
        self.deliver(ctx, t, agreement, payment, output, settled, id)
            .await
    }

    /// Escrow mode: checks the lock on chain, does the work, records the delivery on
    /// chain, and delivers.
    async fn escrow_and_deliver(
        &self,
        ctx: &Context,
        t: &Turn,
        task: String,
        agreement: SignedAgreement,
        payment: SignedPayment,
    ) -> Handled<Deliver> {
        let a = &agreement.agreement;
        let escrow_id = escrow_id_of(a.buyer, escrow_job_id(&a.hash()));
        let job = self
            .settlement
            .escrow(escrow_id)
            .await
            .map_err(|e| internal(format!("reading the escrow: {e}")))?;
        let wanted = job.buyer == a.buyer
            && job.seller == a.seller
            && job.amount == a.price
            && job.deadline == a.deadline
            && job.review_window == ESCROW_REVIEW_WINDOW;
        if !wanted || job.state != EscrowState::Locked {
            return Err(refused(format!(
                "escrow {escrow_id} is not locked as agreed: {job:?}"
            )));
        }
        let output = self.service.perform(ctx, &task).await?;
        self.save(
            ctx,
            t,
            &SellerDeal::Delivering {
                agreement: agreement.clone(),
                payment: payment.clone(),
                result: output.result.clone(),
                attestation: output.attestation.clone(),
            },
        )
        .await?;
        crash_point("seller.delivering");
        self.deliver_escrow(ctx, t, agreement, payment, output)
            .await
    }

    /// Records an escrow delivery on chain (again, after a crash) and delivers.
    async fn deliver_escrow(
        &self,
        ctx: &Context,
        t: &Turn,
        agreement: SignedAgreement,
        payment: SignedPayment,
        output: ServiceOutput,
    ) -> Handled<Deliver> {
        let hash = agreement.agreement.hash();
        let escrow_id = escrow_id_of(agreement.agreement.buyer, escrow_job_id(&hash));
        let settled = self
            .settlement
            .deliver_escrow(escrow_id, result_hash(&output.result))
            .await
            .map_err(|e| internal(format!("recording the delivery: {e}")))?;
        tracing::info!(target: "skill::negotiation", dialogue = %t.dialogue, agreement = %hash,
            escrow = %escrow_id, tx = %settled.tx_hash, gas = settled.gas_used, "delivery recorded in escrow");
        self.journal(PaymentBody {
            escrow_id: Some(escrow_id),
            ..PaymentBody::new(&agreement, &payment, settled)
        })
        .await?;
        let id = agreement.agreement.hash();
        self.deliver(ctx, t, agreement, payment, output, settled, id)
            .await
    }

    /// Answers a repeated payment or order with its delivery, journaling the delivery
    /// if a crash lost it (the journal keeps one).
    async fn deliver_again(
        &self,
        agreement: &SignedAgreement,
        delivery: Deliver,
    ) -> Handled<Deliver> {
        let hash = agreement.agreement.hash();
        self.journal(DeliveryBody::new(hash, &delivery)).await?;
        Ok(delivery)
    }

    /// Signs the delivery, saves it, journals it, and answers with it.
    // The deal's parts as each step has them; a struct for them would only be unpacked.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        ctx: &Context,
        t: &Turn,
        agreement: SignedAgreement,
        payment: SignedPayment,
        output: ServiceOutput,
        settled: Settled,
        id: B256,
    ) -> Handled<Deliver> {
        let hash = agreement.agreement.hash();
        let delivery = self.sign_delivery(&agreement, output, settled, id)?;
        self.save(
            ctx,
            t,
            &SellerDeal::Delivered {
                agreement,
                payment,
                delivery: delivery.clone(),
            },
        )
        .await?;
        crash_point("seller.delivered");
        self.journal(DeliveryBody::new(hash, &delivery)).await?;
        Ok(delivery)
    }

    /// The signed delivery of `output` for `id` (the agreement, or a channel order).
    fn sign_delivery(
        &self,
        agreement: &SignedAgreement,
        output: ServiceOutput,
        settled: Settled,
        id: B256,
    ) -> Handled<Deliver> {
        let result_hash = result_hash(&output.result);
        let signature = self
            .wallet
            .sign_typed(
                &negotiation_domain(agreement.agreement.chain_id),
                &Delivery {
                    agreement: id,
                    result_hash,
                    tx_hash: settled.tx_hash,
                },
            )
            .map_err(internal)?;
        Ok(Deliver {
            agreement: id,
            result: output.result,
            result_hash,
            attestation: output.attestation,
            settlement: settled,
            signature,
        })
    }

    async fn on_receipt(&self, ctx: &Context, receipt: Receipt) -> Handled<()> {
        let t = self.turn(ctx).await?;
        let Some((entry, closed)) = self.check_receipt(ctx, &t, &receipt)? else {
            return Ok(()); // a retry
        };
        // Journaled first: a receipt sent again after a crash here is kept once.
        self.journal(entry).await?;
        self.save(ctx, &t, &closed).await
    }

    /// Receipts of channel orders, each in its order's dialogue: the valid ones are
    /// journaled in one write and their deals closed; an invalid one is named in the
    /// error, after the others are recorded.
    async fn on_receipts(&self, ctx: &Context, batch: Receipts) -> Handled<()> {
        let Some(buyer) = ctx.sender() else {
            return Err(SkillError::bad_request(
                "negotiation messages need a sender",
            ));
        };
        if batch.receipts.len() > MAX_RECEIPTS {
            return Err(SkillError::bad_request(format!(
                "{} receipts in one message; at most {MAX_RECEIPTS}",
                batch.receipts.len()
            )));
        }
        // Locked in one global order (by dialogue), so two batches that share
        // receipts cannot wait for each other; a receipt sent twice counts once.
        let mut receipts = batch.receipts;
        receipts.sort_by_key(|r| r.agreement);
        receipts.dedup_by_key(|r| r.agreement);
        let mut turns = Vec::with_capacity(receipts.len());
        let mut entries = Vec::new();
        let mut updates = Vec::new();
        let mut refusal = None;
        for receipt in &receipts {
            let t = self.turn_in(receipt.agreement, buyer).await;
            match self.check_receipt(ctx, &t, receipt) {
                Ok(Some((entry, closed))) => {
                    entries.push(entry.into());
                    updates.push(
                        StateUpdate::new(t.dialogue, buyer, &closed, true).map_err(internal)?,
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    refusal
                        .get_or_insert(format!("receipt for {}: {}", receipt.agreement, e.message));
                }
            }
            turns.push(t);
        }
        // Journaled first, as in `on_receipt`.
        self.journal.append_all(entries).await.map_err(internal)?;
        ctx.write_states(&updates).map_err(internal)?;
        ctx.flush_states().await.map_err(internal)?;
        drop(turns);
        match refusal {
            Some(reason) => Err(refused(reason)),
            None => Ok(()),
        }
    }

    /// Checks a receipt against the delivery of the dialogue `t` (locked); returns its
    /// journal entry and the deal's closed state, or `None` when it was recorded
    /// already.
    fn check_receipt(
        &self,
        ctx: &Context,
        t: &Turn,
        receipt: &Receipt,
    ) -> Handled<Option<(ReceiptBody, SellerDeal)>> {
        let (agreement, delivery) = match self.state(ctx, t)? {
            Some(SellerDeal::Delivered {
                agreement,
                delivery,
                ..
            }) => (agreement, delivery),
            Some(SellerDeal::Closed {
                agreement: Some(h),
                outcome,
                ..
            }) if h == receipt.agreement && outcome == "received" => return Ok(None),
            _ => {
                return Err(SkillError::bad_request(
                    "nothing was delivered in this dialogue",
                ))
            }
        };
        let hash = agreement.agreement.hash();
        if receipt.agreement != delivery.agreement || receipt.result_hash != delivery.result_hash {
            return Err(refused("the receipt is for something else"));
        }
        verify_signer(
            &receipt.signature,
            &receipt
                .note()
                .signing_hash(&negotiation_domain(agreement.agreement.chain_id)),
            t.buyer,
        )
        .map_err(|e| refused(format!("the receipt's signature: {e}")))?;
        let entry = ReceiptBody::new(hash, receipt);
        let closed = SellerDeal::Closed {
            buyer: t.buyer,
            // The delivery's id: the agreement, or a channel order.
            agreement: Some(receipt.agreement),
            outcome: "received".into(),
        };
        Ok(Some((entry, closed)))
    }
}

impl SellerDeal {
    /// The buyer of the deal.
    pub fn buyer(&self) -> Address {
        match self {
            Self::Proposed { proposal, .. } => proposal.agreement.buyer,
            Self::Accepted { agreement, .. }
            | Self::Settling { agreement, .. }
            | Self::Delivering { agreement, .. }
            | Self::Delivered { agreement, .. }
            | Self::Channel(SellerChannel { agreement, .. })
            | Self::Ordered { agreement, .. } => agreement.agreement.buyer,
            Self::Closed { buyer, .. } => *buyer,
        }
    }
}

fn step_name(s: &SellerDeal) -> &'static str {
    match s {
        SellerDeal::Proposed { .. } => "proposed",
        SellerDeal::Accepted { .. } => "accepted",
        SellerDeal::Settling { .. } => "settling",
        SellerDeal::Delivering { .. } => "delivering",
        SellerDeal::Delivered { .. } => "delivered",
        SellerDeal::Channel(_) => "channel",
        SellerDeal::Ordered { .. } => "ordered",
        SellerDeal::Closed { .. } => "closed",
    }
}

macro_rules! on {
    ($req:ty, $method:ident) => {
        #[async_trait]
        impl Skill for On<$req> {
            type Request = $req;

            async fn handle(
                &self,
                ctx: &Context,
                req: $req,
            ) -> Result<<$req as agent_sdk::Request>::Response, SkillError> {
                self.0.$method(ctx, req).await
            }
        }
    };
}

on!(CallForProposal, on_call);
on!(Counter, on_counter);
on!(Accept, on_accept);
on!(Reject, on_reject);
on!(Pay, on_pay);
on!(Receipt, on_receipt);
on!(Receipts, on_receipts);
on!(Fund, on_fund);
on!(Order, on_order);
