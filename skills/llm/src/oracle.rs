//! The off-chain side of the `InferenceOracle` (see `registry::chain` and the contract's
//! docs): fulfilling requests with this engine and signed attestations, and re-running
//! fulfilments to challenge them or to rule on a challenge.
//!
//! A request names the model fingerprint, the exact prompt text the model reads, the
//! sampling hash, and the sampling itself as bytes: an [`OracleSampling`] as JSON
//! (`{"params": …, "grammar": …, "specVersion": 2}`), whose [`OracleSampling::hash`] must
//! be the request's sampling hash. Every run here decodes alone
//! ([`crate::Isolation::Alone`]), so that a re-run on another machine of the same
//! backend and build gives the same bytes (see the crate docs on determinism).
//!
//! With the `oracle` feature:
//! - [`OracleFulfiller`] serves the requests for its engine's model: it reads them from
//!   the chain's logs, runs each under its sampling, signs the attestation with the
//!   agent's wallet and fulfils it; a prompt given by hash and URI is fetched with a
//!   [`PromptFetch`] (`data:`, public `http(s)://` hosts, `ipfs://` through a
//!   gateway) and must hash to the request's prompt hash;
//! - [`check_fulfilment`] re-runs a fulfilled request and compares its output hash, for
//!   a challenger, and [`rule_on_challenge`] does the same for the registry's governor
//!   and records the ruling.

use serde::{Deserialize, Serialize};
use wallets::B256;

use crate::sampling::{SamplingParams, SpecVersion};

/// The sampling of an oracle request: what its `sampling` bytes carry, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OracleSampling {
    /// The sampling parameters, seed and token limit included.
    pub params: SamplingParams,
    /// The GBNF grammar the output is held to, if any.
    #[serde(default)]
    pub grammar: Option<String>,
    /// The sampling spec version the hash is computed at.
    pub spec_version: SpecVersion,
}

impl OracleSampling {
    /// `params` and `grammar` at this build's spec version.
    pub fn new(params: SamplingParams, grammar: Option<String>) -> Self {
        Self {
            params,
            grammar,
            spec_version: SpecVersion::CURRENT,
        }
    }

    /// The sampling hash a request names and attestations carry.
    pub fn hash(&self) -> B256 {
        self.params
            .hash_with_grammar_at(self.spec_version, self.grammar.as_deref())
    }

    /// The bytes a request carries (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of numbers, a string and a version serializes without fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a request's sampling bytes.
    ///
    /// # Errors
    /// A message saying what is wrong with them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes)
            .map_err(|e| format!("the sampling is not an Agora sampling spec as JSON: {e}"))
    }
}

#[cfg(feature = "oracle")]
pub use crate::prompt_fetch::{PromptFetch, IPFS_GATEWAY_ENV, MAX_PROMPT_FETCH_BYTES};
#[cfg(feature = "oracle")]
pub use agent::{
    check_fulfilment, rule_on_challenge, OracleError, OracleFulfiller, OracleOutcome, Verdict,
};

#[cfg(feature = "oracle")]
mod agent {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use registry::chain::{
        self, ChainError, Deployment, InferenceRequestDetails, Mined, OracleStatus,
    };
    use wallets::{keccak256, Wallet, B256};

    use super::OracleSampling;
    use crate::attestation::attestation_domain;
    use crate::engine::{GenerationRequest, Isolation, LlmEngine};
    use crate::generation::Completion;
    use crate::prompt_fetch::PromptFetch;
    use crate::sampling::{Prompt, SpecVersion};

    /// Most output bytes the oracle stores on chain (`InferenceOracle.MAX_OUTPUT`).
    const MAX_OUTPUT: usize = 8_192;

    /// What can stop oracle work.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum OracleError {
        /// The chain could not be read or a transaction failed.
        #[error(transparent)]
        Chain(#[from] ChainError),
        /// The request cannot be run here, and why.
        #[error("request {id}: {reason}")]
        Request {
            /// The request id.
            id: u64,
            /// Why.
            reason: String,
        },
    }

