//! Verified inference on chain, in wallet types: model provenance (`ModelRegistry`) and
//! the `InferenceOracle` (requests, fulfilments with an agent's signed attestation,
//! challenges ruled on by the registry's governor).
//!
//! The oracle checks an attestation in Agora's own EIP-712 domain ("Agora Inference",
//! version "1", the chain id, no verifying contract), so the signature an agent attaches
//! to an off-chain delivery fulfils a request here unchanged; the `llm` crate makes and
//! checks those signatures.
//!
//! Fees, challenge bonds and stake are pulled with `transferFrom`, as contracts pay
//! them (a consumer contract approves the oracle in Solidity). From an account, approve
//! first with a wallet you control (`cast send <token> "approve(address,uint256)"
//! <spender> <amount>`): an Agora wallet signs no ERC-20 approval, since every payment it
//! makes goes through its spending policy. These are operator actions (a dApp, a
//! governor's tool, an operator staking its agent), not payments an agent makes for a
//! principal.

use ethers::contract::EthLogDecode;
use ethers::providers::Middleware;
use ethers::types::{Bytes, H256, U256 as EU256};

use super::bindings::inference_oracle::{
    InferenceOracleEvents, RequestDetailsFilter, RequestedFilter,
};
use super::{contract_error, ea, mined, mined_of, receipt, ChainError, Deployment, Mined};

/// Blocks read per `eth_getLogs` call when listing requests.
const LOG_CHUNK: u64 = 2_000;

/// A model's provenance, as `agora model register` anchors it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelProvenance {
    /// The model's name (not empty).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where to get the file.
    pub uri: String,
    /// Hashes of the datasets it was trained or tuned on.
    pub dataset_hashes: Vec<wallets::B256>,
}

/// A registered model: its fingerprint, who anchored it and when, and its provenance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    /// SHA-256 of the model file.
    pub fingerprint: wallets::B256,
    /// Who registered it.
    pub publisher: wallets::Address,
    /// Block timestamp of the registration.
    pub registered_at: u64,
    /// What the publisher said about it.
    #[serde(flatten)]
    pub provenance: ModelProvenance,
}

/// Where an oracle request stands (`InferenceOracle.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OracleStatus {
    /// Waiting for a fulfilment until its deadline.
    Open,
    /// Fulfilled; challengeable until the window closes.
    Fulfilled,
    /// Challenged; waiting for the governor's ruling.
    Challenged,
    /// Final: the fulfiller was paid.
    Final,
    /// A challenge proved the output wrong: refunded, slashed, model suspended.
    Overturned,
    /// Expired unfulfilled; the fee went back.
    Refunded,
}

impl OracleStatus {
    fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Open,
            2 => Self::Fulfilled,
            3 => Self::Challenged,
            4 => Self::Final,
            5 => Self::Overturned,
            6 => Self::Refunded,
            _ => return None,
        })
    }
}

/// An oracle request as the contract holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceRequest {
    /// The request id.
    pub id: u64,
    /// Who asked and paid.
    pub requester: wallets::Address,
    /// Where it stands.
    pub status: OracleStatus,
    /// Last second a fulfilment is accepted.
    pub deadline: u64,
    /// The agent whose attestation fulfilled it.
    pub fulfiller: Option<wallets::Address>,
    /// When it was fulfilled (0 if not).
    pub fulfilled_at: u64,
    /// Who challenged it.
    pub challenger: Option<wallets::Address>,
    /// When it was challenged (0 if not).
    pub challenged_at: u64,
    /// The model fingerprint asked for.
    pub model: wallets::B256,
    /// Keccak-256 of the exact prompt text.
    pub prompt_hash: wallets::B256,
    /// The sampling hash the attestation must carry.
    pub sampling_hash: wallets::B256,
    /// Keccak-256 of the output given (zero if none).
    pub output_hash: wallets::B256,
    /// Keccak-256 of the challenger's re-run output (zero if none).
    pub challenge_output_hash: wallets::B256,
    /// The fee.
    pub fee: wallets::Amount,
}

