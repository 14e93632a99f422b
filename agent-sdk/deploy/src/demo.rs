//! The reference story once, end to end, in this process: what `agora demo` runs.
//!
//! [`run`] starts the embedded chain in a fresh directory and deploys the contracts,
//! starts the weather agents of the deployment (selling `weather.forecast` at their
//! configured prices from the offline climatology data, conceding down to
//! [`seller_floor`](crate::seller_floor)) and its travel agent (its spending policy
//! from the deployment, [`DEMO_FUNDS`] minted to it), loads the model, and has the
//! travel agent plan the trip: it hires the best weather offer within `max_price`,
//! pays it by EIP-3009 authorization through its spending policy, receives the
//! forecast and writes the itinerary. Every journal is verified before [`run`]
//! returns.
//!
//! The demo's agents use the embedded chain's prefunded dev accounts (the weather
//! agents pay the gas of settling), not the deployment's keystores, share one host on
//! a loopback port of the system's choosing, and find each other through a static
//! directory: nothing of it outlives the run but its directory. `agora up` runs the
//! configured identities.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_sdk::{AgentBuilder, Host, HostConfig, Peer, StaticDirectory};
use llm::{LlmConfig, LlmEngine};
use negotiation::{token_domain, Buyer, ChainSettlement, ChainVerifier, PaymentMode};
use registry::chain::{self, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use travel::TravelPlanner;
use wallets::{journal, Address, Amount, Journal, SpendingPolicy, B256};
use weather::{ClimatologyProvider, WeatherProvider, FORECAST_KIND};

use crate::config::{Config, Network};
use crate::layout::write_json_atomically;
use crate::{Error, Result, TOKEN};

/// What the demo's travel agent is given to spend.
pub const DEMO_FUNDS: Amount = Amount::from_base_units(100_000_000);

/// One run of the demo.
#[derive(Clone, Debug)]
pub struct Demo {
    /// The deployment: its weather sellers and its travel agent.
    pub config: Config,
    /// Where the chain data, the agents' stores and the journals go.
    pub dir: PathBuf,
    /// The model of the travel agent.
    pub model: PathBuf,
    /// The trip request, in words.
    pub request: String,
    /// The most the travel agent pays for a forecast.
    pub max_price: Amount,
}

/// What a run reports while it works, in this order.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DemoEvent {
    /// The model is being loaded (the slowest step).
    LoadingModel(PathBuf),
    /// The chain is starting in this directory.
    StartingChain(PathBuf),
    /// A weather agent serves.
    Selling {
        /// Its name in the deployment.
        name: String,
        /// Its address.
        address: Address,
        /// Its listed price.
        price: Amount,
    },
    /// The travel agent was funded.
    Funded {
        /// Its name in the deployment.
        name: String,
        /// Its address.
        address: Address,
        /// What it holds.
        amount: Amount,
    },
    /// The travel agent is planning.
    Planning,
}

/// A verified journal of the run.
#[derive(Clone, Debug)]
pub struct VerifiedJournal {
    /// The file.
    pub path: PathBuf,
    /// Its signer.
    pub signer: Address,
    /// How many entries it holds (all verified).
    pub entries: u64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// The itinerary, in words.
    pub itinerary: String,
    /// The weather agent hired: its name and address.
    pub seller: (String, Address),
    /// The travel agent: its name and address.
    pub buyer: (String, Address),
    /// The agreed price.
    pub price: Amount,
    /// The transaction that paid it.
    pub tx_hash: B256,
    /// The seller's and the buyer's stablecoin balances after the deal.
    pub balances: (Amount, Amount),
    /// The chain's data directory.
    pub chain_dir: PathBuf,
    /// The deployed contracts' addresses file.
    pub addresses_path: PathBuf,
    /// The buyer's and the seller's journals, verified.
    pub journals: Vec<VerifiedJournal>,
    /// Every agent of the run: its name, address and journal.
    pub agents: Vec<(String, Address, PathBuf)>,
}