    /// What [`OracleFulfiller::poll`] did with one request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum OracleOutcome {
        /// Fulfilled with `output`.
        Fulfilled {
            /// The request id.
            id: u64,
            /// The output given.
            output: String,
            /// The fulfilment transaction.
            tx: Mined,
        },
        /// Left alone, and why (not runnable here, already fulfilled, expired, or the
        /// fulfilment reverted).
        Skipped {
            /// The request id.
            id: u64,
            /// Why.
            reason: String,
        },
    }

    /// A re-run's verdict on a fulfilment.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Verdict {
        /// The re-run gave the fulfilled output.
        Matches {
            /// Its hash.
            output_hash: B256,
        },
        /// The re-run gave something else.
        Mismatch {
            /// The fulfilled output's hash.
            fulfilled: B256,
            /// The re-run's output.
            rerun_output: String,
            /// Its hash.
            rerun_output_hash: B256,
        },
    }

    /// Serves oracle requests for its engine's model as one agent: the wallet must be
    /// an agent registered in the `AgentRegistry` with that model (and staked as the
    /// oracle asks).
    #[derive(Debug)]
    pub struct OracleFulfiller {
        engine: Arc<LlmEngine>,
        wallet: Arc<Wallet>,
        contracts: Deployment,
        next_block: u64,
        /// Requests seen whose fulfilment failed for a reason that may pass (the node).
        retry: BTreeMap<u64, InferenceRequestDetails>,
        /// How prompts given by URI are fetched.
        fetch: PromptFetch,
    }

    impl OracleFulfiller {
        /// A fulfiller that reads requests from block `from_block` on (the
        /// deployment's `deployed_at` to serve every request still open).
        pub fn new(
            engine: Arc<LlmEngine>,
            wallet: Arc<Wallet>,
            contracts: Deployment,
            from_block: u64,
        ) -> Self {
            Self {
                engine,
                wallet,
                contracts,
                next_block: from_block,
                retry: BTreeMap::new(),
                fetch: PromptFetch::new(),
            }
        }

        /// Fetches the prompts of requests made by hash and URI with `fetch` (default:
        /// [`PromptFetch::new`]).
        #[must_use]
        pub fn with_prompt_fetch(mut self, fetch: PromptFetch) -> Self {
            self.fetch = fetch;
            self
        }

        /// Runs and fulfils every open request for the engine's model made since the
        /// last poll (and those whose fulfilment failed at the node before), in the
        /// order they were made.
        ///
        /// # Errors
        /// [`OracleError::Chain`] when the requests cannot be read; problems with one
        /// request are [`OracleOutcome::Skipped`].
        pub async fn poll(&mut self) -> Result<Vec<OracleOutcome>, OracleError> {
            let model = self.engine.fingerprint().to_b256();
            let client = self.contracts.inference_oracle.client();
            let head = self.contracts.block_number().await?;
            let mut todo = std::mem::take(&mut self.retry);
            if self.next_block <= head {
                for d in self
                    .contracts
                    .inference_requests(Some(model), self.next_block)
                    .await?
                {
                    todo.insert(d.id, d);
                }
                self.next_block = head + 1;
            }
            let domain = attestation_domain(Some(chain::chain_id_of(&client)));
            let mut outcomes = Vec::with_capacity(todo.len());
            for (id, details) in todo {
                let skipped = |reason: String| OracleOutcome::Skipped { id, reason };
                let state = self.contracts.inference_request(id).await?;
                if state.status != OracleStatus::Open {
                    outcomes.push(skipped(format!("it is {:?}", state.status)));
                    continue;
                }
                if chain::chain_time(&client).await? > state.deadline {
                    outcomes.push(skipped("its deadline has passed".to_owned()));
                    continue;
                }
                let completion = match run(&self.engine, &details, &self.fetch).await {
                    Ok(c) => c,
                    Err(reason) => {
                        outcomes.push(skipped(reason));
                        continue;
                    }
                };
                let signed = match completion.attest(&self.wallet, &domain) {
                    Ok(s) => s,
                    Err(e) => {
                        outcomes.push(skipped(format!("signing the attestation: {e}")));
                        continue;
                    }
                };
                let output = completion.text().to_owned();
                match self
                    .contracts
                    .fulfil_inference(id, output.as_bytes(), &signed.signature)
                    .await
                {
                    Ok(tx) => {
                        tracing::info!(target: "skill::llm::oracle", id, tx = %tx.tx_hash, "fulfilled");
                        outcomes.push(OracleOutcome::Fulfilled { id, output, tx });
                    }
                    Err(e @ ChainError::Node { .. }) => {
                        tracing::warn!(target: "skill::llm::oracle", id, error = %e, "fulfilment failed; will retry");
                        self.retry.insert(id, details);
                        outcomes.push(skipped(format!("{e} (will retry)")));
                    }
                    Err(e) => outcomes.push(skipped(e.to_string())),
                }
            }
            Ok(outcomes)
        }
    }

    /// Runs request `d` on `engine` as the oracle expects: the prompt text as is (given
    /// by URI: fetched with `fetch`), under its sampling, decoded alone. The error
    /// says why it cannot run here.
    async fn run(
        engine: &LlmEngine,
        d: &InferenceRequestDetails,
        fetch: &PromptFetch,
    ) -> Result<Completion, String> {
        let mine = engine.fingerprint().to_b256();
        if d.model != mine {
            return Err(format!(
                "it asks for model {}, this engine runs {mine}",
                d.model
            ));
        }
        let prompt = if d.prompt.is_empty() {
            fetch
                .fetch(&d.prompt_uri)
                .await
                .map_err(|e| format!("its prompt at {:?}: {e}", d.prompt_uri))?
        } else {
            d.prompt.clone()
        };
        let text =
            String::from_utf8(prompt).map_err(|e| format!("its prompt is not UTF-8 text: {e}"))?;
        if keccak256(text.as_bytes()) != d.prompt_hash {
            return Err("its prompt does not hash to its prompt hash".to_owned());
        }
        let sampling = OracleSampling::from_bytes(&d.sampling)?;
        if sampling.hash() != d.sampling_hash {
            return Err(format!(
                "its sampling hashes to {}, not to its sampling hash {}",
                sampling.hash(),
                d.sampling_hash
            ));
        }
        if sampling.spec_version != SpecVersion::CURRENT {
            return Err(format!(
                "its sampling spec version {} is not this build's ({})",
                sampling.spec_version.number(),
                SpecVersion::CURRENT.number()
            ));
        }
        let mut request = GenerationRequest::new(Prompt::Text(text))
            .with_params(sampling.params)
            .with_isolation(Isolation::Alone);
        if let Some(grammar) = sampling.grammar {
            request = request.with_grammar(grammar);
        }
        let completion = engine
            .generate(request)
            .await
            .map_err(|e| format!("running it: {e}"))?;
        if completion.text().len() > MAX_OUTPUT {
            return Err(format!(
                "its output is {} bytes, more than the {MAX_OUTPUT} the oracle stores",
                completion.text().len()
            ));
        }
        Ok(completion)
    }

    /// Re-runs fulfilled (or challenged) request `id` on `engine` and compares the
    /// output hash with the fulfilled one. Requests are looked up from block
    /// `from_block` on; a prompt given by URI is fetched with `fetch`.
    ///
    /// # Errors
    /// [`OracleError::Request`] when the request is not fulfilled, is for another
    /// model, or cannot run here; [`OracleError::Chain`] when the chain cannot be read.
    pub async fn check_fulfilment(
        engine: &LlmEngine,
        contracts: &Deployment,
        from_block: u64,
        id: u64,
        fetch: &PromptFetch,
    ) -> Result<Verdict, OracleError> {
        let state = contracts.inference_request(id).await?;
        if !matches!(
            state.status,
            OracleStatus::Fulfilled | OracleStatus::Challenged
        ) {
            return Err(OracleError::Request {
                id,
                reason: format!("it is {:?}, not fulfilled", state.status),
            });
        }
        let details = contracts
            .inference_request_details(id, from_block)
            .await?
            .ok_or_else(|| OracleError::Request {
                id,
                reason: format!("no Requested event from block {from_block} on"),
            })?;
        let rerun = run(engine, &details, fetch)
            .await
            .map_err(|reason| OracleError::Request { id, reason })?;
        let rerun_output_hash = keccak256(rerun.text().as_bytes());
        Ok(if rerun_output_hash == state.output_hash {
            Verdict::Matches {
                output_hash: rerun_output_hash,
            }
        } else {
            Verdict::Mismatch {
                fulfilled: state.output_hash,
                rerun_output: rerun.text().to_owned(),
                rerun_output_hash,
            }
        })
    }

    /// The governor's ruling on challenged request `id`: re-runs it on `engine`
    /// ([`check_fulfilment`]) and upholds the challenge on a mismatch. `contracts`
    /// must be bound to the governor's client. Returns whether it was upheld.
    ///
    /// # Errors
    /// As [`check_fulfilment`]; [`OracleError::Chain`] when the ruling reverts (not the
    /// governor, the time to rule has passed).
    pub async fn rule_on_challenge(
        engine: &LlmEngine,
        contracts: &Deployment,
        from_block: u64,
        id: u64,
        fetch: &PromptFetch,
    ) -> Result<(bool, Mined), OracleError> {
        let (upheld, reason) = match check_fulfilment(engine, contracts, from_block, id, fetch).await? {
            Verdict::Matches { output_hash } => (
                false,
                format!("the reference re-run gave the fulfilled output ({output_hash})"),
            ),
            Verdict::Mismatch {
                fulfilled,
                rerun_output_hash,
                ..
            } => (
                true,
                format!(
                    "the reference re-run gave output {rerun_output_hash}, not the fulfilled {fulfilled}"
                ),
            ),
        };
        let tx = contracts
            .resolve_inference_challenge(id, upheld, &reason)
            .await?;
        Ok((upheld, tx))
    }
}
