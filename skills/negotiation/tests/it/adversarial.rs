//! Adversarial negotiation: sellers that deliver garbage, claim a transaction that is
//! not theirs, or never deliver; buyers that never accept or never pay. Whatever the
//! peer does, the buyer signs no receipt it should not, pays nothing beyond the
//! agreement, leaves nothing stuck in escrow, and journals what happened; the seller
//! leaves no deal open forever. (A prompt-injected task is in `negotiation.rs`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::{SkillError, StaticDirectory};
use negotiation::audit::{audit, ChainCheck};
use negotiation::test_utils::{
    buyer, buyer_with, entries, host, kinds, peer, seller, usdc, BuyerAgent, Chain, KIND, TOKEN,
};
use negotiation::{
    escrow_id_of, escrow_job_id, negotiation_domain, result_hash, task_hash, Accept, Accepted,
    Agreement, BuyerDeal, CallForProposal, ChainSettlement, Counter, Deliver, Delivery,
    EscrowState, Pay, PaymentMode, Proposal, ProposalReply, Receipt, Reject, SellerDeal,
    SellerStrategy, Settled, Settlement,
};
use registry::devnet::dev_wallet;
use serde_json::{json, Value};
use wallets::B256;

/// How the rogue seller cheats when it is paid.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trick {
    /// Settles and delivers properly.
    Honest,
    /// Settles, then delivers a result that does not match its hash.
    Garbage,
    /// Settles, then signs the delivery with another key.
    WrongSignature,
    /// Settles, then delivers for another agreement.
    WrongAgreement,
    /// Settles nothing and names the transaction of an earlier deal.
    ReplayOldTx,
    /// Settles nothing and names a transaction that does not exist.
    MadeUpTx,
    /// Settles (authorization) and never answers.
    NeverDeliver,
}

/// A seller that follows the protocol up to the payment, then does `trick`.
struct RogueInner {
    wallet: Arc<Wallet>,
    settlement: ChainSettlement,
    price: Amount,
    trick: Mutex<Trick>,
    offers: Mutex<HashMap<B256, Proposal>>,
    last_settled: Mutex<Option<Settled>>,
}

/// A seller that took the money and keeps the buyer waiting: the handler never
/// returns (it is dropped with the seller's host).
async fn never_answer<T>() -> T {
    std::future::pending().await
}

#[derive(Clone)]
struct Rogue(Arc<RogueInner>);

impl Rogue {
    fn set(&self, trick: Trick) {
        *self.0.trick.lock().unwrap() = trick;
    }

    fn sign(&self, a: &Agreement) -> wallets::Signature {
        self.0
            .wallet
            .sign_typed(&negotiation_domain(a.chain_id), a)
            .unwrap()
    }

    fn on_call(&self, ctx: &Context, call: CallForProposal) -> ProposalReply {
        let agreement = Agreement {
            dialogue: ctx.dialogue().unwrap(),
            buyer: ctx.sender().unwrap(),
            seller: ctx.me(),
            task_hash: task_hash(&call.task),
            kind: call.kind.clone(),
            price: self.0.price,
            mode: call.modes[0],
            token: call.token,
            chain_id: ctx.chain_id(),
            expiry: call.deadline,
            deadline: call.deadline,
        };
        let proposal = Proposal {
            signature: Some(self.sign(&agreement)),
            agreement,
            round: 0,
        };
        self.0
            .offers
            .lock()
            .unwrap()
            .insert(ctx.dialogue().unwrap(), proposal.clone());
        ProposalReply::Propose(proposal)
    }

    fn on_counter(&self, ctx: &Context, counter: Counter) -> ProposalReply {
        let mut p = self.0.offers.lock().unwrap()[&ctx.dialogue().unwrap()].clone();
        p.round = counter.round; // the same price: no concession
        ProposalReply::Propose(p)
    }

