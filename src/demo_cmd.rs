//! `agora demo "<trip request>"`: the reference story end to end, on the embedded
//! chain and the real small model, then exit (see [`deploy::demo`]). Prints the
//! agents as they start, the itinerary, the deal and the journals' paths.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use deploy::config::Config;
use deploy::demo::{self, Demo, DemoEvent};
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
}

pub(crate) async fn run_demo(args: DemoArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
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
    Ok(ExitCode::SUCCESS)
}
