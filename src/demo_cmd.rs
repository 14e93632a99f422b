//! `agora demo "<trip request>"`: the reference story end to end, on the embedded
//! chain and the real small model, then exit.
//!
//! Starts the embedded chain in a fresh directory and deploys the contracts, starts
//! the weather agents of agents.toml (selling `weather.forecast` at their configured
//! prices from the offline climatology data) and its travel agent (spending policy from
//! agents.toml, 100 USDC minted to it), loads the model, and has the travel agent plan
//! the trip: it hires the best weather offer within its budget, pays it by EIP-3009
//! authorization through its spending policy, receives the forecast and writes the
//! itinerary. Prints the itinerary, the deal and the journals' paths.
//!
//! On the embedded chain the demo's agents use the chain's prefunded dev accounts (the
//! weather agents pay the gas of settling), not the keystores of agents.toml, and
//! listen on one free loopback port; `agora up` will run the configured identities.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent_sdk::{AgentBuilder, Host, HostConfig, Peer, StaticDirectory};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use llm::{LlmConfig, LlmEngine};
use negotiation::{
    token_domain, Buyer, ChainSettlement, ChainVerifier, DefaultSellerStrategy, PaymentMode, Seller,
};
use registry::chain::{self, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use travel::TravelPlanner;
use wallets::{journal, Amount, Journal, SpendingPolicy};
use weather::{ClimatologyProvider, WeatherProvider, WeatherService, FORECAST_KIND};

use crate::wallet_cmd::agora_home;
use deploy::config::{self, Network};

use deploy::TOKEN;

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
    let config = config::Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Network::Embedded { chain_id, .. } = config.network else {
        bail!(
            "{}: agora demo runs on the embedded chain; set [network] kind = \"embedded\"",
            args.config.display()
        );
    };
    let travel_cfg = config
        .agents
        .iter()
        .find(|a| a.skills.contains("travel"))
        .with_context(|| format!("{}: no agent has the travel skill", args.config.display()))?;
    let weather_cfgs: Vec<_> = config
        .agents
        .iter()
        .filter_map(|a| {
            a.services
                .iter()
                .find(|s| s.skill == FORECAST_KIND)
                .map(|s| (a, s.price))
        })
        .collect();
    if weather_cfgs.is_empty() {
        bail!("{}: no agent sells {FORECAST_KIND}", args.config.display());
    }
    let dir = match args.dir {
        Some(d) => d,
        None => agora_home()
            .join("demo")
            .join(format!("{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // The model first: the slowest part, with progress.
    let model = crate::model_cmd::default_model_path()?;
    eprintln!("loading the model {}", model.display());
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let engine = LlmEngine::shared(
        LlmConfig::new(model)
            .with_threads(threads)
            .with_max_sequences(2)
            .with_context_per_sequence(1024),
    )?;

    eprintln!(
        "starting the embedded chain in {}",
        dir.join("chain").display()
    );
    let mut devnet = DevnetConfig::new(dir.join("chain"));
    devnet.chain_id = chain_id;
    let node = Devnet::spawn(devnet).await?;
    let url = node.http_url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await?;
    let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev()).await?;
    let addresses_path = dir.join("chain").join("addresses.json");
    std::fs::write(
        &addresses_path,
        serde_json::to_string_pretty(&addresses)? + "\n",
    )
    .with_context(|| format!("writing {}", addresses_path.display()))?;
    let host = Host::spawn(
        HostConfig::new(addresses.chain_id, dir.join("host"))
            .name("demo")
            .listen("127.0.0.1:0".parse()?),
    )?;

    let provider: Arc<dyn WeatherProvider> = Arc::new(ClimatologyProvider::new()?);
    let mut directory = StaticDirectory::default();
    let mut names = Vec::new();
    for (i, (agent, price)) in weather_cfgs.iter().enumerate() {
        let wallet = Arc::new(dev_wallet(2 + u32::try_from(i)?));
        let settlement = ChainSettlement::connect(&url, wallet.clone(), &addresses, TOKEN).await?;
        let journal = Journal::open(dir.join(format!("{}.journal", agent.name)), wallet.clone())?;
        let floor = deploy::seller_floor(*price);
        let seller = Seller::new(
            FORECAST_KIND,
            wallet.clone(),
            DefaultSellerStrategy::new(*price, floor),
            WeatherService::new(provider.clone()),
            settlement,
            journal,
        );
        let handle = seller
            .install(AgentBuilder::new(agent.name.clone()).wallet(wallet))
            .spawn(&host)?;
        directory = directory.with(
            FORECAST_KIND,
            Peer {
                address: handle.address(),
                endpoint: None,
                price: Some(*price),
            },
        );
        names.push((handle.address(), agent.name.clone()));
        println!(
            "{:<10} {} sells {FORECAST_KIND} at {price}",
            agent.name,
            handle.address()
        );
    }

    let wallet = Arc::new(dev_wallet(1));
    let policy = Arc::new(addresses.pin(
        SpendingPolicy::open(
            dir.join(format!("{}.policy", travel_cfg.name)),
            wallet.clone(),
            travel_cfg.policy.clone(),
        )?,
        TOKEN,
    ));
    let journal_path = dir.join(format!("{}.journal", travel_cfg.name));
    let buyer = Buyer::new(
        wallet.clone(),
        token_domain(&addresses, TOKEN),
        Journal::open(&journal_path, wallet.clone())?,
    )
    .with_verifier(ChainVerifier::connect(&url, &addresses).await?);
    let travel = AgentBuilder::new(travel_cfg.name.clone())
        .wallet(wallet)
        .policy(policy)
        .directory(directory)
        .spawn(&host)?;
    minter.mint(travel.address(), "100 USDC".parse()?).await?;
    println!("{:<10} {} has 100 USDC", travel_cfg.name, travel.address());

    let planner = TravelPlanner::new(engine)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let today = chrono::DateTime::from_timestamp(i64::try_from(now)?, 0)
        .map(|t| t.date_naive())
        .context("the system clock is out of range")?;
    eprintln!("planning: {}", args.request);
    let plan = planner
        .plan_and_hire(
            &travel.context(),
            &buyer,
            &args.request,
            today,
            args.max_price,
            PaymentMode::Authorization,
        )
        .await?;

    let seller = plan.deal.seller();
    let seller_name = names
        .iter()
        .find(|(a, _)| *a == seller)
        .map_or("?", |(_, n)| n.as_str());
    println!("\n{}", plan.itinerary.text);
    println!("deal:");
    println!("  seller:   {seller_name} {seller}");
    println!("  price:    {}", plan.deal.price());
    println!("  payment:  authorization (EIP-3009 transferWithAuthorization)");
    println!("  tx:       {}", plan.deal.delivery.settlement.tx_hash);
    println!(
        "  balances: {seller_name} {}, {} {}",
        minter.balance_of(seller).await?,
        travel_cfg.name,
        minter.balance_of(travel.address()).await?
    );
    println!(
        "chain:    {} (addresses in {})",
        dir.join("chain").display(),
        addresses_path.display()
    );
    println!("journals:");
    let seller_journal = dir.join(format!("{seller_name}.journal"));
    for (path, who) in [(&journal_path, travel.address()), (&seller_journal, seller)] {
        let report = journal::verify(path, Some(who))?;
        println!(
            "  {} ({} entries, verified)",
            path.display(),
            report.entries
        );
    }
    drop(host);
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