    async fn on_pay(&self, pay: Pay) -> Result<Deliver, SkillError> {
        let trick = *self.0.trick.lock().unwrap();
        let internal = |e: negotiation::Error| SkillError::internal(e.to_string());
        let result = json!({"forecast": "sunny", "celsius": 21});
        let (a_hash, mut settled) = (pay.agreement, None);
        let escrow = matches!(pay.payment.payment, wallets::Payment::EscrowDeposit { .. });
        if !matches!(trick, Trick::ReplayOldTx | Trick::MadeUpTx) {
            settled = Some(if escrow {
                if trick == Trick::NeverDeliver {
                    return never_answer().await;
                }
                let id = escrow_id_of(pay.payment.payment.payer(), escrow_job_id(&a_hash));
                self.0
                    .settlement
                    .deliver_escrow(id, result_hash(&result))
                    .await
                    .map_err(internal)?
            } else {
                self.0
                    .settlement
                    .settle_authorization(&pay.payment)
                    .await
                    .map_err(internal)?
            });
        }
        if trick == Trick::NeverDeliver {
            return never_answer().await;
        }
        let settlement = match trick {
            Trick::ReplayOldTx => self
                .0
                .last_settled
                .lock()
                .unwrap()
                .expect("an earlier deal"),
            Trick::MadeUpTx => Settled {
                tx_hash: B256::random(),
                block: 1,
                gas_used: 21_000,
            },
            _ => settled.unwrap(),
        };
        *self.0.last_settled.lock().unwrap() = Some(settlement);
        let agreement = if trick == Trick::WrongAgreement {
            B256::random()
        } else {
            a_hash
        };
        let hash = result_hash(&result);
        let signer = if trick == Trick::WrongSignature {
            Arc::new(Wallet::random())
        } else {
            self.0.wallet.clone()
        };
        let chain_id = self.0.settlement.token().chain_id.unwrap();
        let signature = signer
            .sign_typed(
                &negotiation_domain(chain_id),
                &Delivery {
                    agreement,
                    result_hash: hash,
                    tx_hash: settlement.tx_hash,
                },
            )
            .unwrap();
        let result = if trick == Trick::Garbage {
            json!({"forecast": "lorem ipsum"})
        } else {
            result
        };
        Ok(Deliver {
            agreement,
            result,
            result_hash: hash,
            attestation: None,
            settlement,
            signature,
        })
    }
}

struct On<R>(Rogue, std::marker::PhantomData<fn(R)>);

macro_rules! on {
    ($req:ty, |$s:ident, $ctx:ident, $r:ident| $body:expr) => {
        #[async_trait]
        impl Skill for On<$req> {
            type Request = $req;

            async fn handle(
                &self,
                $ctx: &Context,
                $r: $req,
            ) -> Result<<$req as agent_sdk::Request>::Response, SkillError> {
                let $s = &self.0;
                $body
            }
        }
    };
}

on!(CallForProposal, |s, ctx, r| Ok(s.on_call(ctx, r)));
on!(Counter, |s, ctx, r| Ok(s.on_counter(ctx, r)));
on!(Accept, |s, _ctx, r| Ok(Accepted {
    seller_signature: s.sign(&r.agreement),
}));
on!(Pay, |s, _ctx, r| s.on_pay(r).await);
on!(Receipt, |_s, _ctx, _r| Ok(()));
on!(Reject, |_s, _ctx, _r| Ok(()));

fn on<R>(r: &Rogue) -> On<R> {
    On(r.clone(), std::marker::PhantomData)
}

/// A rogue seller (dev account 5) on its own host, and a buyer that knows only it.
struct Arena {
    chain: Chain,
    rogue: Rogue,
    rogue_address: Address,
    _rogue_agent: AgentHandle,
    buyer: BuyerAgent,
    _hosts: (Host, Host),
    dir: tempfile::TempDir,
}

