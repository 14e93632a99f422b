//! # negotiation
//!
//! Contract-net negotiation between a [`Buyer`] and [`Seller`] agents, paid in the
//! stablecoin through the buyer's spending policy and settled on chain.
//!
//! A seller of forecasts and a buyer that hires it, paying at most 10 USDC a deal
//! whatever it is told:
//!
//! ```no_run
//! # async fn demo(
//! #     host: &agent_sdk::Host,
//! #     addresses: &registry::chain::Addresses,
//! #     rpc_url: &str,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use agent_sdk::prelude::*;
//! use agent_sdk::{Peer, StaticDirectory};
//! use negotiation::*;
//! use wallets::{Journal, Limits, SpendingPolicy};
//!
//! let kind = "weather.Forecast";
//! let wallet = Arc::new(Wallet::random());
//! let seller = Seller::new(
//!     kind,
//!     wallet.clone(),
//!     DefaultSellerStrategy::new("2.50".parse()?, "2 USDC".parse()?),
//!     service_fn(|task: String| async move {
//!         Ok::<_, SkillError>(ServiceOutput::new(serde_json::json!({"task": task, "celsius": 21})))
//!     }),
//!     ChainSettlement::connect(rpc_url, wallet.clone(), addresses, "USD Coin").await?,
//!     Journal::open("seller.journal", wallet.clone())?,
//! );
//! let seller_agent = seller
//!     .install(AgentBuilder::new("seller").wallet(wallet))
//!     .spawn(host)?;
//!
//! let wallet = Arc::new(Wallet::random());
//! let limits = Limits { per_deal: Some("10 USDC".parse()?), ..Limits::default() };
//! let policy = SpendingPolicy::open("buyer.policy", wallet.clone(), limits)?;
//! let peer = Peer { address: seller_agent.address(), endpoint: None, price: None };
//! let buyer_agent = AgentBuilder::new("buyer")
//!     .wallet(wallet.clone())
//!     .policy(Arc::new(policy))
//!     .directory(StaticDirectory::default().with(kind, peer))
//!     .spawn(host)?;
//! let buyer = Buyer::new(
//!     wallet.clone(),
//!     token_domain(addresses, "USD Coin"),
//!     Journal::open("buyer.journal", wallet)?,
//! );
//! let ctx = buyer_agent.context();
//! let max = "5 USDC".parse()?;
//! let deal = buyer
//!     .hire(&ctx, "Forecast for Lisbon", kind, max, PaymentMode::Authorization)
//!     .await?;
//! println!("paid {} in {}", deal.price(), deal.delivery.settlement.tx_hash);
//! # Ok(())
//! # }
//! ```
//!
//! What is said in a negotiation is decided by strategies, which a test (or an author)
//! can check without a chain. The default seller asks its list price, meets a counter
//! halfway and never goes below its floor; the default buyer concedes over its rounds
//! and never offers more than it may pay:
//!
//! ```
//! use negotiation::{BuyerStrategy, DefaultBuyerStrategy, DefaultSellerStrategy, SellerStrategy};
//! use wallets::Amount;
//!
//! let usdc = |s: &str| format!("{s} USDC").parse::<Amount>();
//! let seller = DefaultSellerStrategy::new(usdc("4")?, usdc("3")?);
//! let buyer = DefaultBuyerStrategy::default();
//!
//! let counter = buyer.counter(1, usdc("4")?, usdc("5")?).ok_or("no counter")?;
//! assert_eq!(counter, usdc("3.2")?); // 20 % off in the first round
//! assert_eq!(seller.respond(1, usdc("4")?, counter), usdc("3.5")?); // halfway to the floor
//! assert_eq!(seller.respond(1, usdc("4")?, usdc("1")?), usdc("3.5")?); // never below it
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Message flow
//!
//! One dialogue per (buyer, seller) pair and task; every message of a deal travels in
//! it (`ask_in` / `tell_in`):
//!
//! ```text
//! buyer                                              seller
//!   | --ask  CallForProposal(task, kind, max, deadline) --> |
//!   | <-     Propose(agreement signed by seller) | Decline -- |
//!   | --ask  Counter(price, round) ----------------------> |   (0..n rounds)
//!   | <-     Propose(revised agreement) ------------------ |
//!   | --ask  Accept(agreement, buyer signature) ----------> |
//!   | <-     Accepted(seller signature) ------------------ |
//!   |        ctx.pay(EIP-3009, nonce from the agreement)    |   (spending policy)
//!   | --ask  Pay(signed payment) ------------------------> |   transferWithAuthorization,
//!   | <-     Deliver(result, result hash, tx, signature) - |   wait for receipt, do the work
//!   | --ask  Receipt(buyer signature) --------------------> |   journaled, then
//!   | <-     ok ------------------------------------------- |   the deal is closed
//!   | --tell Reject(reason) -----------------------------> |   (to every other seller)
//! ```
//!
//! # State machines
//!
//! Each side keeps one state per dialogue ([`BuyerDeal`], [`SellerDeal`]) and saves it
//! with `Context::save_state` (on disk when it returns) *before* acting on it: before
//! a message is sent, before a payment is submitted, before a delivery is answered.
//!
//! ```text
//! buyer:  Called -> Proposed -> Countered -> Proposed ... -> Accepting -> Accepted
//!           -> Paying -> Delivered -> Done            (closed)
//!         any step before Paying -> Rejected | Failed (closed)
//!         Paying -> Closed (disputed: a bad delivery, or paid and nothing delivered;
//!                           refunded: an escrow past its deadline)
//! seller: Proposed -> (Proposed ...) -> Accepted -> Settling -> Delivered -> Closed
//!         Proposed | Accepted -> Closed (rejected; expired past the offer's expiry
//!                                        or the agreement's deadline)
//! ```
//!
//! Payments are idempotent: the EIP-3009 nonce is
//! `TransferWithAuthorization::derive_nonce(buyer, agreement hash)`, so a retry after a
//! timeout or a crash has the policy re-send the same signature
//! (`SpendingPolicy::authorize` is idempotent per payment id), and the seller's
//! [`Settlement`] answers an already used authorization with the transaction that used
//! it. [`Buyer::resume`] picks up a buyer's open deals after a restart: deals not yet
//! accepted are rejected, accepted ones are paid (the same payment) and received. A
//! seller resumes a deal when the buyer repeats its message (acceptance, payment,
//! receipt), which it answers from the saved state; deals the buyer walked away from
//! expire ([`Seller::expire`], and lazily on every new call).
//!
//! # What a buyer checks
//!
//! Before it signs a receipt, a buyer checks the delivery: for its agreement, the
//! result matching its hash, signed by the seller; in `escrow` mode recorded in the
//! escrow; in `authorization` mode, with a [`PaymentVerifier`]
//! ([`Buyer::with_verifier`]), the transaction the seller names must have used this
//! agreement's authorization and moved the price to the seller, so an old or made-up
//! transaction is caught. A [`DeliveryCheck`] ([`Buyer::with_delivery_check`]) adds
//! the buyer's own checks of what was delivered (the `llm` crate's `AttestationCheck`
//! verifies and re-runs attested inferences). A bad delivery is journaled as a
//! `dispute` (and disputed on chain in `escrow` mode, so the escrow is not released); a
//! payment the seller settled without delivering is journaled with its transaction and
//! a `dispute`, which [`audit`] reports; an escrowed price whose seller missed the
//! deadline comes back with [`Buyer::refund_expired`].
//!
//! # Journal
//!
//! Both sides append to their [`wallets::Journal`]: `cfp`, `proposal`, `counter`,
//! `acceptance` (the signed agreement), `payment` (signed agreement, signed payment,
//! transaction), `delivery` (result hash), `receipt`, and `rejection`; the buyer also
//! `dispute` and `refund`, the seller `expiry`; channel deals add `funding` and the
//! seller's `channel_settlement`. Each body is a variant of [`journal::JournalBody`],
//! which the writers and the audit share. Appends are idempotent (an entry of the
//! same kind and body is not written twice), and a step that both journals and saves
//! journals first: a crash between the two redoes the step, which leaves one entry,
//! and a repeated message re-journals what a crash lost. The crash tests
//! (`tests/it/crash.rs`) kill the buyer or the seller at every step of a deal in both
//! modes and check that the seller is paid once and both journals audit clean.
//! [`audit`] replays journals, cross-checks a deal's two journals and matches payments
//! on chain (`agora audit`).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
mod buyer;
mod check;
mod crash;
mod error;
pub mod journal;
mod journal_metrics;
mod messages;
mod seller;
mod settlement;
mod strategy;
#[cfg(feature = "test-utils")]
pub mod test_utils;
mod verify;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use journal::JournalBody;
use serde_json::Value;
use wallets::journal::{body_hash, Body};
use wallets::{Journal, B256};