/// What a fulfiller needs to run a request, from its `Requested` and `RequestDetails`
/// events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferenceRequestDetails {
    /// The request id.
    pub id: u64,
    /// Who asked.
    pub requester: wallets::Address,
    /// The model fingerprint.
    pub model: wallets::B256,
    /// Keccak-256 of the prompt text.
    pub prompt_hash: wallets::B256,
    /// The sampling hash.
    pub sampling_hash: wallets::B256,
    /// The fee.
    pub fee: wallets::Amount,
    /// Last second a fulfilment is accepted.
    pub deadline: u64,
    /// The prompt text (empty when given by hash).
    pub prompt: Vec<u8>,
    /// Where to get the prompt when it was given by hash.
    pub prompt_uri: String,
    /// The sampling parameters as the requester encoded them.
    pub sampling: Vec<u8>,
    /// The block the request was made in.
    pub block: u64,
}

/// The prompt of a new request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptSource {
    /// The exact text the model reads, on chain.
    Text(Vec<u8>),
    /// Its Keccak-256 hash and where to get it.
    Hash {
        /// Keccak-256 of the text.
        hash: wallets::B256,
        /// Where to get the text.
        uri: String,
    },
}

/// A request to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInferenceRequest {
    /// A registered, unsuspended model fingerprint.
    pub model: wallets::B256,
    /// The prompt.
    pub prompt: PromptSource,
    /// The sampling hash the attestation must carry.
    pub sampling_hash: wallets::B256,
    /// The sampling parameters, for fulfillers.
    pub sampling: Vec<u8>,
    /// The fee (positive).
    pub fee: wallets::Amount,
    /// Last second a fulfilment is accepted (Unix seconds, in the future).
    pub deadline: u64,
}

/// The answer to a request, as consumers read it (`InferenceOracle.answer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferenceAnswer {
    /// Whether it can be relied on: final, or fulfilled and unchallenged past the
    /// window, and its model not suspended.
    pub is_final: bool,
    /// The output (empty when given by hash or not at all).
    pub output: Vec<u8>,
    /// Keccak-256 of the output (zero if not fulfilled).
    pub output_hash: wallets::B256,
    /// When it was fulfilled (0 if not).
    pub fulfilled_at: u64,
}

fn amount(call: &str, value: EU256) -> Result<wallets::Amount, ChainError> {
    if value.bits() > 128 {
        return Err(ChainError::Contract {
            call: call.into(),
            message: format!("amount {value} does not fit an Amount"),
        });
    }
    Ok(wallets::Amount::from_base_units(value.as_u128()))
}

fn request_id(call: &str, value: EU256) -> Result<u64, ChainError> {
    if value.bits() > 64 {
        return Err(ChainError::Contract {
            call: call.into(),
            message: format!("request id {value} is out of range"),
        });
    }
    Ok(value.as_u64())
}

fn someone(a: ethers::types::Address) -> Option<wallets::Address> {
    (!a.is_zero()).then_some(wallets::Address(a.0))
}

/// Model provenance and the stake that oracle fulfilment needs.
impl Deployment {
    /// Anchors `fingerprint`'s provenance in the `ModelRegistry` from the client's
    /// account (its publisher), and waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] with the decoded revert reason (e.g.
    /// `ModelAlreadyRegistered` naming the first publisher).
    pub async fn register_model(
        &self,
        fingerprint: wallets::B256,
        provenance: &ModelProvenance,
    ) -> Result<Mined, ChainError> {
        let call = self.model_registry.register(
            fingerprint.0,
            provenance.name.clone(),
            provenance.version.clone(),
            provenance.uri.clone(),
            provenance.dataset_hashes.iter().map(|h| h.0).collect(),
        );
        mined("ModelRegistry.register", call.send().await).await
    }

    /// The registered provenance of `fingerprint`, if any.
    ///
    /// # Errors
    /// [`ChainError::Contract`] when a call fails.
    pub async fn model_record(
        &self,
        fingerprint: wallets::B256,
    ) -> Result<Option<ModelRecord>, ChainError> {
        let registered = self
            .model_registry
            .is_registered(fingerprint.0)
            .call()
            .await
            .map_err(|e| contract_error("ModelRegistry.isRegistered", e))?;
        if !registered {
            return Ok(None);
        }
        let m = self
            .model_registry
            .get_model(fingerprint.0)
            .call()
            .await
            .map_err(|e| contract_error("ModelRegistry.getModel", e))?;
        Ok(Some(ModelRecord {
            fingerprint,
            publisher: wallets::Address(m.publisher.0),
            registered_at: m.registered_at,
            provenance: ModelProvenance {
                name: m.name,
                version: m.version,
                uri: m.uri,
                dataset_hashes: m.dataset_hashes.into_iter().map(wallets::B256).collect(),
            },
        }))
    }

