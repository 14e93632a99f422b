//! The buyer's side: [`AttestationCheck`].

use std::sync::Arc;

use async_trait::async_trait;
use negotiation::{result_hash, DeliveryCheck, DeliveryToCheck};
use registry::discovery::Discovery;
use wallets::{keccak256, B256};

use super::task::{InferenceKind, InferenceTask};
use super::wire::{inference_result, AttestedInference};
use crate::attestation::attestation_domain;
use crate::engine::LlmEngine;
use crate::grammar::GrammarLimits;
use crate::Error;

/// A buyer's [`DeliveryCheck`] for `llm.complete` and `llm.extract` deliveries
/// (other kinds pass unchecked).
///
/// It refuses (and so disputes) a delivery unless:
/// 1. its attestation is an [`AttestedInference`] whose signature, in the
///    [`attestation_domain`] of the agreement's chain, recovers to the seller the buyer
///    dealt with;
/// 2. the record's hashes are the attested ones ([`crate::InferenceRecord::check`]),
///    and the result is [`inference_result`] of the record;
/// 3. the attested model is the one the seller is registered with in the
///    `AgentRegistry`, and neither that model nor the seller is suspended there (read
///    through a [`Discovery`] cache, synced before each check);
/// 4. the record's prompt, sampling parameters (seed included) and grammar are those
///    of the task the buyer sent ([`InferenceTask::request`]), when the buyer knows
///    the task (see [`DeliveryToCheck::task`]);
/// 5. with a local engine of the same model ([`AttestationCheck::with_rerun`]): the
///    prompt renders to the record's text, and for a share of the jobs a re-run
///    ([`LlmEngine::verify`], alone) gives the same output.
///
/// Which jobs are re-run is decided by the delivery's id (the agreement hash, or a
/// channel order's id), not by chance, so a run can be reproduced: a job is re-run
/// when the first eight bytes of `keccak256("agora.spot-check.v1" ‖ id)`, as a
/// fraction of 2⁶⁴, are below the share (a share of 1 re-runs every job, 0 none).
#[derive(Debug, Clone)]
pub struct AttestationCheck {
    registry: Arc<Discovery>,
    sync: Arc<tokio::sync::Mutex<()>>,
    rerun: Option<(Arc<LlmEngine>, f64)>,
}

impl AttestationCheck {
    /// Checks against the registry that `registry` caches (it is synced before each
    /// check).
    pub fn new(registry: Arc<Discovery>) -> Self {
        Self {
            registry,
            sync: Arc::default(),
            rerun: None,
        }
    }

    /// Re-runs `share` (clamped to 0..=1) of the jobs made with `engine`'s model on
    /// `engine`.
    #[must_use]
    pub fn with_rerun(mut self, engine: Arc<LlmEngine>, share: f64) -> Self {
        let share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self.rerun = Some((engine, share));
        self
    }

    /// Whether the job delivered under `id` is re-run at `share`.
    pub fn spot_checked(id: B256, share: f64) -> bool {
        let mut seed = b"agora.spot-check.v1".to_vec();
        seed.extend_from_slice(id.as_bytes());
        let h = keccak256(seed);
        let mut first = [0u8; 8];
        first.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0; 8]));
        let x = u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0;
        share >= 1.0 || x < share
    }

    /// The problem with the seller's registration, if any.
    async fn registry_problem(
        &self,
        seller: wallets::Address,
        model: [u8; 32],
    ) -> negotiation::Result<Option<String>> {
        {
            let _one = self.sync.lock().await;
            self.registry.sync().await.map_err(|e| {
                negotiation::Error::DeliveryCheck(format!("syncing the registry: {e}"))
            })?;
        }
        let read = |e: registry::discovery::DiscoveryError| {
            negotiation::Error::DeliveryCheck(format!("reading the registry: {e}"))
        };
        let Some(agent) = self.registry.agent_at(seller).map_err(read)? else {
            return Ok(Some(format!(
                "the seller {seller} is not registered, so its model is unknown"
            )));
        };
        if agent.model_fingerprint != model {
            return Ok(Some(format!(
                "the attested model {} is not the seller's registered model {}",
                B256(model),
                B256(agent.model_fingerprint)
            )));
        }
        if agent.suspended {
            return Ok(Some(format!("the seller {seller} is suspended")));
        }
        if self.registry.model_suspended(&model).map_err(read)? {
            return Ok(Some(format!("the model {} is suspended", B256(model))));
        }
        Ok(None)
    }
}

