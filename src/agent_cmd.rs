//! One agent of agents.toml in this process (`agora agent-run`, started by `agora up`),
//! and `agora plan`, which asks a running travel agent for a trip.
//!
//! An agent process opens its keystore (password from its `password_env` variable),
//! serves its host on its configured listen address with its store, journal and
//! spending policy under the state directory, registers itself in the `AgentRegistry`
//! (or updates its record when the endpoint or the services changed), prints
//! `READY <ws url> <address>` on standard output, and serves until its standard input
//! closes (the supervisor's way of asking it to stop), Ctrl-C or SIGTERM.
//!
//! Skills: `weather` sells `weather.forecast` at the configured price from the offline
//! climatology data (a [`Seller`]); `travel` serves [`PlanTrip`] (`travel.Plan`): it
//! plans the trip with the local model, hires a weather agent found in the registry,
//! pays it through its spending policy and writes the itinerary. When a hire fails
//! before anything was agreed (the chosen seller died, timed out or declined), it tries
//! again, and the sellers that still answer win.
//!
//! Paid work is done only for a principal: the sender of a `travel.Plan` must be one
//! of the agent's `principals` in agents.toml, with a mandate that covers the skill,
//! and the most the trip may spend comes from that mandate (its `max_per_request`,
//! or what is left of its daily budget), never from the request
//! ([`wallets::Mandates`]). Anyone else is refused with the reason, and nothing is
//! spent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::registry::Discovery;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use negotiation::{ChainSettlement, DefaultSellerStrategy, Seller};
use registry::chain::{self, Addresses, Deployment};
use tokio::io::AsyncReadExt;
use wallets::Journal;
use weather::{ClimatologyProvider, WeatherProvider, WeatherService, FORECAST_KIND};

use crate::config::{AgentConfig, Config};
use crate::up_cmd::{self, agent_dir, agent_wallet, parse_duration, UpState, TOKEN};

/// The travel agent's skill: plan a trip from a request in words, for a principal of
/// the agent. The most it spends comes from the principal's mandate.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PlanTrip {
    /// The request, e.g. "3 days in Lisbon in July, food and museums".
    pub(crate) request: String,
}

/// A planned trip.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlannedTrip {
    /// The itinerary.
    pub(crate) itinerary: String,
    /// The weather agent that was hired and paid.
    pub(crate) seller: String,
    /// What it was paid.
    pub(crate) price: String,
    /// The settling transaction.
    pub(crate) tx_hash: String,
    /// Hiring attempts it took (more than one when a seller failed).
    pub(crate) attempts: u32,
}

impl Request for PlanTrip {
    const KIND: &'static str = "travel.Plan";
    type Response = PlannedTrip;
}

/// How often a seller agent closes its expired deals and settles its due channels
/// ([`Seller::upkeep`]); channels stay settleable for an hour after their deadline.
const SELLER_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

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

/// A chain client for an agent, with the deployment's fee cap.
async fn connect(rpc: &str, wallet: Arc<Wallet>, config: &Config) -> Result<Arc<chain::Client>> {
    Ok(chain::connect_with_fee_cap(
        rpc,
        wallet,
        chain::RetryPolicy::default(),
        config.max_tx_fee_wei,
    )
    .await?)
}

