//! `agora agent-run` (one agent of agents.toml in this process, started by `agora up`)
//! and `agora plan` (ask a running travel agent for a trip). The agents themselves,
//! their skills and the rules of paid work are in the `deploy` crate
//! ([`deploy::RunningAgent`], `deploy::travel_agent`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::{AgentBuilder, Host, HostConfig};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use deploy::layout::{base_dir, state_dir, UpState};
use deploy::{AgentSite, PlanTrip, RunningAgent};
use tokio::io::AsyncReadExt;

use crate::up_cmd::parse_duration;

/// `agora agent-run` (started by `agora up`).
#[derive(Debug, Args)]
pub(crate) struct AgentRunArgs {
    /// The deployment file.
    #[arg(long)]
    config: PathBuf,
    /// The state directory.
    #[arg(long)]
    dir: PathBuf,
    /// Which agent of the file.
    #[arg(long)]
    name: String,
    /// JSON-RPC URL of the chain.
    #[arg(long)]
    rpc: String,
    /// The deployment's addresses.json.
    #[arg(long)]
    addresses: PathBuf,
}

/// Starts the agent, prints `READY <ws url> <address>` on standard output (the
/// supervisor's signal), and serves until standard input closes (the supervisor's way
/// of asking it to stop), Ctrl-C or SIGTERM.
pub(crate) async fn run_agent(args: AgentRunArgs) -> Result<ExitCode> {
    let site = AgentSite {
        config_path: args.config.clone(),
        state_dir: args.dir.clone(),
        rpc_url: args.rpc.clone(),
        addresses_path: args.addresses.clone(),
        default_model: default_model(&args)?,
    };
    let agent = RunningAgent::start(&site, &args.name).await?;
    let mut stop = crate::signals::Stop::listen()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {} {}", agent.url(), agent.address())?;
        out.flush()?;
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
        _ = stop.recv() => {}
    }
    agent.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The model of a travel agent or an LLM seller whose entry names none:
/// `$AGORA_MODEL_PATH`, else the default model, fetched into the cache when missing.
#[cfg(feature = "llm")]
fn default_model(args: &AgentRunArgs) -> Result<Option<PathBuf>> {
    let config = deploy::config::Config::load(&args.config)?;
    let needs = config.agents.iter().any(|a| {
        a.name == args.name
            && (a.skills.contains("travel") || a.skills.contains("llm"))
            && a.model.is_none()
    });
    Ok(if needs {
        Some(crate::model_cmd::default_model_path()?)
    } else {
        None
    })
}

#[cfg(not(feature = "llm"))]
fn default_model(_: &AgentRunArgs) -> Result<Option<PathBuf>> {
    Ok(None)
}

/// `agora plan`: ask the running travel agent for a trip.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The trip request, in words.
    request: String,
    /// The deployment file (finds the state directory when --dir is not given).
    #[arg(long, default_value = "agents.toml")]
    config: PathBuf,
    /// The state directory of the running `agora up`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which travel agent (default: the one with the travel skill).
    #[arg(long)]
    agent: Option<String>,
    /// The keystore of the identity to ask as: a principal of the travel agent, whose
    /// mandate sets what the trip may spend (default: the owner keystore that
    /// `agora init` writes, .agora/keystores/owner.json beside the config).
    #[arg(long, value_name = "FILE")]
    keystore: Option<PathBuf>,
    #[command(flatten)]
    password: crate::wallet_cmd::PasswordArgs,
    /// How long to wait for the plan.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    timeout: Duration,
}

pub(crate) async fn run_plan(args: PlanArgs) -> Result<ExitCode> {
    let dir = state_dir(&args.config, args.dir.as_deref());
    let state = UpState::load(&dir)?;
    // An `agora up` that died (killed, or the machine restarted) leaves its up.json
    // behind: asking its agents would wait out the whole timeout. (Where there is no
    // /proc to look in, the ask finds out.)
    let proc = std::path::Path::new("/proc");
    anyhow::ensure!(
        !proc.join("self").exists() || proc.join(state.pid.to_string()).exists(),
        "{}: the `agora up` that wrote it (pid {}) is not running any more; start it again",
        UpState::path(&dir).display(),
        state.pid
    );
    let (name, travel) = state
        .agents
        .iter()
        .find(|(n, a)| match &args.agent {
            Some(wanted) => *n == wanted,
            None => a.skills.iter().any(|s| s == "travel"),
        })
        .with_context(|| format!("{}: no travel agent is running", dir.display()))?;
    let Some(endpoint) = travel.endpoint.clone() else {
        bail!("agent {name} is not up yet");
    };
    let keystore = args
        .keystore
        .clone()
        .unwrap_or_else(|| base_dir(&args.config).join(crate::init_cmd::OWNER_KEYSTORE));
    let password = args.password.read(false)?;
    let ks = keystore.clone();
    let wallet =
        tokio::task::spawn_blocking(move || wallets::keystore::load(&ks, password.as_bytes()))
            .await?
            .with_context(|| format!("opening the keystore {}", keystore.display()))?;
    let principal = wallet.address();
    let store = dir.join("clients").join(format!("{}", std::process::id()));
    let host = Host::spawn(
        HostConfig::new(state.chain_id, &store)
            .name("plan")
            .workers(1),
    )?;
    host.add_peer(travel.address, endpoint.clone());
    let me = AgentBuilder::new("plan")
        .wallet(Arc::new(wallet))
        .spawn(&host)?;
    let ctx = me.context();
    eprintln!(
        "asking {name} ({endpoint}) as {principal}: {}",
        args.request
    );
    let answer = ctx
        .ask_in(
            ctx.new_dialogue(),
            travel.address,
            PlanTrip {
                request: args.request.clone(),
            },
            args.timeout,
        )
        .await;
    drop(me);
    tokio::task::spawn_blocking(move || host.shutdown()).await?;
    let _ = std::fs::remove_dir_all(&store);
    let plan = answer.with_context(|| format!("agent {name} could not plan the trip"))?;
    let seller_name = state
        .agents
        .iter()
        .find(|(_, a)| a.address.to_string() == plan.seller)
        .map_or("?", |(n, _)| n.as_str());
    println!("{}", plan.itinerary);
    println!("deal:");
    println!("  seller:   {seller_name} {}", plan.seller);
    println!("  price:    {}", plan.price);
    println!("  tx:       {}", plan.tx_hash);
    println!("  attempts: {}", plan.attempts);
    Ok(ExitCode::SUCCESS)
}