    /// Whether the governor (or an upheld oracle challenge) suspended `fingerprint`
    /// in the `AgentRegistry`: the kill switch.
    ///
    /// # Errors
    /// [`ChainError::Contract`] when the call fails.
    pub async fn model_suspended(&self, fingerprint: wallets::B256) -> Result<bool, ChainError> {
        self.registry
            .model_suspended(fingerprint.0)
            .call()
            .await
            .map_err(|e| contract_error("AgentRegistry.modelSuspended", e))
    }

    /// Adds `amount` to the client's stake in the `AgentRegistry`, which pulls it with
    /// `transferFrom` (approve the registry first; see the module docs), and waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] with the decoded revert reason (an allowance too small
    /// reverts in the token).
    pub async fn add_stake(&self, amount: wallets::Amount) -> Result<Mined, ChainError> {
        let call = self.registry.add_stake(EU256::from(amount.base_units()));
        mined("AgentRegistry.addStake", call.send().await).await
    }

    /// The client's stake in the `AgentRegistry` (pending withdrawals included).
    ///
    /// # Errors
    /// [`ChainError::Contract`] when the call fails.
    pub async fn stake_of(&self, agent: wallets::Address) -> Result<wallets::Amount, ChainError> {
        const CALL: &str = "AgentRegistry.getAgent";
        let a = self
            .registry
            .get_agent(ea(agent))
            .call()
            .await
            .map_err(|e| contract_error(CALL, e))?;
        amount(CALL, a.stake)
    }

    /// The governor makes the `InferenceOracle` an adjudicator of the `AgentRegistry`,
    /// so that upheld challenges can slash and suspend ([`Deployment::deploy`] does it
    /// when the deployer is the governor).
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`NotGovernor` when the client is not the governor).
    pub async fn allow_oracle_adjudication(&self) -> Result<Mined, ChainError> {
        let call = self
            .registry
            .set_adjudicator(self.inference_oracle.address(), true);
        mined("AgentRegistry.setAdjudicator", call.send().await).await
    }
}

/// The `InferenceOracle`.
impl Deployment {
    /// Requests an inference from the client's account, which pays the fee (approve
    /// the oracle for it first; see the module docs), and returns the request id.
    ///
    /// # Errors
    /// [`ChainError::Contract`] with the decoded revert reason (model not registered
    /// or suspended, zero fee, deadline in the past, prompt empty or too long).
    pub async fn request_inference(
        &self,
        request: &NewInferenceRequest,
    ) -> Result<(u64, Mined), ChainError> {
        let fee = EU256::from(request.fee.base_units());
        let o = &self.inference_oracle;
        let sampling = Bytes::from(request.sampling.clone());
        let (name, call) = match &request.prompt {
            PromptSource::Text(text) => (
                "InferenceOracle.request",
                o.request(
                    request.model.0,
                    Bytes::from(text.clone()),
                    request.sampling_hash.0,
                    sampling,
                    fee,
                    request.deadline,
                ),
            ),
            PromptSource::Hash { hash, uri } => (
                "InferenceOracle.requestByHash",
                o.request_by_hash(
                    request.model.0,
                    hash.0,
                    uri.clone(),
                    request.sampling_hash.0,
                    sampling,
                    fee,
                    request.deadline,
                ),
            ),
        };
        let receipt = receipt(name, call.send().await).await?;
        let mined = mined_of(name, &receipt)?;
        let oracle = o.address();
        let id = receipt
            .logs
            .iter()
            .filter(|l| l.address == oracle)
            .find_map(|l| {
                match InferenceOracleEvents::decode_log(&ethers::abi::RawLog {
                    topics: l.topics.clone(),
                    data: l.data.to_vec(),
                }) {
                    Ok(InferenceOracleEvents::RequestedFilter(r)) => Some(r.id),
                    _ => None,
                }
            })
            .ok_or_else(|| ChainError::Contract {
                call: name.into(),
                message: format!("no Requested event in transaction {}", mined.tx_hash),
            })?;
        Ok((request_id(name, id)?, mined))
    }

