//! The audit of x402 sales: a seller's `x402_payment` and `x402_delivery` entries, and
//! a buyer's `x402_purchase` and `x402_answer` entries.
//!
//! An x402 sale has no agreement: the buyer's EIP-3009 authorization is the whole
//! deal. Offline, each `x402_payment` must be an authorization whose signature
//! recovers the payer in the token's EIP-712 domain, whose payee is the journal's
//! signer (a seller journals its own sales), whose amount is the price asked, whose
//! network is the domain's chain and whose sale id and payment id are its own; each
//! `x402_delivery` must follow the payment of its sale and name its transaction. With
//! the chain ([`ChainCheck`](super::ChainCheck)), the recorded transaction must have
//! succeeded in the deployment's stablecoin, used the authorization
//! (`AuthorizationUsed` with its nonce) and moved exactly the amount from the payer to
//! the seller.
//!
//! On the buyer's side each `x402_purchase` must be an authorization whose signature
//! recovers the payer in the token's domain, whose payer is the journal's signer and
//! whose sale id and network are its own; each `x402_answer` must follow the purchase
//! of its sale. With the chain, a successful answer's transaction, if the payment was
//! in the deployment's stablecoin, must have moved exactly the amount from the buyer to
//! the payee with that authorization. A purchase paid in another chain's or another
//! token's money is checked offline only.

use std::collections::BTreeMap;

use registry::chain::{Deployment, TxEffects};
use serde::Serialize;
use wallets::{Address, Amount, Payment, B256};

use super::{
    effects, has_transfer, no_transfer, tx_problem, Audited, ChainCheck, Findings, SigCheck,
    SigQueue,
};
use crate::journal::{
    x402_sale_id, JournalBody, X402AnswerBody, X402DeliveryBody, X402PaymentBody, X402PurchaseBody,
};
use crate::Result;

/// One x402 sale seen in a seller's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleSummary {
    /// The sale's id ([`x402_sale_id`]).
    pub sale: B256,
    /// The seller's journal.
    pub journal: String,
    /// The skill sold, or for a purchase the request paid for (`POST http://…`).
    pub skill: String,
    /// The buyer (the authorization's payer).
    pub buyer: Address,
    /// The seller (its payee).
    pub seller: Address,
    /// The amount paid, in base units.
    pub price: Amount,
    /// The settling transaction (zero for a purchase whose answer named none).
    pub tx_hash: B256,
    /// How far it got: `paid` or `delivered` for a sale (a seller's journal), `sent`
    /// or `answered` for a purchase (a buyer's journal).
    pub stage: String,
    /// No discrepancy about the sale.
    pub clean: bool,
}

/// A journal's x402 sales, by sale id.
#[derive(Debug, Default)]
pub(super) struct Sales(BTreeMap<B256, Sale>);

#[derive(Debug, Default)]
struct Sale {
    payment: Option<(u64, X402PaymentBody)>,
    delivery: Option<(u64, X402DeliveryBody)>,
    purchase: Option<(u64, X402PurchaseBody)>,
    answer: Option<(u64, X402AnswerBody)>,
}

impl Sales {
    /// Audits `body` if it is an x402 entry, or hands it back.
    pub(super) fn take(
        &mut self,
        journal: &str,
        i: u64,
        signer: Address,
        body: JournalBody,
        findings: &mut Findings,
        sigs: &mut Vec<SigCheck>,
    ) -> Option<JournalBody> {
        match body {
            JournalBody::X402Payment(p) => {
                let id = p.sale_id;
                let mut add = |reason: String| findings.add(journal, Some(i), Some(id), reason);
                check_payment(&p, signer, &mut add);
                SigQueue::new(journal, i, id, sigs).payment(
                    &p.payment,
                    "the x402 payment's signature does not recover the payer in the token's domain",
                );
                super::record_first(
                    &mut self.0.entry(id).or_default().payment,
                    i,
                    p,
                    "x402 payment for the sale",
                    &mut add,
                );
                None
            }
            JournalBody::X402Delivery(d) => {
                let id = d.sale_id;
                let mut add = |reason: String| findings.add(journal, Some(i), Some(id), reason);
                let sale = self.0.entry(id).or_default();
                match &sale.payment {
                    None => add("x402 delivery without a payment for the sale".into()),
                    Some((_, p)) if p.settlement.tx_hash != d.tx_hash => add(format!(
                        "x402 delivery names transaction {}, the payment settled in {}",
                        d.tx_hash, p.settlement.tx_hash
                    )),
                    Some(_) => {}
                }
                super::record_first(
                    &mut sale.delivery,
                    i,
                    d,
                    "x402 delivery for the sale",
                    &mut add,
                );
                None
            }
            JournalBody::X402Purchase(p) => {
                let id = p.sale_id;
                let mut add = |reason: String| findings.add(journal, Some(i), Some(id), reason);
                check_purchase(&p, signer, &mut add);
                SigQueue::new(journal, i, id, sigs).payment(
                    &p.payment,
                    "the x402 purchase's signature does not recover the payer in the token's domain",
                );
                super::record_first(
                    &mut self.0.entry(id).or_default().purchase,
                    i,
                    p,
                    "x402 purchase for the sale",
                    &mut add,
                );
                None
            }
            JournalBody::X402Answer(a) => {
                let id = a.sale_id;
                let mut add = |reason: String| findings.add(journal, Some(i), Some(id), reason);
                let sale = self.0.entry(id).or_default();
                if sale.purchase.is_none() {
                    add("x402 answer without a purchase for the sale".into());
                }
                // A payment re-sent after an error answer may get a success later;
                // the first success is the purchase's answer, and a second one must
                // agree with it.
                match &sale.answer {
                    Some((_, kept)) if is_success(kept.status) && is_success(a.status) => {
                        super::record_first(&mut sale.answer, i, a, "x402 answer", &mut add);
                    }
                    Some((_, kept)) if is_success(kept.status) || !is_success(a.status) => {}
                    _ => sale.answer = Some((i, a)),
                }
                None
            }
            other => Some(other),
        }
    }
}

