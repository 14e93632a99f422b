//! Auditing negotiation journals: `agora audit`.
//!
//! [`audit`] replays one or more journals written by [`Buyer`](super::Buyer) and
//! [`Seller`](super::Seller) and reports every discrepancy it finds:
//!
//! 1. **Integrity** — each journal is verified with [`wallets::journal::verify`]:
//!    canonical lines, hash links, one signer, every signature. A journal that does not
//!    verify is reported at its first bad entry; the entries before it are still
//!    audited.
//! 2. **Consistency** — each entry's body must be a [`JournalBody`] of its kind (an
//!    unknown kind or field is a discrepancy at the entry, naming its index and kind).
//!    Within a journal, each deal's entries must hold together: an
//!    acceptance's agreement hash and both signatures; a payment for the accepted
//!    agreement, with the right payment id, payer, payee and amount and a valid
//!    signature; a delivery signed by the seller over the settling transaction; a
//!    receipt signed by the buyer over the delivered result. A payment without an
//!    acceptance, a delivery without a payment or a receipt without a delivery is a
//!    discrepancy, and so is a buyer's `dispute`.
//! 3. **Cross-check** — when the journals of both parties of a deal (found by the
//!    agreement hash) are given, each kind of entry (acceptance, payment, delivery,
//!    receipt) must be in both and agree field by field: agreement, price, payment id,
//!    payment, transaction hash, result hash, receipt. Only one journal per agent is
//!    cross-checked (the first by path); another one of the same agent is reported.
//! 4. **Chain** (optional, [`ChainCheck`]) — each payment entry is matched to the
//!    chain: in `authorization` mode the recorded transaction must have succeeded, used
//!    the payment's EIP-3009 authorization (`AuthorizationUsed` with its nonce) and
//!    moved exactly the price from the buyer to the seller in the deployment's
//!    stablecoin; in `escrow` mode the lock must have moved the price from the buyer to
//!    the escrow, the recorded transaction must carry the escrow's `JobDelivered`
//!    event, the escrow record must name the agreed parties and amount, and a recorded
//!    release must have moved the price from the escrow to the seller.
//!
//! 5. **x402 sales** — a seller's `x402_payment` must carry an EIP-3009 authorization
//!    whose signature recovers the payer in the token's domain, paying the journal's
//!    signer exactly the price asked; an `x402_delivery` must follow its payment. With
//!    the chain, the transaction must have used the authorization and moved exactly
//!    that amount from the payer to the seller in the stablecoin. Sales are listed in
//!    [`AuditReport::sales`] (rules in `audit/x402.rs`).
//!
//! 6. **Attestations** (optional, [`AttestationAudit`], [`audit_with`]) — each delivery
//!    entry (negotiated or `x402_delivery`) that keeps the seller's attestation is
//!    handed to the attestation audit
//!    (`agora audit --model` re-runs attested LLM inferences with the `llm` crate's
//!    one), journal by journal; each problem it finds is a discrepancy at the
//!    entry.
//!
//! The report is deterministic: journals, deals and discrepancies are sorted, and
//! nothing about the run (time, host) enters it, so the same journals always give
//! byte-identical [`AuditReport::to_json`] and [`AuditReport::to_table`] output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::chain::{self, Addresses, ChannelEventKind, Deployment, EscrowEventKind, TxEffects};
use serde::Serialize;
use wallets::journal::{self, JournalEntry, VerifiedEntry};
use wallets::{Address, Amount, Payment, Signature, SignedPayment, Wallet, B256};

use super::journal::{
    AcceptanceBody, BodyError, ChannelSettlementBody, DeliveryBody, FundingBody, JournalBody,
    OrderPaymentBody, PaymentBody, ReceiptBody,
};
use super::messages::{
    escrow_job_id, negotiation_domain, order_id, Delivery, PaymentMode, SignedAgreement,
};
use super::settlement::escrow_id_of;
use crate::{Error, Result};

mod x402;
pub use x402::SaleSummary;

/// Where to check payments against the chain: a node and the deployment's addresses.
#[derive(Clone, Debug)]
pub struct ChainCheck {
    rpc_url: String,
    addresses: Addresses,
}

impl ChainCheck {
    /// Checks payments through the node at `rpc_url` against the contracts at
    /// `addresses`.
    pub fn new(rpc_url: impl Into<String>, addresses: Addresses) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            addresses,
        }
    }
}

/// What an audit found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// One line per journal, sorted by path.
    pub journals: Vec<JournalSummary>,
    /// One line per deal (accepted agreement), sorted by agreement hash.
    pub deals: Vec<DealSummary>,
    /// Whether and how payments were matched against the chain.
    pub chain: ChainSummary,
    /// Every discrepancy, sorted by journal, entry and reason.
    pub discrepancies: Vec<Discrepancy>,
    /// x402 sales in sellers' journals, sorted by journal and sale (left out of the
    /// JSON when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sales: Vec<SaleSummary>,
    /// The attestation audit, when one ran (left out of the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestations: Option<AttestationSummary>,
}

/// What an [`AttestationAudit`] checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationSummary {
    /// The audit's name ([`AttestationAudit::name`]).
    pub name: String,
    /// Delivery entries with an attestation it knows, checked.
    pub checked: u64,
    /// Delivery entries whose attestation it left alone (another kind, or one it
    /// cannot check, such as an inference of another model).
    pub skipped: u64,
}

/// One journaled delivery that keeps the seller's attestation, as an
/// [`AttestationAudit`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct AttestedDelivery<'a> {
    /// The journal, as given.
    pub journal: &'a str,
    /// The delivery entry's index.
    pub entry: u64,
    /// The deal: the agreement hash, a channel order's id, or an x402 sale's id.
    pub deal: B256,
    /// The seller who delivered (and signed the attestation).
    pub seller: Address,
    /// The chain the deal was paid on (the agreement's, or the x402 payment's).
    pub chain_id: u64,
    /// The delivered result's hash, as the seller signed it.
    pub result_hash: B256,
    /// The attestation.
    pub attestation: &'a serde_json::Value,
}

/// A check of the attestations that delivery entries keep, run by [`audit_with`] on
/// every such entry (of the journals that verified, with a payment before them).
#[async_trait::async_trait]
pub trait AttestationAudit: Send + Sync {
    /// What the report calls it, e.g. `inference re-run`.
    fn name(&self) -> String;

    /// `Ok(None)` when the attestation is not of the kind this audit checks;
    /// otherwise the problems found, each a discrepancy at the entry (none: it checks
    /// out). Must be deterministic: the same entry always gives the same problems.
    ///
    /// # Errors
    /// When the check cannot be made (the audit fails rather than report a guess).
    async fn check(&self, delivery: &AttestedDelivery<'_>) -> Result<Option<Vec<String>>>;
}

/// One audited journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalSummary {
    /// The path, as given.
    pub path: String,
    /// Who signed it (`None` when empty or its first entry is bad).
    pub signer: Option<Address>,
    /// Entries that verified.
    pub entries_checked: u64,
    /// Whether the whole journal verified.
    pub verified: bool,
    /// Bytes of an interrupted final append (a crash mid-write), which are ignored.
    pub torn_tail_bytes: u64,
    /// Deals (agreement hashes) it has acceptance, payment, delivery or receipt
    /// entries for.
    pub deals: u64,
    /// Of those, deals matched against the counterpart's journal without discrepancy.
    pub deals_matched: u64,
}

