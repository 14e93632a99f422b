//! `agora demo "<trip request>"`: the reference story end to end, on the embedded
//! chain and the real small model, then exit (see [`deploy::demo`]). Prints the
//! agents as they start, the itinerary, the deal and the journals' paths.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use deploy::config::{Config, Network};
use deploy::dashboard::{Dashboard, DashboardOptions};
use deploy::demo::{self, Demo, DemoEvent, DemoOutcome};
use deploy::layout::read_addresses;
use registry::devnet::{Devnet, DevnetConfig};
use wallets::Amount;

use crate::wallet_cmd::agora_home;

/// Run the travel/weather story once.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The trip request, in words, e.g. "3 days in Lisbon in July, food and museums".
    request: String,
    /// The deployment file.
    #[arg(long, default_value = "agents.toml")]
    config: PathBuf,
    /// Directory for chain data, agent stores and journals (default: a new directory
    /// under $AGORA_HOME/demo).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The most the travel agent pays for a forecast.
    #[arg(long, default_value = "2 USDC")]
    max_price: Amount,
    /// After the story, reopen its chain and serve the dashboard of its deal, balances
    /// and journals until Ctrl-C (default address 127.0.0.1:7400; off loopback it
    /// needs a token in $AGORA_DASHBOARD_TOKEN).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7400")]
    serve: Option<SocketAddr>,
}

pub(crate) async fn run_demo(args: DemoArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let chain_id = match config.network {
        Network::Embedded { chain_id, .. } => chain_id,
        Network::Rpc { chain_id, .. } => chain_id,
    };
    let kept = config.clone();
    let dir = match args.dir {
        Some(d) => d,
        None => agora_home()
            .join("demo")
            .join(format!("{}", std::process::id())),
    };
    let demo = Demo {
        config,
        dir,
        model: crate::model_cmd::default_model_path()?,
        request: args.request,
        max_price: args.max_price,
    };
    let done = demo::run(demo, |event| match event {
        DemoEvent::LoadingModel(path) => eprintln!("loading the model {}", path.display()),
        DemoEvent::StartingChain(dir) => {
            eprintln!("starting the embedded chain in {}", dir.display());
        }
        DemoEvent::Selling {
            name,
            address,
            price,
        } => println!("{name:<10} {address} sells weather.forecast at {price}"),
        DemoEvent::Funded {
            name,
            address,
            amount,
        } => println!("{name:<10} {address} has {amount}"),
        DemoEvent::Planning => eprintln!("planning the trip"),
        _ => {}
    })
    .await
    .with_context(|| format!("the demo of {}", args.config.display()))?;

    let ((seller, seller_address), (buyer, _)) = (&done.seller, &done.buyer);
    println!("\n{}", done.itinerary);
    println!("deal:");
    println!("  seller:   {seller} {seller_address}");
    println!("  price:    {}", done.price);
    println!("  payment:  authorization (EIP-3009 transferWithAuthorization)");
    println!("  tx:       {}", done.tx_hash);
    println!(
        "  balances: {seller} {}, {buyer} {}",
        done.balances.0, done.balances.1
    );
    println!(
        "chain:    {} (addresses in {})",
        done.chain_dir.display(),
        done.addresses_path.display()
    );
    println!("journals:");
    for j in &done.journals {
        println!("  {} ({} entries, verified)", j.path.display(), j.entries);
    }
    if let Some(listen) = args.serve {
        serve(&done, kept, chain_id, listen).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reopens the demo's chain and serves the dashboard of its run until Ctrl-C.
async fn serve(
    done: &DemoOutcome,
    mut config: Config,
    chain_id: u64,
    listen: SocketAddr,
) -> Result<()> {
    // The demo's agents only (an LLM seller of the deployment takes no part).
    config
        .agents
        .retain(|a| done.agents.iter().any(|(name, ..)| *name == a.name));
    let mut devnet = DevnetConfig::new(&done.chain_dir);
    devnet.chain_id = chain_id;
    devnet.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let node = Devnet::spawn(devnet)
        .await
        .context("reopening the demo's chain")?;
    let dashboard = Dashboard::start(DashboardOptions {
        listen,
        token: deploy::dashboard::token_from_env(),
        journals: done
            .agents
            .iter()
            .map(|(name, _, journal)| (name.clone(), journal.clone()))
            .collect(),
        cache_dir: done.chain_dir.with_file_name("dashboard"),
        config,
        rpc_url: node.http_url(),
        addresses: read_addresses(&done.addresses_path)?,
        refresh: Duration::from_secs(1),
    })
    .await;
    let dashboard = match dashboard {
        Ok(d) => d,
        Err(e) => {
            node.shutdown().await;
            return Err(e.into());
        }
    };
    for (name, address, _) in &done.agents {
        dashboard.agent_status(name, *address, "finished");
    }
    let mut stop = crate::signals::Stop::listen();
    println!(
        "\ndashboard: {} (the demo's chain at {}; Ctrl-C to stop)",
        dashboard.url(),
        node.http_url()
    );
    if let Ok(stop) = &mut stop {
        stop.recv().await;
    }
    drop(dashboard);
    node.shutdown().await;
    stop.map(drop)
}
