//! `agora x402 …`: x402 v2 payments over HTTP (logic in the `x402` crate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use registry::chain::{self, Addresses};
use x402::{Facilitator, FacilitatorConfig};

use crate::chain_cmd::{addresses_path, default_data_dir, load_wallet};
use crate::wallet_cmd::{agora_home, PasswordArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum X402Command {
    /// Serve the x402 facilitator API (POST /verify, POST /settle, GET /supported) for
    /// the node's chain: verify `exact` EVM payments and settle them from the keystore's
    /// account, which pays the gas. Point any x402 resource server (the official Python
    /// or TypeScript middleware) at the printed URL.
    Facilitator(FacilitatorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FacilitatorArgs {
    /// JSON-RPC URL of the node.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc: String,
    /// The relayer's keystore: its account sends the settling transactions.
    #[arg(long)]
    keystore: PathBuf,
    #[command(flatten)]
    password: PasswordArgs,
    /// The deployment's addresses.json, whose stablecoin is settled (default:
    /// $AGORA_HOME/chain/addresses.json). Not read when --asset is given.
    #[arg(long)]
    addresses: Option<PathBuf>,
    /// An EIP-3009 token to settle instead of the deployment's stablecoin (repeatable).
    #[arg(long = "asset")]
    assets: Vec<wallets::Address>,
    /// Address to serve on; port 0 picks a free one (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The record of settled payments (default:
    /// `$AGORA_HOME/x402-facilitator/<chain id>-<relayer>`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(crate) async fn run_x402(cmd: X402Command) -> Result<ExitCode> {
    match cmd {
        X402Command::Facilitator(args) => run_facilitator(args).await,
    }
}

async fn run_facilitator(args: FacilitatorArgs) -> Result<ExitCode> {
    let (assets, from_block) = if args.assets.is_empty() {
        let path = args
            .addresses
            .clone()
            .unwrap_or_else(|| addresses_path(&default_data_dir()));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `agora chain` first, or pass --addresses or --asset)",
                path.display()
            )
        })?;
        let a: Addresses = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an addresses file", path.display()))?;
        (vec![wallets::Address(a.stablecoin.0)], a.deployed_at)
    } else {
        (args.assets.clone(), 0)
    };
    let wallet = load_wallet(args.keystore.clone(), &args.password).await?;
    let client = chain::connect(&args.rpc, wallet).await?;
    let store = args.data_dir.clone().unwrap_or_else(|| {
        agora_home().join("x402-facilitator").join(format!(
            "{}-{}",
            chain::chain_id_of(&client),
            chain::address_of(&client)
        ))
    });
    let facilitator = std::sync::Arc::new(Facilitator::new(
        client,
        FacilitatorConfig {
            assets: assets.clone(),
            store: store.clone(),
            from_block,
        },
    )?);
    let server = x402::facilitator::serve(facilitator.clone(), args.listen).await?;
    println!("x402 facilitator: {}", server.url());
    println!("network:   {}", facilitator.network());
    println!("relayer:   {}", facilitator.relayer());
    for asset in &assets {
        println!("settles:   {asset}");
    }
    println!("record:    {}", store.display());
    let mut stop = crate::signals::Stop::listen()?;
    println!("serving; Ctrl-C to stop");
    stop.recv().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