/// One deal seen in the journals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DealSummary {
    /// The agreement hash.
    pub agreement: B256,
    /// For a channel order (whose `agreement` is the order id): the channel agreement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_agreement: Option<B256>,
    /// The buyer.
    pub buyer: Address,
    /// The seller.
    pub seller: Address,
    /// The price in base units.
    pub price: Amount,
    /// How it is paid.
    pub mode: PaymentMode,
    /// The buyer's journal, if given.
    pub buyer_journal: Option<String>,
    /// The seller's journal, if given.
    pub seller_journal: Option<String>,
    /// How far the deal got: `accepted`, `paid`, `delivered` or `received`.
    pub stage: String,
    /// Both journals given and no discrepancy about the deal.
    pub matched: bool,
}

/// The chain check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainSummary {
    /// Whether payments were matched against the chain.
    pub checked: bool,
    /// Transactions looked up.
    pub transactions_checked: u64,
    /// What was done, or why not.
    pub note: String,
}

/// One discrepancy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discrepancy {
    /// The journal it was found in.
    pub journal: String,
    /// The entry's index, when it is about one entry.
    pub entry: Option<u64>,
    /// The deal it is about, if any.
    pub agreement: Option<B256>,
    /// What is wrong.
    pub reason: String,
}

impl AuditReport {
    /// Whether no discrepancy was found.
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }

    /// The report as pretty JSON with a final newline (byte-identical for the same
    /// journals and chain).
    pub fn to_json(&self) -> String {
        // Serializing plain data into a string cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The report as text tables for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let w = self
            .journals
            .iter()
            .map(|j| j.path.len())
            .chain(std::iter::once(7))
            .max()
            .unwrap_or(7);
        let _ = writeln!(
            out,
            "{:<w$}  {:<42}  {:>7}  {:<8}  {:>5}  {:>7}",
            "journal", "signer", "entries", "verified", "deals", "matched"
        );
        for j in &self.journals {
            let signer = j.signer.map_or_else(|| "-".to_owned(), |s| s.to_string());
            let _ = writeln!(
                out,
                "{:<w$}  {:<42}  {:>7}  {:<8}  {:>5}  {:>7}",
                j.path,
                signer,
                j.entries_checked,
                if j.verified { "yes" } else { "NO" },
                j.deals,
                j.deals_matched
            );
        }
        for j in self.journals.iter().filter(|j| j.torn_tail_bytes > 0) {
            let _ = writeln!(
                out,
                "note: {} ends in {} bytes of an interrupted append, ignored",
                j.path, j.torn_tail_bytes
            );
        }
        if !self.deals.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<66}  {:<13}  {:>22}  {:<9}  matched",
                "deal (agreement)", "mode", "price", "stage"
            );
            for d in &self.deals {
                let _ = writeln!(
                    out,
                    "{:<66}  {:<13}  {:>22}  {:<9}  {}",
                    d.agreement.to_string(),
                    d.mode.as_str(),
                    d.price.to_string(),
                    d.stage,
                    if d.matched { "yes" } else { "no" }
                );
            }
        }
        if !self.sales.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<66}  {:<20}  {:>22}  {:<9}  clean",
                "x402 sale", "skill or request", "price", "stage"
            );
            for s in &self.sales {
                let _ = writeln!(
                    out,
                    "{:<66}  {:<20}  {:>22}  {:<9}  {}",
                    s.sale.to_string(),
                    s.skill,
                    s.price.to_string(),
                    s.stage,
                    if s.clean { "yes" } else { "no" }
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "chain: {}", self.chain.note);
        if let Some(a) = &self.attestations {
            let _ = writeln!(
                out,
                "attestations: {} of {} deliveries ({} left alone: other kinds, or other models)",
                a.name, a.checked, a.skipped
            );
        }
        let _ = writeln!(out);
        if self.discrepancies.is_empty() {
            let _ = writeln!(out, "no discrepancies");
        } else {
            let _ = writeln!(out, "{} discrepancies:", self.discrepancies.len());
            for d in &self.discrepancies {
                let at = d
                    .entry
                    .map_or_else(|| d.journal.clone(), |i| format!("{}#{i}", d.journal));
                let _ = writeln!(out, "  {at}: {}", d.reason);
            }
        }
        out
    }
}

/// Which party wrote a journal, for one deal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Buyer,
    Seller,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Buyer => "buyer",
            Self::Seller => "seller",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Buyer => Self::Seller,
            Self::Seller => Self::Buyer,
        }
    }
}

/// One journal's entries about one deal.
#[derive(Debug, Default)]
struct Side {
    acceptance: Option<(u64, AcceptanceBody)>,
    payment: Option<(u64, PaymentBody)>,
    delivery: Option<(u64, DeliveryBody)>,
    receipt: Option<(u64, ReceiptBody)>,
    /// The agreement as this journal has it.
    agreement: Option<SignedAgreement>,
    /// For a channel order: the channel agreement's hash.
    order_of: Option<B256>,
    /// For a channel agreement: its channel's funding.
    funding: Option<(u64, FundingBody)>,
    /// For a channel agreement: the seller's settlements of its channel.
    settlements: Vec<(u64, ChannelSettlementBody)>,
}

/// A journal being audited.
#[derive(Debug)]
struct Audited {
    path: String,
    signer: Option<Address>,
    entries: u64,
    verified: bool,
    torn_tail_bytes: u64,
    sides: BTreeMap<B256, Side>,
    sales: x402::Sales,
}

#[derive(Debug, Default)]
struct Findings(BTreeSet<Discrepancy>);

impl Findings {
    fn add(&mut self, journal: &str, entry: Option<u64>, agreement: Option<B256>, reason: String) {
        self.0.insert(Discrepancy {
            journal: journal.to_owned(),
            entry,
            agreement,
            reason,
        });
    }
}

/// Audits `paths` (each a journal; duplicates count once), matching payments against
/// the chain when `chain` is given.
///
/// # Errors
/// [`Error::Wallet`] when a journal cannot be read, [`Error::Chain`] when the node
/// cannot be reached or answers a lookup with an error. Anything wrong *in* the
/// journals is not an error but a [`Discrepancy`] in the report.
pub async fn audit(paths: &[PathBuf], chain: Option<&ChainCheck>) -> Result<AuditReport> {
    audit_with(paths, chain, None).await
}