async fn arena(mode: PaymentMode) -> Arena {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::start(dir.path()).await;
    let chain_id = chain.addresses.chain_id;
    let hosts = (
        host(dir.path(), "h1", chain_id),
        host(dir.path(), "h2", chain_id),
    );
    let wallet = Arc::new(dev_wallet(5));
    let settlement = chain.settlement(wallet.clone()).await;
    let rogue = Rogue(Arc::new(RogueInner {
        wallet: wallet.clone(),
        settlement,
        price: usdc("1.5"),
        trick: Mutex::new(Trick::Honest),
        offers: Mutex::default(),
        last_settled: Mutex::default(),
    }));
    let agent = AgentBuilder::new("rogue")
        .wallet(wallet)
        .skill(on::<CallForProposal>(&rogue))
        .skill(on::<Counter>(&rogue))
        .skill(on::<Accept>(&rogue))
        .skill(on::<Pay>(&rogue))
        .skill(on::<Receipt>(&rogue))
        .skill(on::<Reject>(&rogue))
        .spawn(&hosts.1)
        .unwrap();
    let rogue_address = agent.address();
    let directory = StaticDirectory::default().with(
        KIND,
        agent_sdk::Peer {
            address: rogue_address,
            endpoint: hosts.1.url(),
            price: None,
        },
    );
    let buyer_wallet = Arc::new(dev_wallet(6)); // gas for escrow
    let mut buyer = buyer_with(
        &hosts.0,
        dir.path(),
        &chain,
        usdc("10"),
        directory,
        buyer_wallet.clone(),
    )
    .await;
    buyer.buyer = buyer
        .buyer
        .clone()
        .with_delivery_timeout(Duration::from_secs(1));
    if mode == PaymentMode::Escrow {
        let settlement = chain.settlement(buyer_wallet).await;
        buyer.buyer = buyer.buyer.clone().with_settlement(settlement);
    }
    chain
        .minter
        .mint(buyer.handle.address(), usdc("10"))
        .await
        .unwrap();
    Arena {
        chain,
        rogue,
        rogue_address,
        _rogue_agent: agent,
        buyer,
        _hosts: hosts,
        dir,
    }
}

impl Arena {
    async fn hire(&self, mode: PaymentMode) -> negotiation::Result<negotiation::Deal> {
        self.buyer
            .buyer
            .hire(
                &self.buyer.handle.context(),
                "Forecast for Lisbon",
                KIND,
                usdc("5"),
                mode,
            )
            .await
    }

    fn journal(&self) -> Vec<wallets::JournalEntry> {
        wallets::journal::read_entries(&self.buyer.journal).unwrap()
    }

    fn check(&self) -> ChainCheck {
        ChainCheck::new(self.chain.node.http_url(), self.chain.addresses)
    }

    async fn balances(&self) -> (Amount, Amount) {
        (
            self.chain.balance(self.buyer.handle.address()).await,
            self.chain.balance(self.rogue_address).await,
        )
    }
}

fn count(entries: &[wallets::JournalEntry], kind: &str) -> usize {
    entries.iter().filter(|e| e.kind == kind).count()
}