/// Runs the demo once (see the module's documentation), reporting its steps to
/// `progress`.
///
/// # Errors
/// [`Error::Composition`] when the deployment is not on the embedded chain, has no
/// travel agent or no weather seller; the errors of loading the model, starting the
/// chain, deploying, starting the agents, planning and hiring, and verifying the
/// journals.
pub async fn run(demo: Demo, progress: impl Fn(DemoEvent)) -> Result<DemoOutcome> {
    let Demo {
        config,
        dir,
        model,
        request,
        max_price,
    } = demo;
    let invalid = |reason: String| composition("demo", reason);
    let Network::Embedded { chain_id, .. } = config.network else {
        return Err(invalid(
            "the demo runs on the embedded chain; set [network] kind = \"embedded\"".into(),
        ));
    };
    let travel_cfg = config
        .agents
        .iter()
        .find(|a| a.skills.contains("travel"))
        .ok_or_else(|| invalid("no agent has the travel skill".into()))?;
    let sellers: Vec<_> = config
        .agents
        .iter()
        .filter_map(|a| {
            a.services
                .iter()
                .find(|s| s.skill == FORECAST_KIND)
                .map(|s| (a.name.clone(), s.price))
        })
        .collect();
    if sellers.is_empty() {
        return Err(invalid(format!("no agent sells {FORECAST_KIND}")));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;

    // The model first: the slowest part.
    progress(DemoEvent::LoadingModel(model.clone()));
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let engine = LlmEngine::shared(
        LlmConfig::new(model)
            .with_threads(threads)
            .with_max_sequences(2)
            .with_context_per_sequence(1024),
    )?;

    let chain_dir = dir.join("chain");
    progress(DemoEvent::StartingChain(chain_dir.clone()));
    let mut devnet = DevnetConfig::new(&chain_dir);
    devnet.chain_id = chain_id;
    let node = Devnet::spawn(devnet).await?;
    let outcome = on_chain(
        &node.http_url(),
        &dir,
        &chain_dir,
        travel_cfg,
        &sellers,
        engine,
        &request,
        max_price,
        &progress,
    )
    .await;
    node.shutdown().await;
    outcome
}

/// The part of [`run`] with the chain up (stopped by the caller, whatever this
/// returns).
#[allow(clippy::too_many_arguments)]
async fn on_chain(
    url: &str,
    dir: &Path,
    chain_dir: &Path,
    travel_cfg: &crate::config::AgentConfig,
    sellers: &[(String, Amount)],
    engine: Arc<LlmEngine>,
    request: &str,
    max_price: Amount,
    progress: &impl Fn(DemoEvent),
) -> Result<DemoOutcome> {
    let deployer = chain::connect(url, Arc::new(dev_wallet(0))).await?;
    let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev()).await?;
    let addresses_path = chain_dir.join("addresses.json");
    write_json_atomically(&addresses_path, &addresses)?;
    let host = Host::spawn(
        HostConfig::new(addresses.chain_id, dir.join("host"))
            .name("demo")
            .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    )?;

    let provider: Arc<dyn WeatherProvider> = Arc::new(ClimatologyProvider::new()?);
    let mut directory = StaticDirectory::default();
    let mut names = Vec::new();
    for (i, (name, price)) in (2u32..).zip(sellers) {
        let wallet = Arc::new(dev_wallet(i));
        let settlement = ChainSettlement::connect(url, wallet.clone(), &addresses, TOKEN)
            .await
            .map_err(|e| composition(name, format!("its settlement: {e}")))?;
        let journal = Journal::open(dir.join(format!("{name}.journal")), wallet.clone())?;
        let seller = crate::agent::forecast_seller(
            wallet.clone(),
            *price,
            provider.clone(),
            settlement,
            journal,
        );
        let handle = seller
            .install(AgentBuilder::new(name.clone()).wallet(wallet))
            .spawn(&host)?;
        directory = directory.with(
            FORECAST_KIND,
            Peer {
                address: handle.address(),
                endpoint: None,
                price: Some(*price),
            },
        );
        names.push((handle.address(), name.clone()));
        progress(DemoEvent::Selling {
            name: name.clone(),
            address: handle.address(),
            price: *price,
        });
    }

    let travel_name = travel_cfg.name.clone();
    let wallet = Arc::new(dev_wallet(1));
    let policy = Arc::new(addresses.pin(
        SpendingPolicy::open(
            dir.join(format!("{travel_name}.policy")),
            wallet.clone(),
            travel_cfg.policy.clone(),
        )?,
        TOKEN,
    ));
    let journal_path = dir.join(format!("{travel_name}.journal"));
    let verifier = ChainVerifier::connect(url, &addresses)
        .await
        .map_err(|e| composition(&travel_name, format!("its payment verifier: {e}")))?;
    let buyer = Buyer::new(
        wallet.clone(),
        token_domain(&addresses, TOKEN),
        Journal::open(&journal_path, wallet.clone())?,
    )
    .with_verifier(verifier);
    let travel = AgentBuilder::new(travel_name.clone())
        .wallet(wallet)
        .policy(policy)
        .directory(directory)
        .spawn(&host)?;
    minter.mint(travel.address(), DEMO_FUNDS).await?;
    progress(DemoEvent::Funded {
        name: travel_name.clone(),
        address: travel.address(),
        amount: DEMO_FUNDS,
    });

    let planner = TravelPlanner::new(engine)?;
    let today = crate::travel_agent::today(&travel.context())
        .ok_or_else(|| composition(&travel_name, "its clock is out of range".into()))?;
    progress(DemoEvent::Planning);
    let plan = planner
        .plan_and_hire(
            &travel.context(),
            &buyer,
            request,
            today,
            max_price,
            PaymentMode::Authorization,
        )
        .await?;

    let seller = plan.deal.seller();
    let seller_name = names
        .iter()
        .find(|(a, _)| *a == seller)
        .map_or_else(|| "?".to_owned(), |(_, n)| n.clone());
    let balances = (
        minter.balance_of(seller).await?,
        minter.balance_of(travel.address()).await?,
    );
    let mut journals = Vec::new();
    for (path, signer) in [
        (journal_path, travel.address()),
        (dir.join(format!("{seller_name}.journal")), seller),
    ] {
        let report = journal::verify(&path, Some(signer))?;
        journals.push(VerifiedJournal {
            path,
            signer,
            entries: report.entries,
        });
    }
    drop(host);
    let mut agents: Vec<(String, Address, PathBuf)> = names
        .into_iter()
        .map(|(a, n)| {
            let journal = dir.join(format!("{n}.journal"));
            (n, a, journal)
        })
        .collect();
    agents.insert(
        0,
        (
            travel_name.clone(),
            travel.address(),
            dir.join(format!("{travel_name}.journal")),
        ),
    );
    Ok(DemoOutcome {
        itinerary: plan.itinerary.text,
        seller: (seller_name, seller),
        buyer: (travel_name, travel.address()),
        price: plan.deal.price(),
        tx_hash: plan.deal.delivery.settlement.tx_hash,
        balances,
        chain_dir: chain_dir.to_owned(),
        addresses_path,
        journals,
        agents,
    })
}

fn composition(agent: &str, reason: String) -> Error {
    Error::Composition {
        agent: agent.to_owned(),
        reason,
    }
}
