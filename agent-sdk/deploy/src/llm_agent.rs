//! An LLM seller agent (feature `llm`): `llm.complete` or `llm.extract` sold from
//! the agent's model through the negotiation, over x402 and to A2A clients, every
//! result attested; and, with `oracle = true`, the `InferenceOracle`'s requests for
//! that model fulfilled by the agent.
//!
//! The agent registers in the `AgentRegistry` with its model's fingerprint, which is
//! what a buyer's [`llm::service::AttestationCheck`] and the oracle check attestations
//! against. An oracle agent anchors its model in the `ModelRegistry` when no one has
//! (the agent is then the model's publisher, with the GGUF's name), since the oracle
//! takes requests only for registered models.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::prelude::*;
use llm::oracle::{OracleFulfiller, OracleOutcome};
use llm::service::{
    result_schema, served_attestation, task_schema, InferenceKind, LlmService, COMPLETE_KIND,
};
use llm::{LlmConfig, LlmEngine};
use negotiation::{ChainSettlement, DefaultSellerStrategy, Seller};
use registry::chain::{Addresses, Deployment, ModelProvenance};
use tokio::task::JoinHandle;
use wallets::Journal;
use x402::PricedService;

use crate::agent::{connect, seller_floor, AgentSite, Selling};
use crate::config::{AgentConfig, Config};
use crate::{Error, Result, TOKEN};

/// How often an oracle agent reads the chain for new requests.
pub const ORACLE_POLL_EVERY: Duration = Duration::from_secs(2);

/// Sequences an LLM seller decodes at once, and the context of each (tokens): room
/// for a 16 KiB prompt's worth of tokens and the most a job generates.
const SEQUENCES: u32 = 4;
const CONTEXT_PER_SEQUENCE: u32 = 4096;

/// The model file of `agent`: its own `model`, relative to the deployment file's
/// directory, else the site's default.
///
/// # Errors
/// [`Error::Composition`] when neither is configured.
pub(crate) fn model_of(site: &AgentSite, agent: &AgentConfig, skill: &str) -> Result<PathBuf> {
    match (&agent.model, &site.default_model) {
        (Some(m), _) => Ok(crate::layout::base_dir(&site.config_path).join(m)),
        (None, Some(m)) => Ok(m.clone()),
        (None, None) => Err(Error::Composition {
            agent: agent.name.clone(),
            reason: format!("the {skill} skill needs a model, and none is configured"),
        }),
    }
}

/// Loads `model` on a blocking thread, with every core and `sequences` sequences of
/// `context` tokens.
pub(crate) async fn load_model(
    agent: &str,
    model: PathBuf,
    sequences: u32,
    context: u32,
) -> Result<Arc<LlmEngine>> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    tracing::info!(target: "agora::agent", agent, model = %model.display(), "loading the model");
    tokio::task::spawn_blocking(move || {
        LlmEngine::shared(
            LlmConfig::new(model)
                .with_threads(threads)
                .with_max_sequences(sequences)
                .with_context_per_sequence(context),
        )
    })
    .await
    .map_err(|e| Error::Composition {
        agent: agent.to_owned(),
        reason: format!("the model loading task failed: {e}"),
    })?
    .map_err(Error::from)
}