pub(crate) async fn run_agent(args: AgentRunArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let agent = config
        .agents
        .iter()
        .find(|a| a.name == args.name)
        .with_context(|| format!("{}: no agent {:?}", args.config.display(), args.name))?
        .clone();
    let addresses = up_cmd::read_addresses(&args.addresses)?;
    let wallet = agent_wallet(&args.config, &agent).await?;
    let dir = agent_dir(&args.dir, &agent.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let host = Host::spawn(
        HostConfig::new(addresses.chain_id, dir.join("host"))
            .name(agent.name.clone())
            .listen(agent.listen)
            .workers(2),
    )?;
    let url = host.url().context("the host does not listen")?;
    let discovery = Arc::new(
        Discovery::open(dir.join("discovery"), &args.rpc, addresses)
            .await
            .context("opening the registry discovery cache")?,
    );
    let mut builder = AgentBuilder::new(agent.name.clone()).wallet(wallet.clone());
    let mut seller = None;
    if agent.skills.contains("weather") {
        let service = agent
            .services
            .iter()
            .find(|s| s.skill == FORECAST_KIND)
            .with_context(|| {
                format!(
                    "agent {} runs the weather skill but sells no {FORECAST_KIND} service",
                    agent.name
                )
            })?;
        let provider: Arc<dyn WeatherProvider> = Arc::new(ClimatologyProvider::new()?);
        let client = connect(&args.rpc, wallet.clone(), &config).await?;
        let settlement = ChainSettlement::with_client(client, &addresses, TOKEN);
        let journal = Journal::open(dir.join("journal"), wallet.clone())?;
        let floor = Amount::from_base_units(service.price.base_units() / 10 * 8);
        let weather = Seller::new(
            FORECAST_KIND,
            wallet.clone(),
            DefaultSellerStrategy::new(service.price, floor),
            WeatherService::new(provider),
            settlement,
            journal,
        );
        builder = weather.install(builder);
        seller = Some(weather);
    }
    #[cfg(feature = "llm")]
    let travel = if agent.skills.contains("travel") {
        let (b, travel) = travel_agent::install(
            builder,
            &args,
            &agent,
            &addresses,
            wallet.clone(),
            &dir,
            discovery.clone(),
        )
        .await?;
        builder = b;
        Some(travel)
    } else {
        None
    };
    #[cfg(not(feature = "llm"))]
    if agent.skills.contains("travel") {
        bail!("this agora binary was built without the `llm` feature; the travel agent needs it");
    }
    let handle = builder.spawn(&host)?;
    // Expired deals are closed and channels settled before they expire, without
    // waiting for the next buyer.
    let upkeep = seller.map(|s| s.spawn_upkeep(handle.context(), SELLER_UPKEEP_EVERY));
    #[cfg(feature = "llm")]
    if let Some(travel) = travel {
        travel.resume(&handle).await;
    }

    register(
        &args,
        &config,
        &agent,
        &discovery,
        &addresses,
        wallet.clone(),
        &url,
    )
    .await?;
    tracing::info!(target: "agora::agent", agent = %agent.name, address = %handle.address(), %url, "agent serving");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {url} {}", handle.address())?;
        out.flush()?;
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!(target: "agora::agent", agent = %agent.name, "stopping");
    if let Some(u) = upkeep {
        u.abort();
    }
    drop(handle);
    tokio::task::spawn_blocking(move || host.shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Registers the agent, or updates its record when the endpoint or services changed.
async fn register(
    args: &AgentRunArgs,
    config: &Config,
    agent: &AgentConfig,
    discovery: &Discovery,
    addresses: &Addresses,
    wallet: Arc<Wallet>,
    url: &str,
) -> Result<()> {
    up_cmd::sync_with_progress(discovery, "the agent registry").await?;
    let services = agent
        .services
        .iter()
        .map(|s| chain::service(&s.skill, s.price, &s.unit))
        .collect::<Result<Vec<_>, _>>()?;
    let card = format!(
        "http://{}/card/{}",
        url.trim_start_matches("ws://"),
        wallet.address()
    );
    let address = wallet.address();
    let contracts = Deployment::at(connect(&args.rpc, wallet, config).await?, addresses);
    match discovery.agent_at(address)? {
        None => {
            let tx = contracts
                .register_agent(url, &card, wallets::B256::default(), services)
                .await?;
            tracing::info!(target: "agora::agent", agent = %agent.name, %tx, "registered");
        }
        Some(record) => {
            let same = record.endpoint == url
                && record.services.len() == agent.services.len()
                && agent.services.iter().all(|s| {
                    record
                        .services
                        .iter()
                        .any(|r| r.skill == s.skill && r.price == s.price && r.unit == s.unit)
                });
            if same {
                tracing::info!(target: "agora::agent", agent = %agent.name, "already registered");
            } else {
                let tx = contracts
                    .update_agent(url, &card, wallets::B256::default(), services)
                    .await?;
                tracing::info!(target: "agora::agent", agent = %agent.name, %tx, "registration updated");
            }
        }
    }
    Ok(())
}

#[cfg(feature = "llm")]
mod travel_agent {
    use std::path::Path;

    use ::travel::TravelPlanner;
    use agent_sdk::registry::RegistryDirectory;
    use llm::{LlmConfig, LlmEngine};
    use negotiation::{token_domain, Buyer, BuyerDeal, PaymentMode};
    use wallets::{Mandates, SpendingPolicy};

    use super::*;

    /// Hiring attempts per trip.
    const ATTEMPTS: u32 = 3;

    /// The travel agent's parts.
    #[derive(Clone)]
    pub(super) struct Travel {
        planner: TravelPlanner,
        buyer: Buyer,
        /// The principals who may commission trips, and what they spent.
        mandates: Arc<Mandates>,
    }

    /// Loads the model, opens the policy and journal, adds the `travel.Plan` skill and
    /// the registry directory to `builder`.
    pub(super) async fn install(
        builder: AgentBuilder,
        args: &AgentRunArgs,
        agent: &AgentConfig,
        addresses: &Addresses,
        wallet: Arc<Wallet>,
        dir: &Path,
        discovery: Arc<Discovery>,
    ) -> Result<(AgentBuilder, Travel)> {
        let model = match &agent.model {
            Some(m) => up_cmd::base_dir(&args.config).join(m),
            None => tokio::task::spawn_blocking(crate::model_cmd::default_model_path).await??,
        };
        let engine = load_model(model).await?;
        let planner = TravelPlanner::new(engine)?;
        let policy = Arc::new(addresses.pin(
            SpendingPolicy::open(dir.join("policy"), wallet.clone(), agent.policy.clone())?,
            TOKEN,
        ));
        let buyer = Buyer::new(
            wallet.clone(),
            token_domain(addresses, TOKEN),
            Journal::open(dir.join("journal"), wallet)?,
        );
        if agent.principals.is_empty() {
            tracing::warn!(target: "agora::agent", agent = %agent.name,
                "no principals are configured: every travel.Plan will be refused");
        }
        let mandates = Arc::new(Mandates::open(
            dir.join("mandates"),
            agent.principals.clone(),
        )?);
        let travel = Travel {
            planner,
            buyer,
            mandates,
        };
        let skill = travel.clone();
        let builder = builder
            .policy(policy)
            .directory(RegistryDirectory::new(discovery))
            .skill(skill_fn(move |ctx: Context, req: PlanTrip| {
                let t = skill.clone();
                async move { t.plan(&ctx, req).await }
            }));
        Ok((builder, travel))
    }

    async fn load_model(model: PathBuf) -> Result<Arc<LlmEngine>> {
        use std::io::IsTerminal;
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let message = format!("loading the model {}", model.display());
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner().with_message(message);
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            eprintln!("{message}");
            None
        };
        let engine = tokio::task::spawn_blocking(move || {
            LlmEngine::shared(
                LlmConfig::new(model)
                    .with_threads(threads)
                    .with_max_sequences(2)
                    .with_context_per_sequence(1024),
            )
            .map_err(anyhow::Error::from)
        })
        .await?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        engine
    }

    impl Travel {
        /// Finishes deals a previous run left agreed but unpaid or undelivered.
        pub(super) async fn resume(&self, handle: &AgentHandle) {
            match self.buyer.resume(&handle.context()).await {
                Ok(outcomes) => {
                    for o in outcomes {
                        match o {
                            Ok(deal) => {
                                tracing::info!(target: "agora::agent", seller = %deal.seller(), price = %deal.price(), "resumed deal completed");
                            }
                            Err(e) => {
                                tracing::warn!(target: "agora::agent", error = %e, "resumed deal failed");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "agora::agent", error = %e, "resuming deals failed")
                }
            }
        }

        async fn plan(&self, ctx: &Context, req: PlanTrip) -> Result<PlannedTrip, SkillError> {
            let refused = |e: wallets::Error| SkillError::new("refused", e.to_string());
            let (Some(principal), Some(dialogue)) = (ctx.sender(), ctx.dialogue()) else {
                return Err(SkillError::new(
                    "refused",
                    "travel.Plan spends money and needs a signed request from a principal",
                ));
            };
            let commission = self
                .mandates
                .commission(
                    principal,
                    PlanTrip::KIND,
                    &format!("{principal}:{dialogue}"),
                )
                .map_err(refused)?;
            let result = self.plan_for(ctx, &req, commission.max_price()).await;
            // What was paid (nothing when the hire failed before paying); an error
            // with money in flight keeps the whole reservation.
            let spent = match &result {
                Ok((_, price)) => Some(*price),
                Err(_) if money_in_flight(ctx) => None,
                Err(_) => Some(Amount::ZERO),
            };
            if let Some(spent) = spent {
                if let Err(e) = self.mandates.settle(&commission, spent) {
                    tracing::warn!(target: "agora::agent", error = %e, "recording the principal's spend failed; its reservation stays");
                }
            }
            result.map(|(trip, _)| trip)
        }

        /// Plans the trip and hires a seller for at most `max_price`; the trip and what
        /// was paid.
        async fn plan_for(
            &self,
            ctx: &Context,
            req: &PlanTrip,
            max_price: Amount,
        ) -> Result<(PlannedTrip, Amount), SkillError> {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let today = i64::try_from(now)
                .ok()
                .and_then(|n| chrono::DateTime::from_timestamp(n, 0))
                .map(|t| t.date_naive())
                .ok_or_else(|| SkillError::internal("the system clock is out of range"))?;
            let mut last = String::new();
            for attempt in 1..=ATTEMPTS {
                match self
                    .planner
                    .plan_and_hire(
                        ctx,
                        &self.buyer,
                        &req.request,
                        today,
                        max_price,
                        PaymentMode::Authorization,
                    )
                    .await
                {
                    Ok(plan) => {
                        let price = plan.deal.price();
                        let trip = PlannedTrip {
                            itinerary: plan.itinerary.text,
                            seller: plan.deal.seller().to_string(),
                            price: price.to_string(),
                            tx_hash: plan.deal.delivery.settlement.tx_hash.to_string(),
                            attempts: attempt,
                        };
                        return Ok((trip, price));
                    }
                    Err(e) => {
                        last = e.to_string();
                        if money_in_flight(ctx) {
                            // An agreed deal is being paid: never hire a second seller
                            // for it; `resume` finishes it after a restart.
                            break;
                        }
                        if e.is_final() {
                            break;
                        }
                        tracing::warn!(target: "agora::agent", attempt, error = %e, "hiring failed; trying the other sellers");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            Err(SkillError::internal(last))
        }
    }

    /// Whether a deal of this buyer is agreed and not yet over.
    fn money_in_flight(ctx: &Context) -> bool {
        ctx.open_dialogues().is_ok_and(|open| {
            open.into_iter().any(|(_, record)| {
                matches!(
                    serde_json::from_value::<BuyerDeal>(record.state),
                    Ok(BuyerDeal::Accepted { .. }
                        | BuyerDeal::Paying { .. }
                        | BuyerDeal::Delivered { .. })
                )
            })
        })
    }
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
    let dir = up_cmd::state_dir(&args.config, args.dir.as_deref());
    let state = UpState::load(&dir)?;
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
        .unwrap_or_else(|| up_cmd::base_dir(&args.config).join(crate::init_cmd::OWNER_KEYSTORE));
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
