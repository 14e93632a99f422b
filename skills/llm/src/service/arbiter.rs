//! The escrow arbiter's side: [`InferenceArbiter`] rules on disputed escrows of
//! inference jobs by re-running them.

use std::path::Path;
use std::sync::Arc;

use negotiation::journal::JournalBody;
use negotiation::{
    escrow_id_of, escrow_job_id, negotiation_domain, task_hash, Deliver, DeliveryToCheck,
    EscrowState, PaymentMode, SignedAgreement,
};
use registry::chain::{Deployment, Mined};
use wallets::{Amount, Eip712, B256};

use super::check::record_problem;
use crate::attestation::attestation_domain;
use crate::engine::LlmEngine;
use crate::{Error, Result};

/// What the arbiter has to rule on: the agreement both parties signed, the task whose
/// hash it names, and the delivery the buyer disputed. Every piece carries its own
/// proof (both signatures on the agreement, the task hash, the seller's signature on
/// the delivery and the result hash it recorded in the escrow), so it may come from
/// either party.
#[derive(Debug, Clone, PartialEq)]
pub struct DisputedInference {
    /// The agreement.
    pub agreement: SignedAgreement,
    /// The task text.
    pub task: String,
    /// The disputed delivery.
    pub delivery: Deliver,
}

impl DisputedInference {
    /// The evidence of the dispute of `agreement_hash` in a buyer's journal: its
    /// `acceptance`, the `cfp` of its dialogue and its `dispute`.
    ///
    /// # Errors
    /// [`Error::Config`] when the journal cannot be read or lacks one of the three.
    pub fn from_buyer_journal(path: &Path, agreement_hash: B256) -> Result<Self> {
        let entries = wallets::journal::read_entries(path)?;
        let (mut agreement, mut calls, mut delivery) = (None, Vec::new(), None);
        for entry in &entries {
            match JournalBody::from_entry(entry) {
                Ok(JournalBody::Acceptance(a)) if a.agreement_hash == agreement_hash => {
                    agreement = Some(a.agreement);
                }
                Ok(JournalBody::Cfp(c)) => calls.push((c.dialogue, c.call.task)),
                Ok(JournalBody::Dispute(d)) if d.agreement_hash == agreement_hash => {
                    delivery = d.delivery.or(delivery);
                }
                _ => {}
            }
        }
        let missing = |what: &str| {
            Error::Config(format!(
                "{}: no {what} for agreement {agreement_hash}",
                path.display()
            ))
        };
        let agreement: SignedAgreement = agreement.ok_or_else(|| missing("acceptance"))?;
        let task = calls
            .into_iter()
            .find(|(d, _)| *d == agreement.agreement.dialogue)
            .map(|(_, t)| t)
            .ok_or_else(|| missing("call for proposals"))?;
        let delivery = delivery.ok_or_else(|| missing("disputed delivery"))?;
        Ok(Self {
            agreement,
            task,
            delivery,
        })
    }

    /// The escrow of the agreement.
    pub fn escrow_id(&self) -> B256 {
        let a = &self.agreement.agreement;
        escrow_id_of(a.buyer, escrow_job_id(&a.hash()))
    }
}

/// How the arbiter rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// The seller delivered what it was paid for (its attested inference re-runs to
    /// the same output): it is paid in full.
    PaySeller,
    /// The seller did not (no valid attestation, a result that is not the attested
    /// output, a record that is not the task, or a re-run that differs): the buyer is
    /// refunded in full.
    RefundBuyer {
        /// Why.
        reason: String,
    },
}

/// A ruling carried out on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The escrow.
    pub escrow_id: B256,
    /// The ruling.
    pub ruling: Ruling,
    /// What went back to the buyer (the rest went to the seller).
    pub to_buyer: Amount,
    /// The `resolveDispute` transaction.
    pub settlement: Mined,
}

/// The `JobEscrow` arbiter for inference jobs: re-runs a disputed job's attested
/// inference (alone, [`LlmEngine::verify`]) with its own copy of the model and rules
/// `resolveDispute(escrowId, toBuyer)`: the whole amount back to the buyer on a
/// proven mismatch, nothing back (the seller paid) when the re-run matches.
#[derive(Debug, Clone)]
pub struct InferenceArbiter {
    engine: Arc<LlmEngine>,
    deployment: Deployment,
}