pub use buyer::{Buyer, BuyerDeal, Deal};
pub use check::{DeliveryCheck, DeliveryToCheck};
pub use error::{Error, Result};
pub use journal_metrics::JournalMetrics;
pub use messages::{
    escrow_job_id, negotiation_domain, order_id, result_hash, task_hash, Accept, Accepted,
    Agreement, CallForProposal, Counter, Deliver, Delivery, Fund, Funded, Order, Pay, PaymentMode,
    Proposal, ProposalReply, Receipt, ReceiptNote, Receipts, Reject, Settled, SignedAgreement,
    CHANNEL_SETTLE_WINDOW, ESCROW_REVIEW_WINDOW, MAX_RECEIPTS,
};
pub use seller::{
    service_fn, FnService, Seller, SellerChannel, SellerDeal, Service, ServiceOutput, Upkeep,
};
pub use settlement::{
    escrow_id_of, token_domain, ChainSettlement, ChannelRecord, ChannelState, Channels, EscrowJob,
    EscrowState, Settlement,
};
pub use strategy::{BuyerStrategy, DefaultBuyerStrategy, DefaultSellerStrategy, SellerStrategy};
pub use verify::{ChainVerifier, PaymentVerifier};

use crash::crash_point;

/// A journal shared by the handlers of one agent; appends run off the async threads.
/// The negotiation's [`Buyer`] and [`Seller`] each hold one; an agent's other sellers
/// (x402's) share the seller's ([`Seller::journal`]) so that one process appends to
/// the agent's journal.
///
/// Appends are idempotent: an entry whose kind and body are already in the journal
/// is not written again. A step that journals and then saves its state, and is
/// redone after a crash between the two, so leaves one entry, not two; and a retried
/// step may re-journal what a crash lost.
///
/// Appends are group-committed: while one batch is being written, the appends that
/// arrive queue up and go to disk together in the next write, with one flush.
#[derive(Clone, Debug)]
pub struct SharedJournal(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    appender: Mutex<Appender>,
    queue: Mutex<Queue>,
    /// How many batches were written (or failed) since the journal was opened.
    writes: tokio::sync::watch::Sender<u64>,
}