impl Sales {
    /// The delivered sales whose delivery keeps an attestation, by sale id: the
    /// delivery's entry, the seller (the payment's payee), the chain id of the
    /// payment's domain, the delivered result's hash and the attestation.
    pub(super) fn attested(
        &self,
    ) -> impl Iterator<Item = (B256, u64, Address, u64, B256, &serde_json::Value)> {
        self.0.iter().filter_map(|(id, sale)| {
            let (Some((i, d)), Some((_, p))) = (&sale.delivery, &sale.payment) else {
                return None;
            };
            let Payment::Authorization { domain, transfer } = &p.payment.payment else {
                return None;
            };
            let attestation = d.attestation.as_ref()?;
            Some((
                *id,
                *i,
                transfer.to,
                domain.chain_id.unwrap_or_default(),
                d.result_hash,
                attestation,
            ))
        })
    }
}

/// The offline checks of one `x402_purchase`.
fn check_purchase(p: &X402PurchaseBody, signer: Address, add: &mut impl FnMut(String)) {
    let Payment::Authorization { domain, transfer } = &p.payment.payment else {
        add("the x402 purchase is not an EIP-3009 authorization".into());
        return;
    };
    let asset = domain.verifying_contract.unwrap_or_default();
    let id = x402_sale_id(asset, transfer.from, transfer.nonce);
    if p.sale_id != id {
        add(format!(
            "saleId {} is not the purchase's sale {id} (token, payer, nonce)",
            p.sale_id
        ));
    }
    if transfer.from != signer {
        add(format!(
            "the x402 purchase is paid by {}, not the journal's signer {signer}",
            transfer.from
        ));
    }
    check_network(&p.network, domain, add);
}

/// The sale's network is the one its payment was signed for.
fn check_network(network: &str, domain: &wallets::Eip712Domain, add: &mut impl FnMut(String)) {
    let signed = domain
        .chain_id
        .map(|id| format!("eip155:{id}"))
        .unwrap_or_default();
    if network != signed {
        add(format!(
            "the sale's network is {network:?}, the payment was signed for {signed:?}"
        ));
    }
}

/// The offline checks of one `x402_payment`.
fn check_payment(p: &X402PaymentBody, signer: Address, add: &mut impl FnMut(String)) {
    let Payment::Authorization { domain, transfer } = &p.payment.payment else {
        add("the x402 payment is not an EIP-3009 authorization".into());
        return;
    };
    let asset = domain.verifying_contract.unwrap_or_default();
    let id = x402_sale_id(asset, transfer.from, transfer.nonce);
    if p.sale_id != id {
        add(format!(
            "saleId {} is not the payment's sale {id} (token, payer, nonce)",
            p.sale_id
        ));
    }
    if p.payment_id != p.payment.payment.id() {
        add(format!(
            "paymentId {} is not the payment's id {}",
            p.payment_id,
            p.payment.payment.id()
        ));
    }
    if transfer.to != signer {
        add(format!(
            "the x402 payment is to {}, not the journal's signer {signer}",
            transfer.to
        ));
    }
    if transfer.value != p.price {
        add(format!(
            "the x402 payment is for {}, the price asked was {}",
            transfer.value.base_units(),
            p.price.base_units()
        ));
    }
    check_network(&p.network, domain, add);
}

