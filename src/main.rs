//! `agora`: the command-line entry point of the Agora agent framework.
//!
//! The binary only parses arguments, sets up logging and calls into the library
//! crates; see `agora --help`.

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Wallet(cmd) => wallet_cmd::run_wallet(cmd),
        Command::Journal(cmd) => wallet_cmd::run_journal(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
