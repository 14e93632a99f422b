//! The auditor's side: re-running the attested inferences that payment journals keep
//! (`agora audit --model`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use negotiation::audit::{audit_with, AttestationAudit, AttestedDelivery, AuditReport, ChainCheck};
use negotiation::result_hash;
use wallets::{Eip712, B256};

use super::wire::{inference_result, AttestedInference};
use crate::attestation::attestation_domain;
use crate::engine::LlmEngine;
use crate::Error;

/// An [`AttestationAudit`] that checks every [`AttestedInference`] a delivery entry
/// keeps and re-runs it on its engine: the signature recovers to the deal's seller,
/// the hashes are the record's, the delivered result is the record's output, and a
/// re-run alone ([`LlmEngine::verify`]) gives the attested output. Each problem names
/// the field (`signer`, `modelFingerprint`, `promptHash`, `samplingHash`,
/// `outputHash`, `result`). Attestations of other kinds, and inferences made with
/// another model than the engine's, are left alone (counted as such in the report).
///
/// An inference found in several journals (the buyer's and the seller's) is re-run
/// once.
#[derive(Debug)]
pub struct InferenceAudit {
    engine: Arc<LlmEngine>,
    reruns: tokio::sync::Mutex<HashMap<B256, Option<String>>>,
}

impl InferenceAudit {
    /// Re-runs on `engine`.
    pub fn new(engine: Arc<LlmEngine>) -> Self {
        Self {
            engine,
            reruns: tokio::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl AttestationAudit for InferenceAudit {
    fn name(&self) -> String {
        "inference re-run".into()
    }

    async fn check(&self, d: &AttestedDelivery<'_>) -> negotiation::Result<Option<Vec<String>>> {
        let attested = match AttestedInference::from_value(d.attestation) {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(vec![format!("malformed attestation: {e}")])),
        };
        let (record, signed) = (&attested.record, &attested.signed);
        if record.model != self.engine.fingerprint() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let domain = attestation_domain(Some(d.chain_id));
        if let Err(e) = signed.verify_record(&domain, record, Some(d.seller)) {
            problems.push(mismatch(e));
            return Ok(Some(problems));
        }
        if result_hash(&inference_result(record)) != d.result_hash {
            problems.push(format!(
                "result: the delivered result {} is not the attested output's {}",
                d.result_hash,
                result_hash(&inference_result(record))
            ));
        }
        let key = signed.attestation.signing_hash(&domain);
        let mut reruns = self.reruns.lock().await;
        let outcome = match reruns.get(&key) {
            Some(outcome) => outcome.clone(),
            None => {
                let outcome = match self
                    .engine
                    .verify(&domain, record, signed, Some(d.seller))
                    .await
                {
                    Ok(_) => None,
                    Err(e @ Error::AttestationMismatch { .. }) => Some(mismatch(e)),
                    Err(e) => {
                        return Err(negotiation::Error::Config(format!(
                            "re-running the inference of {}#{}: {e}",
                            d.journal, d.entry
                        )))
                    }
                };
                reruns.insert(key, outcome.clone());
                outcome
            }
        };
        problems.extend(outcome);
        Ok(Some(problems))
    }
}

/// `field: attested …, actual …` of a mismatch, or the error's text.
fn mismatch(e: Error) -> String {
    match e {
        Error::AttestationMismatch {
            field,
            attested,
            actual,
        } => format!("{field}: attested {attested}, re-run or recomputed {actual}"),
        other => other.to_string(),
    }
}

/// Audits `journals` ([`negotiation::audit::audit`], with the chain when given) and
/// re-runs every attested inference in their delivery entries on `engine`
/// ([`InferenceAudit`]).
///
/// # Errors
/// As [`negotiation::audit::audit_with`]; a re-run that fails (not one that differs)
/// is an error.
pub async fn rerun_journals(
    journals: &[PathBuf],
    chain: Option<&ChainCheck>,
    engine: Arc<LlmEngine>,
) -> negotiation::Result<AuditReport> {
    let audit = InferenceAudit::new(engine);
    audit_with(journals, chain, Some(&audit)).await
}