/// What a delivery's attested inference gets wrong before any re-run: not an
/// attested inference, a signature that is not the seller's, hashes or a result that
/// do not match the record, a record that is not the task. Shared by the buyer's
/// check and the arbiter.
pub(crate) fn record_problem(
    d: &DeliveryToCheck<'_>,
    engine: Option<&LlmEngine>,
) -> Result<AttestedInference, String> {
    let Some(value) = &d.delivery.attestation else {
        return Err("the delivery carries no inference attestation".into());
    };
    let attested = AttestedInference::from_value(value)
        .map_err(|e| format!("the inference attestation is malformed: {e}"))?
        .ok_or("the delivery's attestation is not an inference attestation")?;
    let domain = attestation_domain(Some(d.agreement.chain_id));
    attested
        .signed
        .verify_record(&domain, &attested.record, Some(d.seller()))
        .map_err(|e| format!("the inference attestation: {e}"))?;
    if result_hash(&inference_result(&attested.record)) != d.delivery.result_hash {
        return Err("the result is not the attested record's output".into());
    }
    if let Some(task) = d.task {
        let task = InferenceTask::parse(task).map_err(|e| format!("the task: {e}"))?;
        let expected = task.request(GrammarLimits::default())?;
        let r = &attested.record;
        if r.prompt != expected.prompt {
            return Err("the attested prompt is not the task's".into());
        }
        if r.params != expected.params {
            return Err(format!(
                "the attested sampling parameters {:?} are not the task's {:?}",
                r.params, expected.params
            ));
        }
        if r.grammar.as_deref() != expected.grammar.as_ref().map(|g| g.as_str()) {
            return Err("the attested grammar is not the task's schema's".into());
        }
    }
    if let Some(engine) = engine.filter(|e| e.fingerprint() == attested.record.model) {
        let rendered = engine
            .render(&attested.record.prompt)
            .map_err(|e| format!("the attested prompt does not render: {e}"))?;
        if rendered != attested.record.prompt_text {
            return Err("the attested prompt text is not the prompt's rendering".into());
        }
    }
    Ok(attested)
}

#[async_trait]
impl DeliveryCheck for AttestationCheck {
    async fn check(&self, d: DeliveryToCheck<'_>) -> negotiation::Result<Option<String>> {
        if InferenceKind::from_kind(&d.agreement.kind).is_none() {
            return Ok(None);
        }
        let engine = self.rerun.as_ref().map(|(e, _)| e.as_ref());
        let attested = match record_problem(&d, engine) {
            Ok(a) => a,
            Err(problem) => return Ok(Some(problem)),
        };
        let model = attested.record.model;
        if let Some(problem) = self.registry_problem(d.seller(), *model.as_bytes()).await? {
            return Ok(Some(problem));
        }
        let Some((engine, share)) = &self.rerun else {
            return Ok(None);
        };
        if engine.fingerprint() != model || !Self::spot_checked(d.delivery.agreement, *share) {
            return Ok(None);
        }
        let domain = attestation_domain(Some(d.agreement.chain_id));
        match engine
            .verify(
                &domain,
                &attested.record,
                &attested.signed,
                Some(d.seller()),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(target: "skill::llm", delivery = %d.delivery.agreement,
                    "the re-run matches the attested inference");
                Ok(None)
            }
            Err(Error::AttestationMismatch {
                field,
                attested,
                actual,
            }) => Ok(Some(format!(
                "the re-run does not match the attested inference: {field} attested {attested}, re-run {actual}"
            ))),
            Err(e) => Err(negotiation::Error::DeliveryCheck(format!("re-running: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spot_check_is_a_deterministic_share_of_the_jobs() {
        let ids: Vec<B256> = (0u32..2_000).map(|i| keccak256(i.to_be_bytes())).collect();
        let picked = |share: f64| {
            ids.iter()
                .filter(|id| AttestationCheck::spot_checked(**id, share))
                .count()
        };
        assert_eq!(picked(0.0), 0);
        assert_eq!(picked(1.0), ids.len());
        let quarter = picked(0.25);
        assert!((400..600).contains(&quarter), "{quarter}");
        // The same jobs every time, and a larger share keeps the smaller one's.
        assert_eq!(picked(0.25), quarter);
        assert!(ids
            .iter()
            .filter(|id| AttestationCheck::spot_checked(**id, 0.25))
            .all(|id| AttestationCheck::spot_checked(*id, 0.5)));
    }
}