impl InferenceArbiter {
    /// An arbiter re-running on `engine` and ruling through `deployment` (whose
    /// client must be the escrow's arbiter).
    pub fn new(engine: Arc<LlmEngine>, deployment: Deployment) -> Self {
        Self { engine, deployment }
    }

    /// Rules on `dispute` without acting on it.
    ///
    /// # Errors
    /// [`Error::Config`] when the evidence does not hold together (signatures, task
    /// hash, an escrow that is not disputed or records another result) or the job
    /// was made with another model than the arbiter's, or the node fails; the engine's
    /// errors of the re-run (other than a mismatch, which is a ruling).
    pub async fn rule(&self, dispute: &DisputedInference) -> Result<Ruling> {
        let bad = |why: String| Error::Config(format!("the dispute's evidence: {why}"));
        let a = &dispute.agreement.agreement;
        dispute
            .agreement
            .verify()
            .map_err(|e| bad(format!("the agreement's signatures: {e}")))?;
        if a.mode != PaymentMode::Escrow {
            return Err(bad(format!(
                "the agreement is paid by {}, not escrow",
                a.mode
            )));
        }
        if task_hash(&dispute.task) != a.task_hash {
            return Err(bad("the task is not the agreement's".into()));
        }
        let d = &dispute.delivery;
        if d.agreement != a.hash() {
            return Err(bad("the delivery is for another agreement".into()));
        }
        d.signature
            .verify(
                &d.delivery().signing_hash(&negotiation_domain(a.chain_id)),
                a.seller,
            )
            .map_err(|e| bad(format!("the delivery's signature: {e}")))?;
        let job = self
            .deployment
            .escrow_job(dispute.escrow_id())
            .await
            .map_err(|e| Error::Config(format!("reading the escrow: {e}")))?;
        if job.state != EscrowState::Disputed {
            return Err(bad(format!("the escrow is {:?}, not disputed", job.state)));
        }
        if job.seller != a.seller || job.buyer != a.buyer || job.result_hash != d.result_hash {
            return Err(bad(
                "the escrow records other parties or another result".into()
            ));
        }
        // The seller is bound to this delivery; from here on, what is wrong with it
        // is the seller's fault.
        let check = DeliveryToCheck {
            dialogue: a.dialogue,
            agreement: a,
            task: Some(&dispute.task),
            delivery: d,
        };
        let attested = match record_problem(&check, Some(&self.engine)) {
            Ok(attested) => attested,
            Err(reason) => return Ok(Ruling::RefundBuyer { reason }),
        };
        if attested.record.model != self.engine.fingerprint() {
            return Err(Error::Config(format!(
                "the job ran on model {}; the arbiter holds {}",
                attested.record.model,
                self.engine.fingerprint()
            )));
        }
        let domain = attestation_domain(Some(a.chain_id));
        match self
            .engine
            .verify(&domain, &attested.record, &attested.signed, Some(a.seller))
            .await
        {
            Ok(_) => Ok(Ruling::PaySeller),
            Err(Error::AttestationMismatch {
                field,
                attested,
                actual,
            }) => Ok(Ruling::RefundBuyer {
                reason: format!(
                    "the re-run does not match the attested inference: {field} attested {attested}, re-run {actual}"
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// Rules on `dispute` ([`InferenceArbiter::rule`]) and carries the ruling out with
    /// `resolveDispute`.
    ///
    /// # Errors
    /// As [`InferenceArbiter::rule`], and [`Error::Config`] when the transaction
    /// fails (the dispute window has closed, the client is not the arbiter).
    pub async fn resolve(&self, dispute: &DisputedInference) -> Result<Resolution> {
        let ruling = self.rule(dispute).await?;
        let escrow_id = dispute.escrow_id();
        let to_buyer = match &ruling {
            Ruling::PaySeller => Amount::ZERO,
            Ruling::RefundBuyer { .. } => {
                self.deployment
                    .escrow_job(escrow_id)
                    .await
                    .map_err(|e| Error::Config(format!("reading the escrow: {e}")))?
                    .amount
            }
        };
        let settlement = self
            .deployment
            .resolve_escrow_dispute(escrow_id, to_buyer)
            .await
            .map_err(|e| Error::Config(format!("resolving the dispute: {e}")))?;
        tracing::info!(target: "skill::llm", escrow = %escrow_id, ?ruling, %to_buyer,
            tx = %settlement.tx_hash, "inference dispute resolved");
        Ok(Resolution {
            escrow_id,
            ruling,
            to_buyer,
            settlement,
        })
    }
}