fn protocol_reason(e: negotiation::Error) -> String {
    match e {
        negotiation::Error::Protocol { reason, .. } => reason,
        other => panic!("not a protocol error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seller_that_delivers_garbage_gets_no_receipt_and_the_buyer_journals_a_dispute() {
    let a = arena(PaymentMode::Authorization).await;
    let tricks = [
        (Trick::Garbage, "does not match its hash"),
        (Trick::WrongSignature, "the delivery's signature"),
        (Trick::WrongAgreement, "another agreement"),
    ];
    for (n, (trick, why)) in tricks.into_iter().enumerate() {
        a.rogue.set(trick);
        let reason = protocol_reason(a.hire(PaymentMode::Authorization).await.unwrap_err());
        assert!(reason.contains(why), "{trick:?}: {reason}");
        let ours = a.journal();
        assert_eq!(count(&ours, "dispute"), n + 1, "{:?}", kinds(&ours));
        assert_eq!(count(&ours, "receipt"), 0, "{trick:?}: no receipt");
    }
    // The authorization was settled before the garbage came: the seller was paid
    // (once per deal), and the audit shows each dispute.
    assert_eq!(a.balances().await, (usdc("5.5"), usdc("4.5")));
    let report = audit(std::slice::from_ref(&a.buyer.journal), Some(&a.check()))
        .await
        .unwrap();
    let disputes: Vec<_> = report
        .discrepancies
        .iter()
        .filter(|d| d.reason.contains("disputed"))
        .collect();
    assert_eq!(disputes.len(), 3, "{}", report.to_table());
    assert!(a
        .buyer
        .handle
        .context()
        .open_dialogues()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seller_that_names_an_old_or_made_up_transaction_is_caught_on_chain() {
    let a = arena(PaymentMode::Authorization).await;
    // One honest deal, whose transaction the rogue will replay.
    let first = a.hire(PaymentMode::Authorization).await.unwrap();
    assert_eq!(a.balances().await, (usdc("8.5"), usdc("1.5")));
    for (trick, why) in [
        (
            Trick::ReplayOldTx,
            "did not use this agreement's authorization",
        ),
        (Trick::MadeUpTx, "is not on chain"),
    ] {
        a.rogue.set(trick);
        let reason = protocol_reason(a.hire(PaymentMode::Authorization).await.unwrap_err());
        assert!(reason.contains(why), "{trick:?}: {reason}");
    }
    let ours = a.journal();
    assert_eq!(count(&ours, "receipt"), 1, "only the honest deal");
    assert_eq!(count(&ours, "dispute"), 2);
    // Nothing was settled for the cheats: the seller holds the first price only.
    assert_eq!(a.balances().await, (usdc("8.5"), usdc("1.5")));
    let replayed = ours.iter().find(|e| e.kind == "dispute").unwrap().body["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        replayed.contains(&first.delivery.settlement.tx_hash.to_string()),
        "{replayed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seller_paid_by_authorization_that_never_delivers_is_journaled_and_flagged() {
    let a = arena(PaymentMode::Authorization).await;
    a.rogue.set(Trick::NeverDeliver);
    let reason = protocol_reason(a.hire(PaymentMode::Authorization).await.unwrap_err());
    assert!(reason.contains("nothing was delivered"), "{reason}");
    // The seller took the money: the buyer's journal has the payment it found on
    // chain, and a dispute; the audit matches the payment and flags the dispute.
    assert_eq!(a.balances().await, (usdc("8.5"), usdc("1.5")));
    let ours = a.journal();
    assert_eq!(count(&ours, "payment"), 1, "{:?}", kinds(&ours));
    assert_eq!(count(&ours, "dispute"), 1);
    assert_eq!(count(&ours, "receipt"), 0);
    let report = audit(std::slice::from_ref(&a.buyer.journal), Some(&a.check()))
        .await
        .unwrap();
    eprintln!(
        "adversarial: never delivered (authorization):\n{}",
        report.to_table()
    );
    assert_eq!(report.discrepancies.len(), 1, "{}", report.to_table());
    assert!(report.discrepancies[0]
        .reason
        .contains("nothing was delivered"));
    assert_eq!(report.deals[0].stage, "paid");
    assert!(a
        .buyer
        .handle
        .context()
        .open_dialogues()
        .unwrap()
        .is_empty());
}

async fn increase_time(chain: &Chain, secs: u64) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "evm_increaseTime", "params": [format!("0x{secs:x}")]});
    let reply: Value = reqwest::Client::new()
        .post(chain.node.http_url())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply.get("result").is_some(), "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escrow_seller_that_never_delivers_is_refunded_after_the_deadline() {
    let a = arena(PaymentMode::Escrow).await;
    a.rogue.set(Trick::NeverDeliver);
    let ctx = a.buyer.handle.context();
    let err = a.hire(PaymentMode::Escrow).await.unwrap_err();
    assert!(err.to_string().contains("no reply"), "{err}");
    // The price is locked, not lost: the deal stays open until the deadline ...
    assert_eq!(a.balances().await, (usdc("8.5"), Amount::ZERO));
    let open = ctx.open_dialogues().unwrap();
    assert_eq!(open.len(), 1);
    let (dialogue, record) = &open[0];
    let BuyerDeal::Paying { agreement, .. } = serde_json::from_value(record.state.clone()).unwrap()
    else {
        panic!("{:?}", record.state);
    };
    let escrow = escrow_id_of(
        a.buyer.handle.address(),
        escrow_job_id(&agreement.agreement.hash()),
    );
    assert_eq!(
        a.chain.minter.escrow_job(escrow).await.unwrap().state,
        EscrowState::Locked
    );
    let early = a.buyer.buyer.refund_expired(&ctx).await.unwrap();
    assert_eq!(early.len(), 1);
    let refusal = early[0].1.as_ref().unwrap_err().to_string();
    eprintln!("adversarial: refund before the deadline: {refusal}");
    // ... after which the buyer takes it back.
    increase_time(&a.chain, 700).await;
    let refunded = a.buyer.buyer.refund_expired(&ctx).await.unwrap();
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0].0, *dialogue);
    let tx = refunded[0].1.as_ref().unwrap().tx_hash;
    assert_eq!(a.balances().await, (usdc("10"), Amount::ZERO));
    assert_eq!(
        a.chain.minter.escrow_job(escrow).await.unwrap().state,
        EscrowState::Refunded
    );
    let ours = a.journal();
    let refund = ours.iter().find(|e| e.kind == "refund").unwrap();
    assert_eq!(refund.body["settlement"]["txHash"], json!(tx));
    assert!(ctx.open_dialogues().unwrap().is_empty());
    let report = audit(std::slice::from_ref(&a.buyer.journal), Some(&a.check()))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_escrow_seller_that_delivers_garbage_is_not_released() {
    let a = arena(PaymentMode::Escrow).await;
    a.rogue.set(Trick::Garbage);
    let reason = protocol_reason(a.hire(PaymentMode::Escrow).await.unwrap_err());
    assert!(reason.contains("does not match its hash"), "{reason}");
    let ours = a.journal();
    assert_eq!(count(&ours, "dispute"), 1);
    assert_eq!(count(&ours, "receipt"), 0);
    // The buyer did not accept: the price stays in escrow, the seller has nothing.
    assert_eq!(a.balances().await, (usdc("8.5"), Amount::ZERO));
    let dialogue_state = a.buyer.handle.context().open_dialogues().unwrap();
    assert!(dialogue_state.is_empty());
    let escrow_balance = a
        .chain
        .balance(wallets::Address(a.chain.addresses.escrow.0))
        .await;
    assert_eq!(escrow_balance, usdc("1.5"));
    // ... and is disputed on chain, so it is not released to the seller after the
    // review window but ruled on by the arbiter.
    let dispute = ours.iter().find(|e| e.kind == "dispute").unwrap();
    assert!(
        dispute.body["escrowDispute"]["txHash"].is_string(),
        "{}",
        dispute.body
    );
    let escrow = escrow_id_of(
        a.buyer.handle.address(),
        dispute.body["agreementHash"]
            .as_str()
            .unwrap()
            .parse::<B256>()
            .map(|h| escrow_job_id(&h))
            .unwrap(),
    );
    assert_eq!(
        a.chain.minter.escrow_job(escrow).await.unwrap().state,
        EscrowState::Disputed
    );
    let _ = &a.dir;
}

/// Offers valid for one second.
struct Brief;

impl SellerStrategy for Brief {
    fn open(&self, _: &CallForProposal) -> Option<Amount> {
        Some(usdc("1.5"))
    }

    fn respond(&self, _: u32, current: Amount, _: Amount) -> Amount {
        current
    }

    fn offer_validity(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_that_never_accepts_or_never_pays_leaves_no_seller_deal_open() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::start(dir.path()).await;
    let chain_id = chain.addresses.chain_id;
    // The seller's host runs on a clock the test moves: offers and deadlines run
    // out when the test says, however slow the machine.
    let clock = agent_sdk::ManualClock::new(std::time::SystemTime::now());
    let now = || clock.clock().unix_secs();
    let h1 = host(dir.path(), "h1", chain_id);
    let h2 = Host::spawn(
        HostConfig::new(chain_id, dir.path().join("h2"))
            .name("h2")
            .workers(2)
            .listen("127.0.0.1:0".parse().unwrap())
            .clock(&clock),
    )
    .unwrap();
    let s = seller(&h2, dir.path(), &chain, "s", 2, Brief).await;
    let directory = StaticDirectory::default().with(KIND, peer(&s, h2.url(), None));
    let b = buyer(&h1, dir.path(), &chain, usdc("10"), directory).await;
    let ctx = b.handle.context();
    ctx.find_peers(KIND, None).await.unwrap();
    let (to, t) = (s.handle.address(), Duration::from_secs(10));
    let call = |deadline: u64| CallForProposal {
        task: "Forecast for Braga".into(),
        kind: KIND.into(),
        max_price: usdc("2"),
        deadline,
        modes: vec![PaymentMode::Authorization],
        token: wallets::Address(chain.addresses.stablecoin.0),
    };
    let propose = |reply: ProposalReply| match reply {
        ProposalReply::Propose(p) => p,
        other => panic!("{other:?}"),
    };
    // Never accepts: an offer valid for a second.
    let ignored = ctx.new_dialogue();
    propose(ctx.ask_in(ignored, to, call(now() + 600), t).await.unwrap());
    // Accepts and never pays: a deal due in two seconds.
    let unpaid = ctx.new_dialogue();
    let p = propose(ctx.ask_in(unpaid, to, call(now() + 2), t).await.unwrap());
    let buyer_signature = b
        .wallet
        .sign_typed(&negotiation_domain(chain_id), &p.agreement)
        .unwrap();
    let accept = Accept {
        agreement: p.agreement.clone(),
        buyer_signature,
    };
    ctx.ask_in(unpaid, to, accept, t).await.unwrap();
    let state = |d: B256| -> SellerDeal { s.handle.context().state(d).unwrap().unwrap() };
    assert!(matches!(state(unpaid), SellerDeal::Accepted { .. }));

    clock.advance(Duration::from_secs(3));
    // The next call for proposals sweeps both.
    let next = ctx.new_dialogue();
    propose(ctx.ask_in(next, to, call(now() + 600), t).await.unwrap());
    for (d, why) in [
        (ignored, "the offer was not accepted"),
        (unpaid, "the agreement was not paid"),
    ] {
        match state(d) {
            SellerDeal::Closed { outcome, .. } => {
                assert!(
                    outcome.starts_with("expired: ") && outcome.contains(why),
                    "{outcome}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    let theirs = entries(&s, "expiry").await;
    assert_eq!(count(&theirs, "expiry"), 2, "{:?}", kinds(&theirs));
    // A sweep without a call: the newest offer runs out too.
    clock.advance(Duration::from_secs(2));
    assert_eq!(s.seller.expire(&s.handle.context()).await.unwrap(), 1);
    assert_eq!(s.seller.expire(&s.handle.context()).await.unwrap(), 0);
    assert!(s.handle.context().open_dialogues().unwrap().is_empty());
    // A late payment for the expired agreement is refused.
    let late = ctx
        .ask_in(
            unpaid,
            to,
            Pay {
                agreement: p.agreement.hash(),
                payment: b
                    .handle
                    .context()
                    .pay(wallets::Payment::Authorization {
                        domain: negotiation::token_domain(&chain.addresses, TOKEN),
                        transfer: wallets::TransferWithAuthorization {
                            from: b.handle.address(),
                            to,
                            value: p.agreement.price,
                            valid_after: 0,
                            valid_before: p.agreement.deadline,
                            nonce: wallets::TransferWithAuthorization::derive_nonce(
                                b.handle.address(),
                                &p.agreement.hash(),
                            ),
                        },
                    })
                    .await
                    .unwrap(),
            },
            t,
        )
        .await;
    assert!(late.is_err());
    assert_eq!(chain.balance(to).await, Amount::ZERO);
}