    /// The node's latest block number.
    ///
    /// # Errors
    /// [`ChainError::Node`] when the node does not answer.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        let client = self.inference_oracle.client();
        client
            .get_block_number()
            .await
            .map(|n| n.as_u64())
            .map_err(|e| ChainError::Node {
                url: client.provider().url().to_string(),
                message: format!("eth_blockNumber: {e}"),
            })
    }

    /// Request `id` as the oracle holds it.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`UnknownRequest`) when there is none.
    pub async fn inference_request(&self, id: u64) -> Result<InferenceRequest, ChainError> {
        const CALL: &str = "InferenceOracle.getRequest";
        let r = self
            .inference_oracle
            .get_request(EU256::from(id))
            .call()
            .await
            .map_err(|e| contract_error(CALL, e))?;
        Ok(InferenceRequest {
            id,
            requester: wallets::Address(r.requester.0),
            status: OracleStatus::from_u8(r.status).ok_or_else(|| ChainError::Contract {
                call: CALL.into(),
                message: format!("unknown request status {}", r.status),
            })?,
            deadline: r.deadline,
            fulfiller: someone(r.fulfiller),
            fulfilled_at: r.fulfilled_at,
            challenger: someone(r.challenger),
            challenged_at: r.challenged_at,
            model: wallets::B256(r.model),
            prompt_hash: wallets::B256(r.prompt_hash),
            sampling_hash: wallets::B256(r.sampling_hash),
            output_hash: wallets::B256(r.output_hash),
            challenge_output_hash: wallets::B256(r.challenge_output_hash),
            fee: amount(CALL, r.fee)?,
        })
    }

    /// The requests made from block `from_block` on, with what a fulfiller needs to
    /// run them, oldest first; only those for `model` when given. Their current state
    /// is [`Deployment::inference_request`]'s.
    ///
    /// # Errors
    /// [`ChainError::Node`] or [`ChainError::Contract`] when a log query fails.
    pub async fn inference_requests(
        &self,
        model: Option<wallets::B256>,
        from_block: u64,
    ) -> Result<Vec<InferenceRequestDetails>, ChainError> {
        self.scan_requests(model, None, from_block).await
    }

    /// What a fulfiller needs to run request `id`, if it was made from block
    /// `from_block` on.
    ///
    /// # Errors
    /// As [`Deployment::inference_requests`].
    pub async fn inference_request_details(
        &self,
        id: u64,
        from_block: u64,
    ) -> Result<Option<InferenceRequestDetails>, ChainError> {
        Ok(self
            .scan_requests(None, Some(id), from_block)
            .await?
            .into_iter()
            .next())
    }

    /// `Requested` logs (for `model`, or of request `id`, when given) joined with the
    /// `RequestDetails` logs of the same requests, read in chunks of blocks.
    async fn scan_requests(
        &self,
        model: Option<wallets::B256>,
        id: Option<u64>,
        from_block: u64,
    ) -> Result<Vec<InferenceRequestDetails>, ChainError> {
        const CALL: &str = "InferenceOracle Requested logs";
        let o = &self.inference_oracle;
        let head = self.block_number().await?;
        let mut found = Vec::new();
        let mut from = from_block;
        while from <= head {
            let to = (from + LOG_CHUNK - 1).min(head);
            let mut requested = o.requested_filter().from_block(from).to_block(to);
            if let Some(id) = id {
                requested = requested.topic1(H256::from_low_u64_be(id));
            }
            if let Some(m) = model {
                requested = requested.topic3(H256(m.0));
            }
            let requested: Vec<(RequestedFilter, ethers::contract::LogMeta)> = requested
                .query_with_meta()
                .await
                .map_err(|e| contract_error(CALL, e))?;
            if !requested.is_empty() {
                // Only the details of the requests found (not every model's prompts).
                let ids: Vec<H256> = requested
                    .iter()
                    .map(|(r, _)| {
                        let mut word = [0u8; 32];
                        r.id.to_big_endian(&mut word);
                        H256(word)
                    })
                    .collect();
                let details: Vec<RequestDetailsFilter> = o
                    .request_details_filter()
                    .from_block(from)
                    .to_block(to)
                    .topic1(ids)
                    .query()
                    .await
                    .map_err(|e| contract_error("InferenceOracle RequestDetails logs", e))?;
                for (r, meta) in requested {
                    let Some(d) = details.iter().find(|d| d.id == r.id) else {
                        return Err(ChainError::Contract {
                            call: CALL.into(),
                            message: format!("request {} has no RequestDetails event", r.id),
                        });
                    };
                    found.push(InferenceRequestDetails {
                        id: request_id(CALL, r.id)?,
                        requester: wallets::Address(r.requester.0),
                        model: wallets::B256(r.model),
                        prompt_hash: wallets::B256(r.prompt_hash),
                        sampling_hash: wallets::B256(r.sampling_hash),
                        fee: amount(CALL, r.fee)?,
                        deadline: r.deadline,
                        prompt: d.prompt.to_vec(),
                        prompt_uri: d.prompt_uri.clone(),
                        sampling: d.sampling.to_vec(),
                        block: meta.block_number.as_u64(),
                    });
                }
            }
            from = to + 1;
        }
        Ok(found)
    }

    /// Fulfils request `id` with `output` (stored on chain) and the agent's 65-byte
    /// EIP-712 signature of the attestation; the signer is the fulfiller, whoever the
    /// client is. Waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] with the decoded revert reason (e.g. `WrongModel`,
    /// `FulfillerNotActive`, `DeadlinePassed`, `ModelIsSuspended`).
    pub async fn fulfil_inference(
        &self,
        id: u64,
        output: &[u8],
        signature: &wallets::Signature,
    ) -> Result<Mined, ChainError> {
        let call = self.inference_oracle.fulfil(
            EU256::from(id),
            Bytes::from(output.to_vec()),
            Bytes::from(signature.to_bytes().to_vec()),
        );
        mined("InferenceOracle.fulfil", call.send().await).await
    }

    /// Pays the fulfiller of request `id` once its challenge window has passed, and
    /// waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`ChallengeWindowOpen`, `InvalidStatus`).
    pub async fn finalize_inference(&self, id: u64) -> Result<Mined, ChainError> {
        let call = self.inference_oracle.finalize(EU256::from(id));
        mined("InferenceOracle.finalize", call.send().await).await
    }

    /// Gives an unfulfilled request's fee back to its requester after the deadline,
    /// and waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`DeadlineNotPassed`, `InvalidStatus`).
    pub async fn refund_inference(&self, id: u64) -> Result<Mined, ChainError> {
        let call = self.inference_oracle.refund(EU256::from(id));
        mined("InferenceOracle.refund", call.send().await).await
    }

    /// Challenges the fulfilment of request `id` with the hash of the client's own
    /// re-run output, depositing the challenge bond ([`Deployment::challenge_bond`];
    /// approve the oracle for it first), and waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`ChallengeWindowClosed`, `NoMismatch`, ...).
    pub async fn challenge_inference(
        &self,
        id: u64,
        rerun_output_hash: wallets::B256,
    ) -> Result<Mined, ChainError> {
        let call = self
            .inference_oracle
            .challenge(EU256::from(id), rerun_output_hash.0);
        mined("InferenceOracle.challenge", call.send().await).await
    }

    /// What a challenger deposits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] when the call fails.
    pub async fn challenge_bond(&self) -> Result<wallets::Amount, ChainError> {
        const CALL: &str = "InferenceOracle.challengeBond";
        let bond = self
            .inference_oracle
            .challenge_bond()
            .call()
            .await
            .map_err(|e| contract_error(CALL, e))?;
        amount(CALL, bond)
    }

    /// The governor rules on the challenge of request `id`: `upheld` when its own
    /// re-run proved the output wrong. Waits.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`NotGovernor`, `ResolutionWindowClosed`, ...).
    pub async fn resolve_inference_challenge(
        &self,
        id: u64,
        upheld: bool,
        reason: &str,
    ) -> Result<Mined, ChainError> {
        let call =
            self.inference_oracle
                .resolve_challenge(EU256::from(id), upheld, reason.to_owned());
        mined("InferenceOracle.resolveChallenge", call.send().await).await
    }

    /// The answer to request `id`, as a consumer contract reads it.
    ///
    /// # Errors
    /// [`ChainError::Contract`] (`UnknownRequest`).
    pub async fn inference_answer(&self, id: u64) -> Result<InferenceAnswer, ChainError> {
        let (is_final, output, output_hash, fulfilled_at) = self
            .inference_oracle
            .answer(EU256::from(id))
            .call()
            .await
            .map_err(|e| contract_error("InferenceOracle.answer", e))?;
        Ok(InferenceAnswer {
            is_final,
            output: output.to_vec(),
            output_hash: wallets::B256(output_hash),
            fulfilled_at,
        })
    }
}