/// [`audit`], and when `attestations` is given, each delivery entry that keeps an
/// attestation checked by it (see [`AttestationAudit`]).
///
/// # Errors
/// As [`audit`], and the attestation audit's errors.
pub async fn audit_with(
    paths: &[PathBuf],
    chain: Option<&ChainCheck>,
    attestations: Option<&dyn AttestationAudit>,
) -> Result<AuditReport> {
    let mut unique: Vec<&PathBuf> = paths.iter().collect();
    unique.sort();
    unique.dedup();
    let mut findings = Findings::default();
    let (journals, deals) = read_and_cross_check(&unique, &mut findings)?;
    let chain_summary = match chain {
        Some(c) => check_chain(c, &journals, &mut findings).await?,
        None => ChainSummary {
            checked: false,
            transactions_checked: 0,
            note: "skipped (pass --rpc and --addresses to match payments on chain)".into(),
        },
    };
    let attestations = match attestations {
        Some(a) => Some(check_attestations(a, &journals, &mut findings).await?),
        None => None,
    };
    let sales = x402::summaries(&journals, &findings);
    let with_issue: BTreeSet<B256> = findings.0.iter().filter_map(|d| d.agreement).collect();
    let deals: Vec<DealSummary> = deals
        .into_iter()
        .map(|mut d| {
            d.matched = d.matched && !with_issue.contains(&d.agreement);
            d
        })
        .collect();
    let journals = journals
        .iter()
        .map(|j| {
            let matched = deals
                .iter()
                .filter(|d| {
                    d.matched
                        && (d.buyer_journal.as_deref() == Some(j.path.as_str())
                            || d.seller_journal.as_deref() == Some(j.path.as_str()))
                })
                .count();
            JournalSummary {
                path: j.path.clone(),
                signer: j.signer,
                entries_checked: j.entries,
                verified: j.verified,
                torn_tail_bytes: j.torn_tail_bytes,
                deals: j.sides.len() as u64,
                deals_matched: matched as u64,
            }
        })
        .collect();
    Ok(AuditReport {
        journals,
        deals,
        chain: chain_summary,
        discrepancies: findings.0.into_iter().collect(),
        sales,
        attestations,
    })
}

/// Runs `audit` on every delivery entry with an attestation, journal by journal
/// (sorted by path), deal by deal, then x402 sale by sale.
async fn check_attestations(
    audit: &dyn AttestationAudit,
    journals: &[Audited],
    findings: &mut Findings,
) -> Result<AttestationSummary> {
    let name = audit.name();
    let (mut checked, mut skipped) = (0, 0);
    for j in journals {
        let mut seen = Vec::new();
        for (deal, side) in &j.sides {
            let (Some((entry, delivery)), Some((_, payment))) = (&side.delivery, &side.payment)
            else {
                continue;
            };
            let Some(attestation) = &delivery.attestation else {
                continue;
            };
            let agreement = &payment.agreement.agreement;
            seen.push(AttestedDelivery {
                journal: &j.path,
                entry: *entry,
                deal: *deal,
                seller: agreement.seller,
                chain_id: agreement.chain_id,
                result_hash: delivery.result_hash,
                attestation,
            });
        }
        // x402 sales that delivered an attestation, after the negotiated deals.
        for (sale, entry, seller, chain_id, result_hash, attestation) in j.sales.attested() {
            seen.push(AttestedDelivery {
                journal: &j.path,
                entry,
                deal: sale,
                seller,
                chain_id,
                result_hash,
                attestation,
            });
        }
        for d in seen {
            match audit.check(&d).await? {
                None => skipped += 1,
                Some(problems) => {
                    checked += 1;
                    for p in problems {
                        findings.add(&j.path, Some(d.entry), Some(d.deal), format!("{name}: {p}"));
                    }
                }
            }
        }
    }
    Ok(AttestationSummary {
        name,
        checked,
        skipped,
    })
}

/// Reads the journals at `paths` ([`read_journal`]), checks the signatures their
/// entries carry ([`verify_new_signatures`]) and cross-checks them ([`cross_check`]),
/// overlapping the three: a few journals are read at a time, side by side (each on
/// all cores too, and one's parts that run on one thread overlap the other's); each
/// journal's signatures are verified as soon as it is read, on the thread that read
/// it, while the next journals are read; and the cross-check, which runs on one
/// thread, runs while the last journals' signatures are verified. Each distinct
/// signature is still verified once: a journal's thread verifies only those that no
/// journal read before claimed.
fn read_and_cross_check(
    paths: &[&PathBuf],
    findings: &mut Findings,
) -> Result<(Vec<Audited>, Vec<DealSummary>)> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let claimed = std::sync::Mutex::new(BTreeSet::new());
    let claimed = &claimed;
    std::thread::scope(|s| {
        let mut read: Vec<Option<Result<Audited>>> = Vec::with_capacity(paths.len());
        let mut verifying = Vec::with_capacity(paths.len());
        for batch in paths.chunks(cores.max(2)) {
            let (tx, rx) = std::sync::mpsc::channel();
            for (i, path) in batch.iter().enumerate() {
                let tx = tx.clone();
                verifying.push(s.spawn(move || {
                    let (mut found, mut sigs) = (Findings::default(), Vec::new());
                    let journal = read_journal(path, &mut found, &mut sigs);
                    // The journal goes to the cross-check; its signatures are verified
                    // here meanwhile.
                    let _ = tx.send((i, journal));
                    let failed = verify_new_signatures(&sigs, claimed);
                    (found, sigs, failed)
                }));
            }
            drop(tx);
            let at = read.len();
            read.extend(batch.iter().map(|_| None));
            // A thread that panicked sends nothing; the panic is resumed at its join.
            for (i, journal) in rx {
                if let Some(slot) = read.get_mut(at + i) {
                    *slot = Some(journal);
                }
            }
        }
        let journals = read.into_iter().flatten().collect::<Result<Vec<_>>>();
        let mut checks = Vec::new();
        let mut failed = BTreeMap::new();
        let deals = journals.as_ref().ok().map(|j| cross_check(j, findings));
        for h in verifying {
            let (found, sigs, f) = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            findings.0.extend(found.0);
            checks.extend(sigs);
            failed.extend(f);
        }
        let journals = journals?;
        report_failed_signatures(&checks, &failed, findings);
        Ok((journals, deals.unwrap_or_default()))
    })
}

/// Verifies a journal, then reads the entries that verified and audits each deal's
/// entries in it.
fn read_journal(path: &Path, findings: &mut Findings, sigs: &mut Vec<SigCheck>) -> Result<Audited> {
    let name = path.display().to_string();
    let mut torn_tail_bytes = 0;
    // Each line is parsed once, straight into its typed body, on the threads that
    // verify the lines.
    let (bodies, verified) = match journal::read_verified_with(path, read_verified_body) {
        Ok((report, bodies)) => {
            torn_tail_bytes = report.torn_tail_bytes as u64;
            (bodies, true)
        }
        Err(wallets::Error::Journal { index, reason, .. }) => {
            findings.add(
                &name,
                Some(index),
                None,
                format!("journal does not verify: {reason}"),
            );
            (read_bodies(valid_prefix(path, index)?), false)
        }
        Err(e) => return Err(e.into()),
    };
    let signer = bodies.first().map(|(_, signer, _)| *signer);
    let count = bodies.len() as u64;
    let mut sides: BTreeMap<B256, Side> = BTreeMap::new();
    let mut sales = x402::Sales::default();
    // About one signature to check per entry.
    sigs.reserve(bodies.len());
    for (index, signer, body) in bodies {
        match body {
            Ok(body) => {
                let body = body.into_body();
                if let Some(body) = sales.take(&name, index, signer, body, findings, sigs) {
                    audit_entry(&name, index, signer, body, &mut sides, findings, sigs);
                }
            }
            Err((e, agreement)) => {
                findings.add(
                    &name,
                    Some(index),
                    agreement,
                    format!("malformed entry: {e}"),
                );
            }
        }
    }
    Ok(Audited {
        path: name,
        signer,
        entries: count,
        verified,
        torn_tail_bytes,
        sides,
        sales,
    })
}

