//! `agora oracle`: the `InferenceOracle` from the command line. Serve its requests with
//! the local model as a registered agent, re-run a fulfilment (and challenge it), rule
//! on a challenge as the registry's governor, or show a request.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use llm::oracle::{
    check_fulfilment, rule_on_challenge, OracleFulfiller, OracleOutcome, PromptFetch, Verdict,
};
use llm::{LlmConfig, LlmEngine};
use registry::chain::{self, Deployment};

use crate::chain_cmd::{load_wallet, NodeArgs};
use crate::wallet_cmd::PasswordArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum OracleCommand {
    /// Fulfil the oracle's requests for the local model, as the keystore's agent, until
    /// Ctrl-C. The agent must be registered with that model's fingerprint (and staked
    /// as the oracle asks); its wallet signs each attestation and is paid once final.
    Serve {
        #[command(flatten)]
        node: NodeArgs,
        /// The agent's keystore.
        #[arg(long)]
        keystore: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Seconds between polls of the chain.
        #[arg(long, default_value_t = 2)]
        every: u64,
    },
    /// Re-run fulfilled request ID with the local model and say whether its output is
    /// the fulfilled one (exit 1 when it is not). With --challenge, challenge a
    /// mismatch from the keystore's account (which deposits the bond; approve the oracle
    /// for it first).
    Check {
        /// The request id.
        id: u64,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Challenge a mismatch.
        #[arg(long, requires = "keystore")]
        challenge: bool,
        /// The challenger's keystore.
        #[arg(long)]
        keystore: Option<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// As the registry's governor, rule on challenged request ID: re-run it with the
    /// local model, uphold the challenge on a mismatch (refund, slash, suspend the
    /// model), reject it otherwise.
    Rule {
        /// The request id.
        id: u64,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// The governor's keystore.
        #[arg(long)]
        keystore: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show request ID and its answer.
    Show {
        /// The request id.
        id: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// The model the oracle work runs.
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    /// The GGUF file (default: $AGORA_MODEL_PATH, else the default model, fetched if
    /// missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also fetch prompts given by URI from loopback, private and link-local hosts
    /// (by default only public hosts; `ipfs://` URIs go through $AGORA_IPFS_GATEWAY).
    #[arg(long)]
    private_prompt_hosts: bool,
}

impl ModelArgs {
    fn fetch(&self) -> PromptFetch {
        PromptFetch::new().allow_private_hosts(self.private_prompt_hosts)
    }

    fn engine(&self) -> Result<Arc<LlmEngine>> {
        let path = match &self.model {
            Some(path) => path.clone(),
            None => crate::model_cmd::default_model_path()?,
        };
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        LlmEngine::shared(LlmConfig::new(&path).with_threads(threads))
            .with_context(|| format!("loading {}", path.display()))
    }
}

async fn contracts(
    node: &NodeArgs,
    wallet: Arc<wallets::Wallet>,
) -> Result<(Deployment, chain::Addresses)> {
    let addresses = node.addresses()?;
    anyhow::ensure!(
        addresses.has_inference(),
        "this deployment has no InferenceOracle (it predates verified inference); deploy \
         again with `agora registry deploy`"
    );
    let client = chain::connect(&node.rpc, wallet).await?;
    Ok((Deployment::at(client, &addresses), addresses))
}

fn reader() -> Arc<wallets::Wallet> {
    Arc::new(wallets::Wallet::random())
}

pub(crate) async fn run_oracle(cmd: OracleCommand) -> Result<ExitCode> {
    match cmd {
        OracleCommand::Serve {
            node,
            keystore,
            password,
            model,
            every,
        } => {
            let wallet = load_wallet(keystore, &password).await?;
            let engine = model.engine()?;
            let (contracts, addresses) = contracts(&node, wallet.clone()).await?;
            let mut stop = crate::signals::Stop::listen()?;
            println!(
                "serving oracle requests for model {} as {} (Ctrl-C to stop)",
                engine.fingerprint(),
                wallet.address()
            );
            let mut fulfiller =
                OracleFulfiller::new(engine, wallet, contracts, addresses.deployed_at)
                    .with_prompt_fetch(model.fetch());
            let mut tick = tokio::time::interval(Duration::from_secs(every.max(1)));
            // After a poll that outlasted the interval (an inference), the next waits
            // a full interval instead of the missed ticks firing back to back.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A request being served is finished before a signal is read (its
            // fulfilment may be on its way to the chain); `stop` keeps the signal.
            loop {
                tokio::select! {
                    _ = stop.recv() => break,
                    _ = tick.tick() => {}
                }
                match fulfiller.poll().await {
                    Ok(outcomes) => {
                        for outcome in outcomes {
                            match outcome {
                                OracleOutcome::Fulfilled { id, output, tx } => println!(
                                    "request {id}: fulfilled in {} with {output:?}",
                                    tx.tx_hash
                                ),
                                OracleOutcome::Skipped { id, reason } => {
                                    println!("request {id}: skipped: {reason}");
                                }
                            }
                        }
                    }
                    Err(e) => eprintln!("warning: {e} (retrying)"),
                }
            }
            println!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        OracleCommand::Check {
            id,
            node,
            model,
            challenge,
            keystore,
            password,
        } => {
            let wallet = match &keystore {
                Some(path) => load_wallet(path.clone(), &password).await?,
                None => reader(),
            };
            let engine = model.engine()?;
            let (contracts, addresses) = contracts(&node, wallet).await?;
            match check_fulfilment(
                &engine,
                &contracts,
                addresses.deployed_at,
                id,
                &model.fetch(),
            )
            .await?
            {
                Verdict::Matches { output_hash } => {
                    println!("request {id}: the re-run gives the fulfilled output ({output_hash})");
                    Ok(ExitCode::SUCCESS)
                }
                Verdict::Mismatch {
                    fulfilled,
                    rerun_output,
                    rerun_output_hash,
                } => {
                    println!(
                        "request {id}: MISMATCH: fulfilled {fulfilled}, the re-run gives \
                         {rerun_output_hash} ({rerun_output:?})"
                    );
                    if challenge {
                        let tx = contracts.challenge_inference(id, rerun_output_hash).await?;
                        println!("challenged in {}", tx.tx_hash);
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        OracleCommand::Rule {
            id,
            node,
            model,
            keystore,
            password,
        } => {
            let wallet = load_wallet(keystore, &password).await?;
            let engine = model.engine()?;
            let (contracts, addresses) = contracts(&node, wallet).await?;
            let (upheld, tx) = rule_on_challenge(
                &engine,
                &contracts,
                addresses.deployed_at,
                id,
                &model.fetch(),
            )
            .await?;
            println!(
                "request {id}: challenge {} in {}",
                if upheld {
                    "upheld (fee refunded, fulfiller slashed, model suspended)"
                } else {
                    "rejected (the fulfilment stands)"
                },
                tx.tx_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        OracleCommand::Show { id, node } => {
            let (contracts, _) = contracts(&node, reader()).await?;
            let request = contracts.inference_request(id).await?;
            let answer = contracts.inference_answer(id).await?;
            println!("{}", serde_json::to_string_pretty(&request)?);
            println!(
                "answer: {} {:?}",
                if answer.is_final {
                    "final"
                } else {
                    "not final"
                },
                String::from_utf8_lossy(&answer.output)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
