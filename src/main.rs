//! `agora`: the command-line entry point of the Agora agent framework.
//!
//! The binary only parses arguments, sets up logging, prints, and calls into the
//! library crates (a deployment's logic is in `deploy`); see `agora --help`.

mod agent_cmd;
mod audit_cmd;
mod audit_html;
mod chain_cmd;
#[cfg(feature = "llm")]
mod demo_cmd;
mod init_cmd;
mod model_cmd;
#[cfg(feature = "llm")]
mod oracle_cmd;
mod signals;
mod up_cmd;
mod wallet_cmd;
mod x402_cmd;

use std::process::ExitCode;

/// Agents allocate many small values per message (JSON, hex strings): glibc's
/// malloc and free were about 9 % of a channel deal's CPU in a profile, and the
/// negotiation bench uses a few percent less CPU per deal with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Agora: autonomous economic agents that find, hire and pay each other.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: human-readable text or JSON lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Same as --log-format json.
    #[arg(long, global = true, hide = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starter agents.toml and encrypted keystores for its agents.
    Init(init_cmd::InitArgs),
    /// Create, inspect and use agent wallets (keystores, signatures).
    #[command(subcommand)]
    Wallet(wallet_cmd::WalletCommand),
    /// Inspect payment journals.
    #[command(subcommand)]
    Journal(wallet_cmd::JournalCommand),
    /// Check a deployment file (agents.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve the embedded devnet (JSON-RPC over HTTP and WebSocket) and deploy the contracts.
    Chain(chain_cmd::ChainArgs),
    /// Register agents and look them up in the on-chain registry.
    #[command(subcommand)]
    Registry(chain_cmd::RegistryCommand),
    /// Audit payment journals: hash chains, signatures, both sides of each deal, and
    /// (with --rpc) the payments on chain. Exits 1 on discrepancies, 2 on errors.
    Audit(audit_cmd::AuditArgs),
    /// Fetch and describe LLM models (GGUF files).
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// The InferenceOracle: serve its requests with the local model, re-run and
    /// challenge a fulfilment, rule on a challenge, show a request.
    #[cfg(feature = "llm")]
    #[command(subcommand)]
    Oracle(oracle_cmd::OracleCommand),
    /// Run the travel/weather story once on the embedded chain and the local model:
    /// a travel agent hires and pays a weather agent and writes the itinerary.
    #[cfg(feature = "llm")]
    Demo(demo_cmd::DemoArgs),
    /// Run the agents of agents.toml until Ctrl-C: start (or connect to) the chain,
    /// deploy the contracts when missing, fund dev agents, register the agents, and
    /// restart any agent process that dies.
    Up(up_cmd::UpArgs),
    /// Ask the travel agent of a running `agora up` to plan a trip.
    Plan(agent_cmd::PlanArgs),
    /// x402 v2 payments over HTTP: serve the facilitator API for a chain.
    #[command(subcommand)]
    X402(x402_cmd::X402Command),
    /// Run one agent of agents.toml in this process (what `agora up` starts).
    #[command(hide = true)]
    AgentRun(agent_cmd::AgentRunArgs),
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate agents.toml and summarise it.
    Check {
        /// The file.
        #[arg(default_value = "agents.toml")]
        path: std::path::PathBuf,
    },
}

fn check_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = deploy::config::Config::load(path)?;
    match &config.network {
        deploy::config::Network::Embedded { data_dir, chain_id } => {
            println!(
                "network: embedded chain {chain_id} in {}",
                data_dir.display()
            );
        }
        deploy::config::Network::Rpc { url, chain_id } => {
            println!("network: {url} (chain {chain_id})")
        }
    }
    for a in &config.agents {
        let skills: Vec<&str> = a.skills.iter().map(String::as_str).collect();
        println!(
            "agent {:<12} {}  skills: {}",
            a.name,
            a.listen,
            skills.join(", ")
        );
        for s in &a.services {
            println!("  sells {} at {} per {}", s.skill, s.price, s.unit);
        }
        if let Some(limit) = a.policy.per_deal {
            println!("  spends at most {limit} per deal");
        }
        if let Some(limit) = a.policy.daily {
            println!("  spends at most {limit} per rolling day");
        }
        if let Some(model) = &a.model {
            println!("  model {}", model.display());
        }
        if a.oracle {
            println!("  serves the inference oracle for its model");
        }
        tracing::debug!(keystore = %a.keystore.display(), password_env = %a.password_env, "agent keys");
    }
    println!("{}: valid", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Log filter when `AGORA_LOG` is not set: our info lines, and only llama.cpp's
/// warnings (it reports every model load at info level, about a hundred lines).
const DEFAULT_LOG_FILTER: &str = "info,llama-cpp-2=warn,llama_cpp_2=error";

fn init_tracing(format: LogFormat) {
    let json = format == LogFormat::Json;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGORA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs async commands on a multi-threaded tokio runtime.
fn block_on(
    fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = if cli.log_json {
        LogFormat::Json
    } else {
        cli.log_format
    };
    init_tracing(log);
    let result = match cli.command {
        Command::Init(args) => init_cmd::run_init(args),
        Command::Wallet(cmd) => wallet_cmd::run_wallet(cmd),
        Command::Journal(cmd) => wallet_cmd::run_journal(cmd),
        Command::Config(ConfigCommand::Check { path }) => check_config(&path),
        Command::Chain(args) => block_on(chain_cmd::run_chain(args)),
        Command::Registry(cmd) => block_on(chain_cmd::run_registry(cmd)),
        Command::Audit(args) => block_on(audit_cmd::run_audit(args)),
        Command::Model(cmd) => model_cmd::run_model(cmd),
        #[cfg(feature = "llm")]
        Command::Demo(args) => block_on(demo_cmd::run_demo(args)),
        #[cfg(feature = "llm")]
        Command::Oracle(cmd) => block_on(oracle_cmd::run_oracle(cmd)),
        Command::Up(args) => block_on(up_cmd::run_up(args, log)),
        Command::Plan(args) => block_on(agent_cmd::run_plan(args)),
        Command::AgentRun(args) => block_on(agent_cmd::run_agent(args)),
        Command::X402(cmd) => block_on(x402_cmd::run_x402(cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