/// The first `count` entries of a journal whose entry `count` is bad: those verified.
fn valid_prefix(path: &Path, count: u64) -> Result<Vec<JournalEntry>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// An entry's index, signer and body; or why the body is not a negotiation entry's,
/// with the agreement it names, if any. The body is boxed ([`Boxed`]): bodies are
/// large, and the entries pass through a few vectors on their way to [`audit_entry`].
type ReadBody = (
    u64,
    Address,
    std::result::Result<Boxed, (BodyError, Option<B256>)>,
);

macro_rules! boxed {
    ($($variant:ident($body:ident)),* $(,)?) => {
        /// A [`JournalBody`] boxed at its own kind's size, where a `Box<JournalBody>`
        /// takes the largest kind's (an acceptance or a payment, with its signed
        /// agreement) for every entry: most entries are small (deliveries, receipts,
        /// vouchers), and a whole journal's worth of the large size is fresh memory,
        /// page after page.
        #[derive(Debug)]
        enum Boxed {
            $($variant(Box<crate::journal::$body>)),*
        }

        impl From<JournalBody> for Boxed {
            fn from(body: JournalBody) -> Self {
                match body {
                    $(JournalBody::$variant(b) => Self::$variant(Box::new(b))),*
                }
            }
        }

        impl Boxed {
            fn into_body(self) -> JournalBody {
                match self {
                    $(Self::$variant(b) => JournalBody::$variant(*b)),*
                }
            }
        }
    };
}

boxed!(
    Cfp(CfpBody),
    Proposal(ProposalBody),
    Counter(CounterBody),
    Acceptance(AcceptanceBody),
    Rejection(RejectionBody),
    Payment(PaymentBody),
    OrderPayment(OrderPaymentBody),
    Funding(FundingBody),
    ChannelSettlement(ChannelSettlementBody),
    Delivery(DeliveryBody),
    Receipt(ReceiptBody),
    Dispute(DisputeBody),
    Refund(RefundBody),
    Expiry(ExpiryBody),
    X402Payment(X402PaymentBody),
    X402Delivery(X402DeliveryBody),
    X402Purchase(X402PurchaseBody),
    X402Answer(X402AnswerBody),
);

/// Reads the entries' bodies into [`JournalBody`]s, on all cores, in order.
fn read_bodies(entries: Vec<JournalEntry>) -> Vec<ReadBody> {
    par_map(entries, |entry| read_body(&entry))
}

/// Reads an entry's body into a [`JournalBody`].
fn read_body(entry: &JournalEntry) -> ReadBody {
    let body = JournalBody::from_entry(entry)
        .map(Boxed::from)
        .map_err(|e| {
            let agreement = entry
                .body
                .get("agreementHash")
                .and_then(|h| serde_json::from_value(h.clone()).ok());
            (e, agreement)
        });
    (entry.index, entry.signer, body)
}

/// [`read_body`] of a verified entry, from its body's JSON; one that is not a
/// negotiation entry's is read as [`read_body`] reads it, for the agreement it names.
fn read_verified_body(entry: VerifiedEntry) -> ReadBody {
    match JournalBody::from_verified(&entry) {
        Ok(body) => (entry.index(), entry.signer(), Ok(Boxed::from(body))),
        Err(e) => {
            let (index, signer) = (entry.index(), entry.signer());
            match entry.into_entry() {
                Ok(entry) => read_body(&entry),
                Err(_) => (index, signer, Err((e, None))),
            }
        }
    }
}