/// The LLM seller of `agent`: its service at the configured price from its model,
/// settled on chain and journaled, through the negotiation and over x402.
pub(crate) async fn llm_seller(
    site: &AgentSite,
    config: &Config,
    agent: &AgentConfig,
    addresses: &Addresses,
    wallet: Arc<Wallet>,
    dir: &Path,
) -> Result<Selling> {
    let Some(service) = agent.services.iter().find(|s| s.skill.starts_with("llm.")) else {
        return Err(Error::Composition {
            agent: agent.name.clone(),
            reason: "it runs the llm skill but sells no LLM service (llm.complete or \
                     llm.extract)"
                .into(),
        });
    };
    let kind = InferenceKind::from_kind(&service.skill).ok_or_else(|| Error::Composition {
        agent: agent.name.clone(),
        reason: format!("{:?} is not an LLM service", service.skill),
    })?;
    let model = model_of(site, agent, "llm")?;
    let engine = load_model(&agent.name, model, SEQUENCES, CONTEXT_PER_SEQUENCE).await?;
    let client = connect(&site.rpc_url, wallet.clone(), config).await?;
    let settlement = ChainSettlement::with_client(client.clone(), addresses, TOKEN);
    let journal = Journal::open(dir.join("journal"), wallet.clone())?;
    let sell = || LlmService::new(kind, engine.clone(), wallet.clone(), addresses.chain_id);
    let seller = Seller::new(
        kind.as_str(),
        wallet.clone(),
        DefaultSellerStrategy::new(service.price, seller_floor(service.price)),
        sell(),
        settlement,
        journal,
    );
    let example = if kind.as_str() == COMPLETE_KIND {
        serde_json::json!({"prompt": "Name a colour.", "seed": 7, "maxTokens": 16})
    } else {
        serde_json::json!({
            "prompt": "Weather in Oslo: 4 degrees and rain.",
            "schema": {"type": "object", "properties": {"celsius": {"type": "integer"}},
                       "required": ["celsius"]},
            "seed": 7
        })
    };
    let priced = PricedService::new(
        kind.as_str(),
        service.price,
        sell(),
        task_schema(),
        result_schema(),
    )
    .description(format!(
        "{} by model {}: the output with the seller's signed attestation (the \
         AGORA-ATTESTATION header)",
        if kind.as_str() == COMPLETE_KIND {
            "a text completion"
        } else {
            "a JSON extraction constrained by a JSON Schema"
        },
        engine.fingerprint()
    ))
    .example(example, None)
    .attestation_header(served_attestation);
    Ok(Selling {
        seller,
        client,
        priced,
        description: format!(
            "Agora LLM agent {}: {} from model {}, attested, paid in the stablecoin with \
             x402",
            agent.name,
            kind.as_str(),
            engine.fingerprint()
        ),
        model: Some(engine),
    })
}

/// Anchors `engine`'s model in the `ModelRegistry` unless someone has, as the agent
/// `name`: the oracle takes requests only for registered models.
///
/// # Errors
/// The chain's.
pub(crate) async fn anchor_model(
    name: &str,
    engine: &LlmEngine,
    contracts: &Deployment,
) -> Result<()> {
    let fingerprint = engine.fingerprint().to_b256();
    if let Some(record) = contracts.model_record(fingerprint).await? {
        tracing::info!(target: "agora::agent", agent = name, model = %fingerprint,
            publisher = %record.publisher, "model registered already");
        return Ok(());
    }
    let info = engine.info();
    let file = info
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let provenance = ModelProvenance {
        name: info
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(file.clone()),
        version: "unspecified".into(),
        uri: file,
        dataset_hashes: Vec::new(),
    };
    let mined = contracts.register_model(fingerprint, &provenance).await?;
    tracing::info!(target: "agora::agent", agent = name, model = %fingerprint,
        name = %provenance.name, tx = %mined.tx_hash, "model anchored in the ModelRegistry");
    Ok(())
}

/// Fulfils the oracle's requests for `engine`'s model as the agent of `contracts`'
/// wallet, from block `from_block` on, every [`ORACLE_POLL_EVERY`], until aborted.
pub(crate) fn spawn_oracle(
    name: String,
    engine: Arc<LlmEngine>,
    wallet: Arc<Wallet>,
    contracts: Deployment,
    from_block: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut fulfiller = OracleFulfiller::new(engine, wallet, contracts, from_block);
        let mut tick = tokio::time::interval(ORACLE_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match fulfiller.poll().await {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        match outcome {
                            OracleOutcome::Fulfilled { id, tx, .. } => {
                                tracing::info!(target: "agora::agent", agent = %name, id,
                                    tx = %tx.tx_hash, "oracle request fulfilled");
                            }
                            OracleOutcome::Skipped { id, reason } => {
                                tracing::warn!(target: "agora::agent", agent = %name, id,
                                    %reason, "oracle request skipped");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "agora::agent", agent = %name, error = %e,
                        "reading the oracle's requests failed; retrying");
                }
            }
        }
    })
}