/// Matches each journal's x402 payments, and the transactions its purchases' answers
/// name, against the chain.
pub(super) async fn check_chain(
    check: &ChainCheck,
    deployment: &Deployment,
    cache: &mut BTreeMap<B256, Option<TxEffects>>,
    journals: &[Audited],
    findings: &mut Findings,
) -> Result<()> {
    let token = Address(check.addresses.stablecoin.0);
    for j in journals {
        for (id, sale) in &j.sales.0 {
            if let Some((i, p)) = &sale.payment {
                let Payment::Authorization { domain, transfer } = &p.payment.payment else {
                    continue;
                };
                let mut add = |reason: String| findings.add(&j.path, Some(*i), Some(*id), reason);
                if domain.chain_id != Some(check.addresses.chain_id) {
                    add(format!(
                        "the x402 payment is on chain {}, the deployment on {}",
                        domain.chain_id.unwrap_or_default(),
                        check.addresses.chain_id
                    ));
                    continue;
                }
                if domain.verifying_contract != Some(token) {
                    add(format!(
                        "the x402 payment's token {} is not the deployment's stablecoin {token}",
                        domain.verifying_contract.unwrap_or_default()
                    ));
                    continue;
                }
                let tx = p.settlement.tx_hash;
                let settled = effects(deployment, cache, tx).await?;
                settled_by(settled, tx, transfer, &mut add);
            }
            // A purchase in the deployment's money that the server says it settled.
            if let (Some((_, p)), Some((i, a))) = (&sale.purchase, &sale.answer) {
                let Payment::Authorization { domain, transfer } = &p.payment.payment else {
                    continue;
                };
                let ours = domain.chain_id == Some(check.addresses.chain_id)
                    && domain.verifying_contract == Some(token);
                let Some(tx) = a.transaction.filter(|_| ours && is_success(a.status)) else {
                    continue;
                };
                let mut add = |reason: String| findings.add(&j.path, Some(*i), Some(*id), reason);
                let settled = effects(deployment, cache, tx).await?;
                settled_by(settled, tx, transfer, &mut add);
            }
        }
    }
    Ok(())
}

/// Transaction `tx` (its effects `settled`) succeeded, moved exactly `transfer` and
/// used its authorization.
fn settled_by(
    settled: Option<&TxEffects>,
    tx: B256,
    transfer: &wallets::TransferWithAuthorization,
    add: &mut impl FnMut(String),
) {
    if let Some(problem) = tx_problem(settled, tx) {
        add(problem);
        return;
    }
    let wanted = (transfer.from, transfer.to, transfer.value);
    if !has_transfer(settled, wanted) {
        add(no_transfer(tx, wanted));
    }
    let used = (transfer.from, transfer.nonce);
    if !settled.is_some_and(|e| e.authorizations_used.contains(&used)) {
        add(format!(
            "transaction {tx} did not use the x402 payment's authorization (nonce {})",
            transfer.nonce
        ));
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// One line per sale or purchase, sorted by journal and sale id.
pub(super) fn summaries(journals: &[Audited], findings: &Findings) -> Vec<SaleSummary> {
    let mut out = Vec::new();
    for j in journals {
        for (id, sale) in &j.sales.0 {
            let clean = !findings
                .0
                .iter()
                .any(|d| d.journal == j.path && d.agreement == Some(*id));
            let summary = |skill: String, payment: &wallets::SignedPayment, tx, stage: &str| {
                let (buyer, seller) = match &payment.payment {
                    Payment::Authorization { transfer, .. } => (transfer.from, transfer.to),
                    other => (other.payer(), other.beneficiary()),
                };
                SaleSummary {
                    sale: *id,
                    journal: j.path.clone(),
                    skill,
                    buyer,
                    seller,
                    price: payment.payment.amount(),
                    tx_hash: tx,
                    stage: stage.into(),
                    clean,
                }
            };
            if let Some((_, p)) = &sale.payment {
                let stage = if sale.delivery.is_some() {
                    "delivered"
                } else {
                    "paid"
                };
                out.push(summary(
                    p.skill.clone(),
                    &p.payment,
                    p.settlement.tx_hash,
                    stage,
                ));
            }
            if let Some((_, p)) = &sale.purchase {
                let answer = sale.answer.as_ref().map(|(_, a)| a);
                let tx = answer.and_then(|a| a.transaction).unwrap_or_default();
                let stage = if answer.is_some() { "answered" } else { "sent" };
                out.push(summary(p.request.clone(), &p.payment, tx, stage));
            }
        }
    }
    out
}