/// Records an entry in its deal's side and checks it against what came before.
fn audit_entry(
    journal: &str,
    i: u64,
    signer: Address,
    body: JournalBody,
    sides: &mut BTreeMap<B256, Side>,
    findings: &mut Findings,
    sigs: &mut Vec<SigCheck>,
) {
    match body {
        JournalBody::Acceptance(body) => {
            let h = body.agreement_hash;
            let mut add = |reason: String| findings.add(journal, Some(i), Some(h), reason);
            check_agreement(
                &body.agreement,
                h,
                signer,
                &mut add,
                &mut SigQueue::new(journal, i, h, sigs),
            );
            let side = sides.entry(h).or_default();
            if side.acceptance.is_none() {
                side.agreement = Some(body.agreement.clone());
            }
            record_first(
                &mut side.acceptance,
                i,
                body,
                "acceptance of the agreement",
                &mut add,
            );
        }
        JournalBody::OrderPayment(body) => {
            audit_order_payment(journal, i, body, sides, findings, sigs);
        }
        JournalBody::Funding(body) => {
            let h = body.agreement_hash;
            let mut add = |reason: String| findings.add(journal, Some(i), Some(h), reason);
            let side = sides.entry(h).or_default();
            let Some(agreement) = &side.agreement else {
                add("channel funding without an acceptance of the agreement".into());
                return;
            };
            check_funding(
                &agreement.agreement,
                &body,
                &mut add,
                &mut SigQueue::new(journal, i, h, sigs),
            );
            record_first(
                &mut side.funding,
                i,
                body,
                "funding of the channel",
                &mut add,
            );
        }
        JournalBody::ChannelSettlement(body) => {
            let h = body.agreement_hash;
            let mut add = |reason: String| findings.add(journal, Some(i), Some(h), reason);
            let side = sides.entry(h).or_default();
            if side.funding.as_ref().map(|(_, f)| f.channel_id) != Some(body.channel_id) {
                add("settlement of a channel this journal never funded".into());
            }
            match &body.payment.payment {
                Payment::ChannelVoucher { voucher, .. }
                    if voucher.channel_id == body.channel_id => {}
                _ => add("the settled payment is not a voucher of the channel".into()),
            }
            SigQueue::new(journal, i, h, sigs).payment(
                &body.payment,
                "the settled voucher's signature does not verify",
            );
            side.settlements.push((i, body));
        }
        JournalBody::Payment(body) => {
            let h = body.agreement_hash;
            let mut add = |reason: String| findings.add(journal, Some(i), Some(h), reason);
            check_agreement(
                &body.agreement,
                h,
                signer,
                &mut add,
                &mut SigQueue::new(journal, i, h, sigs),
            );
            check_payment(&body, &mut add, &mut SigQueue::new(journal, i, h, sigs));
            let side = sides.entry(h).or_default();
            match &side.agreement {
                None => add("payment without an acceptance of the agreement".into()),
                Some(a) if *a != body.agreement => {
                    add("the payment's agreement differs from the accepted one".into());
                }
                Some(_) => {}
            }
            if side.payment.is_none() {
                side.agreement.get_or_insert_with(|| body.agreement.clone());
            }
            record_first(
                &mut side.payment,
                i,
                body,
                "payment for the agreement",
                &mut add,
            );
        }
        JournalBody::Delivery(body) => {
            let mut add = |agreement: B256, reason: String| {
                findings.add(journal, Some(i), Some(agreement), reason);
            };
            let h = body.deal();
            let side = sides.entry(h).or_default();
            let Some((_, payment)) = &side.payment else {
                add(h, "delivery without a payment for the agreement".into());
                return;
            };
            let a = &payment.agreement.agreement;
            if body.tx_hash != payment.settlement.tx_hash {
                add(
                    h,
                    format!(
                        "delivery names transaction {}, the payment settled in {}",
                        body.tx_hash, payment.settlement.tx_hash
                    ),
                );
            }
            let signed = Delivery {
                agreement: h,
                result_hash: body.result_hash,
                tx_hash: body.tx_hash,
            };
            let digest = wallets::Eip712::signing_hash(&signed, &negotiation_domain(a.chain_id));
            SigQueue::new(journal, i, h, sigs).check(
                body.signature,
                digest,
                a.seller,
                "the delivery is not signed by the seller",
            );
            record_first(
                &mut side.delivery,
                i,
                body,
                "delivery for the agreement",
                &mut |r| {
                    add(h, r);
                },
            );
        }
        JournalBody::Receipt(body) => {
            let mut add = |agreement: B256, reason: String| {
                findings.add(journal, Some(i), Some(agreement), reason);
            };
            let h = body.deal();
            let side = sides.entry(h).or_default();
            let (Some((_, delivery)), Some(agreement)) = (&side.delivery, &side.agreement) else {
                add(h, "receipt without a delivery for the agreement".into());
                return;
            };
            let a = &agreement.agreement;
            if body.receipt.agreement != h {
                add(
                    h,
                    format!("the receipt is for agreement {}", body.receipt.agreement),
                );
            }
            if body.receipt.result_hash != delivery.result_hash {
                add(
                    h,
                    format!(
                        "the receipt acknowledges result {}, the delivery was {}",
                        body.receipt.result_hash, delivery.result_hash
                    ),
                );
            }
            let digest = wallets::Eip712::signing_hash(
                &body.receipt.note(),
                &negotiation_domain(a.chain_id),
            );
            SigQueue::new(journal, i, h, sigs).check(
                body.receipt.signature,
                digest,
                a.buyer,
                "the receipt is not signed by the buyer",
            );
            record_first(
                &mut side.receipt,
                i,
                body,
                "receipt for the agreement",
                &mut |r| {
                    add(h, r);
                },
            );
        }
        JournalBody::Dispute(body) => {
            findings.add(
                journal,
                Some(i),
                Some(body.agreement_hash),
                format!("the buyer disputed the delivery: {}", body.reason),
            );
        }
        // Calls, proposals, counters, rejections, refunds and expiries carry no
        // obligation.
        JournalBody::Cfp(_)
        | JournalBody::Proposal(_)
        | JournalBody::Counter(_)
        | JournalBody::Rejection(_)
        | JournalBody::Refund(_)
        | JournalBody::Expiry(_) => {}
        // Audited by `x402::Sales::take` before they get here.
        JournalBody::X402Payment(_)
        | JournalBody::X402Delivery(_)
        | JournalBody::X402Purchase(_)
        | JournalBody::X402Answer(_) => {}
    }
}

/// Keeps `value`, from entry `i`, in `slot` if it is the first of its kind for the
/// deal; reports a later one that differs from the first (the same one again, as a
/// retried step may journal it, is fine).
fn record_first<T: PartialEq>(
    slot: &mut Option<(u64, T)>,
    i: u64,
    value: T,
    what: &str,
    add: &mut impl FnMut(String),
) {
    match slot {
        Some((first, kept)) if *kept != value => {
            add(format!("a second {what} disagrees with entry {first}"));
        }
        Some(_) => {}
        None => *slot = Some((i, value)),
    }
}

/// A channel order's payment: recorded as the order's deal, under the channel
/// agreement accepted earlier in the journal.
fn audit_order_payment(
    journal: &str,
    i: u64,
    body: OrderPaymentBody,
    sides: &mut BTreeMap<B256, Side>,
    findings: &mut Findings,
    sigs: &mut Vec<SigCheck>,
) {
    let (h, id) = (body.agreement_hash, body.order_id);
    let mut add = |reason: String| findings.add(journal, Some(i), Some(id), reason);
    let Some(agreement) = sides.get(&h).and_then(|s| s.agreement.clone()) else {
        add(format!(
            "channel order payment without an acceptance of agreement {h}"
        ));
        return;
    };
    let a = &agreement.agreement;
    if a.mode != PaymentMode::Channel {
        add(format!("agreement {h} is not paid through a channel"));
    }
    if id != order_id(&h, body.payment.payment.amount()) {
        add(format!(
            "orderId {id} is not the order its voucher pays under agreement {h}"
        ));
    }
    let body = PaymentBody {
        agreement_hash: h,
        agreement,
        payment_id: body.payment_id,
        payment: body.payment,
        settlement: super::seller::NO_SETTLEMENT,
        escrow_id: None,
        lock: None,
    };
    let mut queue = SigQueue {
        journal,
        entry: i,
        agreement: id,
        list: sigs,
    };
    check_payment(&body, &mut add, &mut queue);
    let side = sides.entry(id).or_default();
    if side.payment.is_none() {
        side.agreement = Some(body.agreement.clone());
        side.order_of = Some(h);
    }
    record_first(
        &mut side.payment,
        i,
        body,
        "payment for the order",
        &mut add,
    );
}

fn check_funding(
    a: &super::Agreement,
    f: &FundingBody,
    add: &mut impl FnMut(String),
    sigs: &mut SigQueue<'_>,
) {
    let pay = &f.payment.payment;
    if f.payment_id != pay.id() {
        add(format!(
            "paymentId {} is not the funding's id {}",
            f.payment_id,
            pay.id()
        ));
    }
    sigs.payment(&f.payment, "the funding's signature does not verify");
    match pay {
        Payment::ChannelFunding { channel, .. } => {
            if channel.id() != f.channel_id {
                add(format!(
                    "channelId {} is not the funded channel {}",
                    f.channel_id,
                    channel.id()
                ));
            }
            if (channel.payer, channel.payee) != (a.buyer, a.seller) {
                add(format!(
                    "the channel is from {} to {}, the agreement from {} to {}",
                    channel.payer, channel.payee, a.buyer, a.seller
                ));
            }
        }
        _ => add("the funding is not a channel funding".into()),
    }
    if a.mode != PaymentMode::Channel {
        add("the agreement is not paid through a channel".into());
    }
}

