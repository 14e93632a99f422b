//! `agora`: the command-line entry point of the Agora agent framework.
//!
//! The binary only parses arguments, sets up logging and calls into the library
//! crates; see `agora --help`.

mod chain_cmd;
mod wallet_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Agora: autonomous economic agents that find, hire and pay each other.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect and use agent wallets (keystores, signatures).
    #[command(subcommand)]
    Wallet(wallet_cmd::WalletCommand),
    /// Inspect payment journals.
    #[command(subcommand)]
    Journal(wallet_cmd::JournalCommand),
    /// Serve the embedded devnet (JSON-RPC over HTTP and WebSocket) and deploy the contracts.
    Chain(chain_cmd::ChainArgs),
    /// Register agents and look them up in the on-chain registry.
    #[command(subcommand)]
    Registry(chain_cmd::RegistryCommand),
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGORA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Wallet(cmd) => wallet_cmd::run_wallet(cmd),
        Command::Journal(cmd) => wallet_cmd::run_journal(cmd),
        Command::Chain(args) => block_on(chain_cmd::run_chain(args)),
        Command::Registry(cmd) => block_on(chain_cmd::run_registry(cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
