//! The audit of x402 sales: a seller's `x402_payment` and `x402_delivery` entries.
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

use std::collections::BTreeMap;

use registry::chain::{Deployment, TxEffects};
use serde::Serialize;
use wallets::{Address, Amount, Payment, B256};

use super::{
    effects, has_transfer, no_transfer, tx_problem, Audited, ChainCheck, Findings, SigCheck,
    SigQueue,
};
use crate::journal::{x402_sale_id, JournalBody, X402DeliveryBody, X402PaymentBody};
use crate::Result;

/// One x402 sale seen in a seller's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleSummary {
    /// The sale's id ([`x402_sale_id`]).
    pub sale: B256,
    /// The seller's journal.
    pub journal: String,
    /// The skill sold.
    pub skill: String,
    /// The buyer (the authorization's payer).
    pub buyer: Address,
    /// The seller (its payee).
    pub seller: Address,
    /// The amount paid, in base units.
    pub price: Amount,
    /// The settling transaction.
    pub tx_hash: B256,
    /// How far it got: `paid` or `delivered`.
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
            other => Some(other),
        }
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
    let network = domain
        .chain_id
        .map(|id| format!("eip155:{id}"))
        .unwrap_or_default();
    if p.network != network {
        add(format!(
            "the sale's network is {:?}, the payment was signed for {network:?}",
            p.network
        ));
    }
}

/// Matches each journal's x402 payments against the chain.
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
            let Some((i, p)) = &sale.payment else {
                continue;
            };
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
            if let Some(problem) = tx_problem(settled, tx) {
                add(problem);
                continue;
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
    }
    Ok(())
}

/// One line per sale, sorted by journal and sale id.
pub(super) fn summaries(journals: &[Audited], findings: &Findings) -> Vec<SaleSummary> {
    let mut out = Vec::new();
    for j in journals {
        for (id, sale) in &j.sales.0 {
            let Some((_, p)) = &sale.payment else {
                continue;
            };
            let (buyer, seller) = match &p.payment.payment {
                Payment::Authorization { transfer, .. } => (transfer.from, transfer.to),
                _ => (p.payment.payment.payer(), p.payment.payment.beneficiary()),
            };
            let clean = !findings
                .0
                .iter()
                .any(|d| d.journal == j.path && d.agreement == Some(*id));
            out.push(SaleSummary {
                sale: *id,
                journal: j.path.clone(),
                skill: p.skill.clone(),
                buyer,
                seller,
                price: p.payment.payment.amount(),
                tx_hash: p.settlement.tx_hash,
                stage: if sale.delivery.is_some() {
                    "delivered"
                } else {
                    "paid"
                }
                .into(),
                clean,
            });
        }
    }
    out
}