/// Appends waiting for the writer, and whether a writer is at work.
#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Pending>,
    writing: bool,
}

type Pending = (
    &'static str,
    Value,
    tokio::sync::oneshot::Sender<wallets::Result<()>>,
);

#[derive(Debug)]
struct Appender {
    journal: Journal,
    /// Keys of the entries in the journal, read on the first append.
    seen: Option<HashSet<B256>>,
    /// Where written entries are counted, by kind, for this agent.
    metrics: Option<(JournalMetrics, String)>,
}

/// What makes two entries the same: their kind and canonical body (by its hash).
fn entry_key(kind: &str, body_hash: B256) -> B256 {
    let mut bytes = Vec::with_capacity(kind.len() + 33);
    bytes.extend_from_slice(kind.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body_hash.as_bytes());
    wallets::keccak256(bytes)
}

impl Appender {
    /// Appends the entries of `batch` not already in the journal, in one write;
    /// answers each.
    fn append_batch(&mut self, batch: Vec<Pending>) {
        let seen = match &mut self.seen {
            Some(seen) => seen,
            None => match wallets::journal::read_entries(self.journal.path()) {
                Ok(entries) => self.seen.insert(
                    entries
                        .iter()
                        .map(|e| entry_key(&e.kind, body_hash(&e.body)))
                        .collect(),
                ),
                Err(e) => {
                    for (.., done) in batch {
                        let _ = done.send(Err(for_each_waiter(&e, "journal")));
                    }
                    return;
                }
            },
        };
        let mut items = Vec::new();
        let mut waiting = Vec::new();
        let mut keys = Vec::new();
        let mut kinds = Vec::new();
        for (kind, body, done) in batch {
            let body = Body::new(body);
            let key = entry_key(kind, body.hash());
            if seen.contains(&key) || keys.contains(&key) {
                tracing::debug!(target: "skill::negotiation", kind, "entry already journaled");
                let _ = done.send(Ok(()));
                continue;
            }
            keys.push(key);
            kinds.push(kind);
            items.push((kind.to_owned(), body));
            waiting.push(done);
        }
        match self.journal.append_bodies(items) {
            Ok(_) => {
                seen.extend(keys);
                if let Some((metrics, agent)) = &self.metrics {
                    for kind in kinds {
                        metrics.written(agent, kind);
                    }
                }
                for done in waiting {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(target: "skill::negotiation", path = %self.journal.path().display(),
                    error = %e, "journal append failed");
                for done in waiting {
                    let _ = done.send(Err(for_each_waiter(&e, "journal append")));
                }
            }
        }
    }
}

/// `e` once more, for one more writer waiting on the same failed append: a file
/// error keeps its path and kind (a full disk must read as one, not as a corrupt
/// journal); any other error is described under `what`.
fn for_each_waiter(e: &wallets::Error, what: &str) -> wallets::Error {
    match e {
        wallets::Error::Io { path, source } => wallets::Error::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => wallets::Error::Corrupt {
            what: what.into(),
            reason: other.to_string(),
        },
    }
}

impl SharedJournal {
    /// Shares `journal`.
    pub fn new(journal: Journal) -> Self {
        Self(Arc::new(Shared {
            appender: Mutex::new(Appender {
                journal,
                seen: None,
                metrics: None,
            }),
            queue: Mutex::new(Queue::default()),
            writes: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Changes after each batch of appends is written (or failed to be), so that
    /// whoever reads the journal file can wait for the next write.
    pub fn writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.writes.subscribe()
    }

    /// Counts the entries written from now on in `metrics`, as agent `agent`'s.
    pub fn count_entries(&self, metrics: &JournalMetrics, agent: impl Into<String>) {
        self.0
            .appender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .metrics = Some((metrics.clone(), agent.into()));
    }

    /// The journal's file.
    pub fn path(&self) -> std::path::PathBuf {
        self.0
            .appender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .journal
            .path()
            .to_owned()
    }

    /// Appends an entry, unless the same one is already there, and waits until it is
    /// durable.
    ///
    /// # Errors
    /// [`Error::Wallet`] when the body does not serialize (a float) or the write
    /// fails.
    pub async fn append(&self, body: impl Into<JournalBody>) -> Result<()> {
        self.append_all(vec![body.into()]).await
    }

    /// Appends `entries` in this order (each unless the same one is already there),
    /// in one write with one flush, and waits until they are durable.
    ///
    /// # Errors
    /// As [`SharedJournal::append`].
    pub async fn append_all(&self, entries: Vec<JournalBody>) -> Result<()> {
        let values = entries
            .iter()
            .map(|body| Ok((body.kind(), body.to_value()?)))
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|e| {
                Error::Wallet(wallets::Error::Corrupt {
                    what: "journal body".into(),
                    reason: e.to_string(),
                })
            })?;
        let mut results = Vec::with_capacity(values.len());
        let lead = {
            let mut q = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for (kind, body) in values {
                let (done, result) = tokio::sync::oneshot::channel();
                q.pending.push((kind, body, done));
                results.push(result);
            }
            !std::mem::replace(&mut q.writing, true)
        };
        if lead {
            let shared = self.0.clone();
            tokio::task::spawn_blocking(move || shared.write_all_pending());
        }
        for result in results {
            result
                .await
                .map_err(|_| Error::Config("the journal writer stopped".into()))?
                .map_err(Error::Wallet)?;
        }
        Ok(())
    }
}

impl Shared {
    /// Writes batches until no append is waiting.
    fn write_all_pending(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if q.pending.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            self.appender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append_batch(batch);
            self.writes.send_modify(|n| *n += 1);
        }
    }
}

/// Public keys of the counterparts seen so far, so that their later signatures are
/// verified against the key (a recovery without the address's hash).
static SIGNERS: std::sync::RwLock<
    Option<std::collections::HashMap<wallets::Address, wallets::PublicKey>>,
> = std::sync::RwLock::new(None);

/// Checks that `signature` over `digest` was made by `signer`, as
/// [`wallets::Signature::verify`] does (with the same errors), against the signer's key
/// once it is known.
fn verify_signer(
    signature: &wallets::Signature,
    digest: &B256,
    signer: wallets::Address,
) -> wallets::Result<()> {
    let known = SIGNERS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&signer).copied());
    if let Some(key) = known {
        if signature.verify_with_key(digest, &key).is_ok() {
            return Ok(());
        }
    }
    let key = signature.recover_public_key(digest)?;
    if key.address() != signer {
        return signature.verify(digest, signer);
    }
    let mut signers = SIGNERS.write().unwrap_or_else(PoisonError::into_inner);
    let map = signers.get_or_insert_with(Default::default);
    if map.len() >= 4_096 {
        map.clear();
    }
    map.insert(signer, key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_group_committed_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let wallet = Arc::new(wallets::Wallet::random());
        let shared = SharedJournal::new(Journal::open(&path, wallet.clone()).unwrap());
        let dispute = |reason: String, delivery| journal::DisputeBody {
            agreement_hash: B256::ZERO,
            reason,
            delivery,
            escrow_dispute: None,
        };
        // 60 appends of 50 distinct entries, all at once.
        let appends = (0..60).map(|i| {
            let shared = shared.clone();
            async move { shared.append(dispute((i % 50).to_string(), None)).await }
        });
        for r in futures::future::join_all(appends).await {
            r.unwrap();
        }
        let entries = wallets::journal::read_entries(&path).unwrap();
        assert_eq!(entries.len(), 50);
        let mut ns: Vec<u64> = entries
            .iter()
            .filter_map(|e| e.body["reason"].as_str()?.parse().ok())
            .collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..50).collect::<Vec<_>>());
        wallets::journal::verify(&path, Some(wallet.address())).unwrap();
        // A float (here in a disputed result) is refused with its reason, and the
        // journal stays as it was.
        let delivery = Deliver {
            agreement: B256::ZERO,
            result: serde_json::json!({"price": 0.5}),
            result_hash: B256::ZERO,
            attestation: None,
            settlement: Settled {
                tx_hash: B256::ZERO,
                block: 0,
                gas_used: 0,
            },
            signature: wallet.sign_message(b"delivery").unwrap(),
        };
        let err = shared
            .append(dispute("a float".into(), Some(delivery)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("floating point"), "{err}");
        assert_eq!(wallets::journal::read_entries(&path).unwrap().len(), 50);
    }
}