fn check_agreement(
    signed: &SignedAgreement,
    hash: B256,
    signer: Address,
    add: &mut impl FnMut(String),
    sigs: &mut SigQueue<'_>,
) {
    let a = &signed.agreement;
    if a.hash() != hash {
        add(format!(
            "agreementHash {hash} is not the hash of the agreement ({})",
            a.hash()
        ));
    }
    let what = "the agreement's signatures do not verify";
    sigs.check(signed.seller_signature, a.hash(), a.seller, what);
    sigs.check(signed.buyer_signature, a.hash(), a.buyer, what);
    if signer != a.buyer && signer != a.seller {
        add(format!(
            "the journal's signer {signer} is neither the buyer {} nor the seller {}",
            a.buyer, a.seller
        ));
    }
}

fn check_payment(p: &PaymentBody, add: &mut impl FnMut(String), sigs: &mut SigQueue<'_>) {
    let a = &p.agreement.agreement;
    let pay = &p.payment.payment;
    if p.payment_id != pay.id() {
        add(format!(
            "paymentId {} is not the payment's id {}",
            p.payment_id,
            pay.id()
        ));
    }
    sigs.payment(&p.payment, "the payment's signature does not verify");
    if pay.payer() != a.buyer {
        add(format!(
            "the payment is from {}, the buyer is {}",
            pay.payer(),
            a.buyer
        ));
    }
    if pay.beneficiary() != a.seller {
        add(format!(
            "the payment is to {}, the seller is {}",
            pay.beneficiary(),
            a.seller
        ));
    }
    let (amount, price) = (pay.amount().base_units(), a.price.base_units());
    if a.mode == PaymentMode::Channel {
        if price == 0 || amount == 0 || amount % price != 0 {
            add(format!(
                "the voucher's cumulative amount {amount} is not a whole number of orders at the agreed price {price}"
            ));
        }
    } else if amount != price {
        add(format!(
            "the payment is for {amount}, the agreed price is {price}"
        ));
    }
    let mode_ok = matches!(
        (a.mode, pay),
        (PaymentMode::Authorization, Payment::Authorization { .. })
            | (PaymentMode::Escrow, Payment::EscrowDeposit { .. })
            | (PaymentMode::Channel, Payment::ChannelVoucher { .. })
    );
    if !mode_ok {
        add(format!(
            "the payment is not of the agreed mode {}",
            a.mode.as_str()
        ));
    }
    if a.mode == PaymentMode::Escrow {
        let id = escrow_id_of(a.buyer, escrow_job_id(&a.hash()));
        if p.escrow_id != Some(id) {
            add(format!("escrowId is not the agreement's escrow {id}"));
        }
    }
}

/// A signature an entry carries, checked after all journals are read, on all cores.
#[derive(Debug)]
struct SigCheck {
    journal: String,
    entry: u64,
    agreement: B256,
    signature: Signature,
    digest: B256,
    signer: Address,
    what: &'static str,
}

/// Queues the signature checks of one entry.
struct SigQueue<'a> {
    journal: &'a str,
    entry: u64,
    agreement: B256,
    list: &'a mut Vec<SigCheck>,
}

impl<'a> SigQueue<'a> {
    fn new(journal: &'a str, entry: u64, agreement: B256, list: &'a mut Vec<SigCheck>) -> Self {
        Self {
            journal,
            entry,
            agreement,
            list,
        }
    }

    fn check(&mut self, signature: Signature, digest: B256, signer: Address, what: &'static str) {
        self.list.push(SigCheck {
            journal: self.journal.to_owned(),
            entry: self.entry,
            agreement: self.agreement,
            signature,
            digest,
            signer,
            what,
        });
    }

    fn payment(&mut self, p: &SignedPayment, what: &'static str) {
        self.check(
            p.signature,
            p.payment.signing_hash(),
            p.payment.payer(),
            what,
        );
    }
}

/// One distinct signature to check: (r ‖ s ‖ v, digest, expected signer).
type SigKey = ([u8; 65], B256, Address);

fn sig_key(c: &SigCheck) -> SigKey {
    (c.signature.to_bytes(), c.digest, c.signer)
}

/// Checks the queued signatures of one journal on all cores, each distinct one once
/// (the buyer's and the seller's journals carry the same signed agreements,
/// payments, deliveries and receipts): those that no other journal has `claimed`
/// already, which are claimed here. Returns the failures, with why; each is
/// reported at every entry that carries it by [`report_failed_signatures`].
fn verify_new_signatures(
    checks: &[SigCheck],
    claimed: &std::sync::Mutex<BTreeSet<SigKey>>,
) -> BTreeMap<SigKey, String> {
    let mut distinct: BTreeMap<SigKey, Signature> = BTreeMap::new();
    for c in checks {
        distinct.entry(sig_key(c)).or_insert(c.signature);
    }
    {
        let mut claimed = claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        distinct.retain(|k, _| claimed.insert(*k));
    }
    // Recovery and the address's hash: the address's hash is 1 % of the recovery.
    par_map(distinct.into_iter().collect(), |(k, sig)| {
        let (_, digest, signer) = k;
        sig.verify(&digest, signer)
            .err()
            .map(|e| (k, e.to_string()))
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Reports each signature that `failed` at every entry that carries it.
fn report_failed_signatures(
    checks: &[SigCheck],
    failed: &BTreeMap<SigKey, String>,
    findings: &mut Findings,
) {
    if failed.is_empty() {
        return;
    }
    for c in checks {
        if let Some(e) = failed.get(&sig_key(c)) {
            findings.add(
                &c.journal,
                Some(c.entry),
                Some(c.agreement),
                format!("{}: {e}", c.what),
            );
        }
    }
}

/// `f` of each of `items`, in order, on all cores. The items are handed out in
/// small chunks as threads free up, so a thread that the machine's other work slows
/// down does not hold the others up at the end.
fn par_map<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    const CHUNK: usize = 32;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len() / CHUNK)
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let len = items.len();
    let mut chunks: Vec<(usize, Vec<T>)> = Vec::with_capacity(len.div_ceil(CHUNK));
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<T> = items.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push((chunks.len(), chunk));
    }
    // Taken from the back: the last chunks first, which does not matter.
    let queue = std::sync::Mutex::new(chunks);
    let next = || {
        queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    };
    let mut done: Vec<(usize, Vec<U>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while let Some((i, chunk)) = next() {
                        out.push((i, chunk.into_iter().map(&f).collect::<Vec<U>>()));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(len);
    for (_, part) in done {
        out.extend(part);
    }
    out
}

/// Matches each deal's entries between the buyer's and the seller's journals.
fn cross_check(journals: &[Audited], findings: &mut Findings) -> Vec<DealSummary> {
    // One journal per agent: of several with the same signer, the first by path is
    // cross-checked and the others are reported.
    let mut by_signer: BTreeMap<Address, &Audited> = BTreeMap::new();
    for j in journals {
        let Some(signer) = j.signer else { continue };
        match by_signer.get(&signer) {
            Some(first) => findings.add(
                &j.path,
                None,
                None,
                format!(
                    "signed by {signer} like {}: only that journal is cross-checked",
                    first.path
                ),
            ),
            None => {
                by_signer.insert(signer, j);
            }
        }
    }
    // Every agreement any journal has an agreement for.
    let mut agreements: BTreeMap<B256, SignedAgreement> = BTreeMap::new();
    for j in journals {
        for (h, side) in &j.sides {
            if let Some(a) = &side.agreement {
                agreements.entry(*h).or_insert_with(|| a.clone());
            }
        }
    }
    let mut deals = Vec::new();
    for (h, signed) in agreements {
        let a = &signed.agreement;
        let journal_of = |who: Address| by_signer.get(&who).copied();
        let (buyer_j, seller_j) = (journal_of(a.buyer), journal_of(a.seller));
        let buyer = buyer_j.and_then(|j| j.sides.get(&h)).map(|s| (buyer_j, s));
        let seller = seller_j
            .and_then(|j| j.sides.get(&h))
            .map(|s| (seller_j, s));
        let stage = [buyer, seller]
            .iter()
            .flatten()
            .map(|(_, s)| {
                if s.receipt.is_some() {
                    3
                } else if s.delivery.is_some() {
                    2
                } else {
                    u8::from(s.payment.is_some())
                }
            })
            .max()
            .unwrap_or(0);
        let both = match (buyer_j, seller_j) {
            (Some(bj), Some(sj)) => {
                let empty = Side::default();
                let bs = bj.sides.get(&h).unwrap_or(&empty);
                let ss = sj.sides.get(&h).unwrap_or(&empty);
                compare(h, bj, bs, sj, ss, findings);
                true
            }
            _ => false,
        };
        let channel_agreement = [buyer, seller]
            .iter()
            .flatten()
            .find_map(|(_, s)| s.order_of);
        deals.push(DealSummary {
            agreement: h,
            channel_agreement,
            buyer: a.buyer,
            seller: a.seller,
            price: a.price,
            mode: a.mode,
            buyer_journal: buyer_j.map(|j| j.path.clone()),
            seller_journal: seller_j.map(|j| j.path.clone()),
            stage: ["accepted", "paid", "delivered", "received"]
                .get(usize::from(stage))
                .copied()
                .unwrap_or("accepted")
                .into(),
            matched: both,
        });
    }
    deals
}

/// Compares the two sides of one deal, kind by kind.
fn compare(h: B256, bj: &Audited, bs: &Side, sj: &Audited, ss: &Side, findings: &mut Findings) {
    let sides = [(Role::Buyer, bj, bs), (Role::Seller, sj, ss)];
    // Presence: an entry on one side must have its counterpart on the other.
    let present = |s: &Side| {
        [
            ("acceptance", s.acceptance.as_ref().map(|e| e.0)),
            ("payment", s.payment.as_ref().map(|e| e.0)),
            ("delivery", s.delivery.as_ref().map(|e| e.0)),
            ("receipt", s.receipt.as_ref().map(|e| e.0)),
            ("channel funding", s.funding.as_ref().map(|e| e.0)),
        ]
    };
    for (role, j, s) in sides {
        let (_, oj, os) = if role == Role::Buyer {
            sides[1]
        } else {
            sides[0]
        };
        for ((kind, mine), (_, theirs)) in present(s).into_iter().zip(present(os)) {
            if let (Some(i), None) = (mine, theirs) {
                findings.add(
                    &j.path,
                    Some(i),
                    Some(h),
                    format!(
                        "{} journaled a {kind} that the {}'s journal {} lacks",
                        role.as_str(),
                        role.other().as_str(),
                        oj.path
                    ),
                );
            }
        }
    }
    let mut differ = |i: u64, oi: u64, kind: &str, field: &str| {
        findings.add(
            &bj.path,
            Some(i),
            Some(h),
            format!(
                "the buyer's {kind} and the seller's ({} entry {oi}) disagree on {field}",
                sj.path
            ),
        );
    };
    if let (Some((i, b)), Some((oi, s))) = (&bs.acceptance, &ss.acceptance) {
        if b != s {
            differ(*i, *oi, "acceptance", "the signed agreement");
        }
    }
    if let (Some((i, b)), Some((oi, s))) = (&bs.payment, &ss.payment) {
        let fields = [
            ("agreement", b.agreement != s.agreement),
            (
                "price",
                b.agreement.agreement.price != s.agreement.agreement.price,
            ),
            ("paymentId", b.payment_id != s.payment_id),
            ("the signed payment", b.payment != s.payment),
            (
                "the transaction hash",
                b.settlement.tx_hash != s.settlement.tx_hash,
            ),
            ("the settlement", b.settlement != s.settlement),
            ("escrowId", b.escrow_id != s.escrow_id),
        ];
        for (field, _) in fields.into_iter().filter(|f| f.1) {
            differ(*i, *oi, "payment", field);
        }
    }
    if let (Some((i, b)), Some((oi, s))) = (&bs.delivery, &ss.delivery) {
        let fields = [
            ("the result hash", b.result_hash != s.result_hash),
            ("the transaction hash", b.tx_hash != s.tx_hash),
            ("the seller's signature", b.signature != s.signature),
        ];
        for (field, _) in fields.into_iter().filter(|f| f.1) {
            differ(*i, *oi, "delivery", field);
        }
    }
    if let (Some((i, b)), Some((oi, s))) = (&bs.receipt, &ss.receipt) {
        if b.receipt != s.receipt {
            differ(*i, *oi, "receipt", "the signed receipt");
        }
    }
    if let (Some((i, b)), Some((oi, s))) = (&bs.funding, &ss.funding) {
        if b != s {
            differ(
                *i,
                *oi,
                "channel funding",
                "the signed funding or its transaction",
            );
        }
    }
}

/// Matches payment entries (and escrow releases) against the chain.
async fn check_chain(
    check: &ChainCheck,
    journals: &[Audited],
    findings: &mut Findings,
) -> Result<ChainSummary> {
    let client = chain::connect(&check.rpc_url, Arc::new(Wallet::random())).await?;
    let deployment = Deployment::at(client, &check.addresses);
    let token = Address(check.addresses.stablecoin.0);
    let escrow = Address(check.addresses.escrow.0);
    let mut cache: BTreeMap<B256, Option<TxEffects>> = BTreeMap::new();
    for j in journals {
        for (h, side) in &j.sides {
            check_channel_chain(check, &deployment, &mut cache, &j.path, *h, side, findings)
                .await?;
            let Some((i, p)) = &side.payment else {
                continue;
            };
            let a = &p.agreement.agreement;
            let mut add = |reason: String| findings.add(&j.path, Some(*i), Some(*h), reason);
            if a.chain_id != check.addresses.chain_id {
                add(format!(
                    "the agreement is on chain {}, the deployment on {}",
                    a.chain_id, check.addresses.chain_id
                ));
                continue;
            }
            if a.token != token {
                add(format!(
                    "the agreement's token {} is not the deployment's stablecoin {token}",
                    a.token
                ));
            }
            if a.mode == PaymentMode::Channel {
                // Vouchers have no transaction of their own: the channel's funding and
                // settlements are matched under the agreement.
                continue;
            }
            let settled = effects(&deployment, &mut cache, p.settlement.tx_hash).await?;
            match a.mode {
                PaymentMode::Channel => {}
                PaymentMode::Authorization => {
                    let wanted = (a.buyer, a.seller, a.price);
                    match tx_problem(settled, p.settlement.tx_hash) {
                        Some(problem) => add(problem),
                        None => {
                            if !has_transfer(settled, wanted) {
                                add(no_transfer(p.settlement.tx_hash, wanted));
                            }
                            if let Payment::Authorization { transfer, .. } = &p.payment.payment {
                                let used = (transfer.from, transfer.nonce);
                                if !settled.is_some_and(|e| e.authorizations_used.contains(&used)) {
                                    add(format!(
                                        "transaction {} did not use the payment's authorization (nonce {})",
                                        p.settlement.tx_hash, transfer.nonce
                                    ));
                                }
                            }
                        }
                    }
                }
                PaymentMode::Escrow => {
                    let id = escrow_id_of(a.buyer, escrow_job_id(h));
                    match tx_problem(settled, p.settlement.tx_hash) {
                        Some(problem) => add(problem),
                        None if !has_event(settled, EscrowEventKind::Delivered, id) => {
                            add(format!(
                                "transaction {} records no delivery of escrow {id}",
                                p.settlement.tx_hash
                            ))
                        }
                        None => {}
                    }
                    let lock = match p.lock {
                        Some(l) => Some(l.tx_hash),
                        None => deployment
                            .escrow_lock_tx(id, check.addresses.deployed_at)
                            .await?
                            .map(|m| m.tx_hash),
                    };
                    let Some(lock) = lock else {
                        add(format!("escrow {id} was never locked on chain"));
                        continue;
                    };
                    let locked = effects(&deployment, &mut cache, lock).await?;
                    let wanted = (a.buyer, escrow, a.price);
                    if let Some(problem) = tx_problem(locked, lock) {
                        add(format!("the escrow lock: {problem}"));
                    } else if !has_event(locked, EscrowEventKind::Locked, id)
                        || !has_transfer(locked, wanted)
                    {
                        add(format!(
                            "the escrow lock: {} (with JobLocked of {id})",
                            no_transfer(lock, wanted)
                        ));
                    }
                    let job = deployment.escrow_job(id).await?;
                    if (job.buyer, job.seller, job.amount) != (a.buyer, a.seller, a.price) {
                        add(format!(
                            "escrow {id} on chain holds {} from {} for {}, not the agreement's terms",
                            job.amount.base_units(),
                            job.buyer,
                            job.seller
                        ));
                    }
                    if let Some((ri, release)) = side
                        .receipt
                        .as_ref()
                        .and_then(|(ri, r)| r.release.map(|x| (*ri, x)))
                    {
                        let released = effects(&deployment, &mut cache, release.tx_hash).await?;
                        let wanted = (escrow, a.seller, a.price);
                        let problem = tx_problem(released, release.tx_hash).or_else(|| {
                            (!has_event(released, EscrowEventKind::Released, id)
                                || !has_transfer(released, wanted))
                            .then(|| no_transfer(release.tx_hash, wanted))
                        });
                        if let Some(problem) = problem {
                            findings.add(
                                &j.path,
                                Some(ri),
                                Some(*h),
                                format!("the escrow release: {problem}"),
                            );
                        }
                    }
                }
            }
        }
    }
    x402::check_chain(check, &deployment, &mut cache, journals, findings).await?;
    Ok(ChainSummary {
        checked: true,
        transactions_checked: cache.len() as u64,
        note: format!(
            "payments matched against chain {} (stablecoin {token}, escrow {escrow})",
            check.addresses.chain_id
        ),
    })
}

/// Matches a channel agreement's funding (the deposit moved from the buyer to the
/// channel contract, `ChannelOpened`) and the seller's settlements (`ChannelSettled` or
/// `ChannelClosed`, and a transfer to the seller) against the chain.
async fn check_channel_chain(
    check: &ChainCheck,
    deployment: &Deployment,
    cache: &mut BTreeMap<B256, Option<TxEffects>>,
    journal: &str,
    h: B256,
    side: &Side,
    findings: &mut Findings,
) -> Result<()> {
    let contract = Address(check.addresses.channel.0);
    let Some(agreement) = side.agreement.as_ref().filter(|_| side.order_of.is_none()) else {
        return Ok(());
    };
    let a = &agreement.agreement;
    if let Some((i, f)) = &side.funding {
        let tx = f.settlement.tx_hash;
        let funded = effects(deployment, cache, tx).await?;
        let wanted = (a.buyer, contract, f.payment.payment.amount());
        let problem = tx_problem(funded, tx).or_else(|| {
            (!funded.is_some_and(|e| {
                e.channel_events
                    .contains(&(ChannelEventKind::Opened, f.channel_id))
            }) || !has_transfer(funded, wanted))
            .then(|| {
                format!(
                    "the channel funding: {} (with ChannelOpened of {})",
                    no_transfer(tx, wanted),
                    f.channel_id
                )
            })
        });
        if let Some(problem) = problem {
            findings.add(journal, Some(*i), Some(h), problem);
        }
    }
    for (i, s) in &side.settlements {
        let tx = s.settlement.tx_hash;
        let settled = effects(deployment, cache, tx).await?;
        let problem = tx_problem(settled, tx).or_else(|| {
            let event = settled.is_some_and(|e| {
                e.channel_events
                    .contains(&(ChannelEventKind::Settled, s.channel_id))
                    || e.channel_events
                        .contains(&(ChannelEventKind::Closed, s.channel_id))
            });
            let paid = settled.is_some_and(|e| {
                e.transfers
                    .iter()
                    .any(|t| t.from == contract && t.to == a.seller)
            });
            (!event || !paid).then(|| {
                format!(
                    "transaction {tx} settled nothing of channel {} to the seller {}",
                    s.channel_id, a.seller
                )
            })
        });
        if let Some(problem) = problem {
            findings.add(journal, Some(*i), Some(h), problem);
        }
    }
    Ok(())
}

async fn effects<'c>(
    deployment: &Deployment,
    cache: &'c mut BTreeMap<B256, Option<TxEffects>>,
    tx: B256,
) -> Result<Option<&'c TxEffects>> {
    if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(tx) {
        slot.insert(deployment.tx_effects(tx).await?);
    }
    Ok(cache.get(&tx).and_then(Option::as_ref))
}

fn tx_problem(effects: Option<&TxEffects>, tx: B256) -> Option<String> {
    match effects {
        None => Some(format!("transaction {tx} is not on chain")),
        Some(e) if !e.success => Some(format!("transaction {tx} reverted")),
        Some(_) => None,
    }
}

fn has_transfer(
    effects: Option<&TxEffects>,
    (from, to, value): (Address, Address, Amount),
) -> bool {
    effects.is_some_and(|e| {
        e.transfers
            .iter()
            .any(|t| t.from == from && t.to == to && t.value == value)
    })
}

fn has_event(effects: Option<&TxEffects>, kind: EscrowEventKind, id: B256) -> bool {
    effects.is_some_and(|e| e.escrow_events.contains(&(kind, id)))
}

fn no_transfer(tx: B256, (from, to, value): (Address, Address, Amount)) -> String {
    format!(
        "transaction {tx} moved no {} base units of the stablecoin from {from} to {to}",
        value.base_units()
    )
}
