//! One agent of a deployment, composed from its `agents.toml` entry and running in
//! this process.
//!
//! [`RunningAgent::start`] opens the agent's keystore, serves its host on its
//! configured listen address with its store, journal and spending policy under the
//! state directory, adds its skills, resumes deals a previous run left open, and
//! registers it in the `AgentRegistry` (or updates its record when the endpoint or
//! the services changed). Where the deployment has the ERC-8004 registries, it also
//! registers the agent's ERC-8004 identity, linked to that entry, with its
//! registration file as the identity's `agentURI` (a `data:` URI), and serves the same
//! file at `/.well-known/agent-registration.json` on its host port.
//!
//! Skills: `weather` sells `weather.forecast` at the configured price from the offline
//! climatology data, conceding down to [`seller_floor`] in a negotiation, and at the
//! same price to any x402 client at `POST /x402/weather.forecast` on the agent's host
//! port and to any A2A client at `/agents/<address>/` (paid with A2A's x402 extension;
//! one journal for all three); `travel`
//! (feature `llm`) serves [`PlanTrip`](crate::PlanTrip) for the agent's principals
//! (see [`crate::travel_agent`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::registry::Discovery;
use negotiation::{ChainSettlement, DefaultSellerStrategy, Seller};
use registry::chain::{self, Addresses, Deployment};
use tokio::task::JoinHandle;
use wallets::Journal;
use weather::{
    ClimatologyProvider, Forecast, ForecastQuery, WeatherProvider, WeatherService, FORECAST_KIND,
};
use x402::{PricedService, SellerConfig, X402Seller};

use crate::config::{AgentConfig, Config};
use crate::layout::{agent_dir, agent_wallet, read_addresses};
use crate::{Error, Result, TOKEN};

/// How often a seller agent closes its expired deals and settles its due channels
/// ([`Seller::upkeep`]); channels stay settleable for an hour after their deadline.
pub const SELLER_UPKEEP_EVERY: Duration = Duration::from_secs(60);

/// The lowest price a configured seller accepts in a negotiation: 80 % of its listed
/// price, computed in base units as `price / 10 * 8` (so it never exceeds 80 %).
pub fn seller_floor(price: Amount) -> Amount {
    Amount::from_base_units(price.base_units() / 10 * 8)
}

/// Where an agent of a deployment runs: the deployment, the state directory, the
/// chain.
#[derive(Clone, Debug)]
pub struct AgentSite {
    /// The deployment file (keystores and models are relative to its directory).
    pub config_path: PathBuf,
    /// The state directory (see [`crate::layout`]).
    pub state_dir: PathBuf,
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The deployment's addresses file.
    pub addresses_path: PathBuf,
    /// The model of agents whose entry names none (travel agents); required for them.
    pub default_model: Option<PathBuf>,
}

/// An agent serving in this process.
#[derive(Debug)]
pub struct RunningAgent {
    name: String,
    url: String,
    handle: AgentHandle,
    host: Host,
    /// Its background work: the seller's upkeep, the oracle.
    tasks: Vec<JoinHandle<()>>,
}

/// A chain client for an agent, with the deployment's fee cap.
pub(crate) async fn connect(
    rpc: &str,
    wallet: Arc<Wallet>,
    config: &Config,
) -> Result<Arc<chain::Client>> {
    Ok(chain::connect_with_fee_cap(
        rpc,
        wallet,
        chain::RetryPolicy::default(),
        config.max_tx_fee_wei,
    )
    .await?)
}

impl RunningAgent {
    /// Composes the agent `name` of the deployment at `site` and starts it.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid deployment, [`Error::NoAgent`] when it has no
    /// such agent, [`Error::Composition`] when its skills cannot be composed (a
    /// weather agent without a forecast service, a travel agent in a build without
    /// the `llm` feature or without a model); the errors of opening its keystore,
    /// store, journal, policy and model, and of registering it.
    pub async fn start(site: &AgentSite, name: &str) -> Result<Self> {
        let config = Config::load(&site.config_path)?;
        let agent = config
            .agents
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::NoAgent {
                config: site.config_path.clone(),
                name: name.to_owned(),
            })?
            .clone();
        let addresses = read_addresses(&site.addresses_path)?;
        let wallet = agent_wallet(&site.config_path, &agent).await?;
        let dir = agent_dir(&site.state_dir, &agent.name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;

        let host = Host::spawn(
            HostConfig::new(addresses.chain_id, dir.join("host"))
                .name(agent.name.clone())
                .listen(agent.listen)
                .workers(2),
        )?;
        let url = host.url().ok_or_else(|| Error::Composition {
            agent: agent.name.clone(),
            reason: "its host does not listen".into(),
        })?;
        let discovery =
            Arc::new(Discovery::open(dir.join("discovery"), &site.rpc_url, addresses).await?);
        let mut builder = AgentBuilder::new(agent.name.clone()).wallet(wallet.clone());
        // What the agent sells (one service): the same at the same price through the
        // negotiation, over x402 and to A2A clients, with one journal and one chain
        // client, so that their transactions never reuse a nonce.
        let selling = if agent.skills.contains("weather") {
            Some(weather_seller(site, &config, &agent, &addresses, wallet.clone(), &dir).await?)
        } else if agent.skills.contains("llm") && !agent.services.is_empty() {
            #[cfg(feature = "llm")]
            {
                Some(
                    crate::llm_agent::llm_seller(
                        site,
                        &config,
                        &agent,
                        &addresses,
                        wallet.clone(),
                        &dir,
                    )
                    .await?,
                )
            }
            #[cfg(not(feature = "llm"))]
            return Err(Error::Composition {
                agent: agent.name.clone(),
                reason: "selling LLM services needs the `llm` feature, which this build lacks"
                    .into(),
            });
        } else {
            None
        };
        if let Some(s) = &selling {
            builder = s.seller.install(builder);
            if agent.skills.contains("travel") {
                return Err(Error::Composition {
                    agent: agent.name.clone(),
                    reason: "a travel agent buys and sells nothing itself; run the seller of \
                             its services as another agent"
                        .into(),
                });
            }
        }
        #[cfg(feature = "llm")]
        let travel = if agent.skills.contains("travel") {
            let model = crate::llm_agent::model_of(site, &agent, "travel")?;
            let (b, travel) = crate::travel_agent::TravelAgent::install(
                builder,
                &agent,
                &addresses,
                wallet.clone(),
                &dir,
                discovery.clone(),
                model,
            )
            .await?;
            builder = b;
            Some(travel)
        } else {
            None
        };
        #[cfg(not(feature = "llm"))]
        if agent.skills.contains("travel") {
            return Err(Error::Composition {
                agent: agent.name.clone(),
                reason: "the travel skill needs the `llm` feature, which this build lacks".into(),
            });
        }
        let handle = builder.spawn(&host)?;
        // The journal's entries by kind on the host's /metrics: deals paid,
        // delivered, disputed; x402 sales.
        let journal_metrics = negotiation::JournalMetrics::new();
        host.register_metrics(|registry| journal_metrics.register(registry));
        if let Some(selling) = &selling {
            selling
                .seller
                .journal()
                .count_entries(&journal_metrics, agent.name.clone());
        }
        #[cfg(feature = "llm")]
        if let Some(travel) = &travel {
            travel
                .journal()
                .count_entries(&journal_metrics, agent.name.clone());
        }
        let mut tasks = Vec::new();
        if let Some(selling) = &selling {
            // The service is also an HTTP resource that any x402 client pays for.
            let x402 = Arc::new(selling.x402(handle.context(), &addresses, &dir)?);
            // Sales a stopped process left mid-settlement are looked up on chain now,
            // so the journal holds every payment that moved money.
            match x402.reconcile().await {
                Ok(done) if done != x402::Reconciled::default() => {
                    tracing::info!(target: "agora::agent", agent = %agent.name,
                        settled = done.settled, forgotten = done.forgotten,
                        pending = done.pending, "x402 sales left settling reconciled");
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            host.mount_http("/x402", x402::seller::router(x402.clone()))?;
            // And a skill any A2A client can hire, paid with A2A's x402 extension.
            let base = http_base(&url);
            let gateway = Arc::new(a2a::A2aGateway::open(a2a::GatewayConfig::new(
                dir.join("a2a"),
                base,
            ))?);
            gateway.add(
                a2a::A2aAgent::new(handle.address(), agent.name.clone())
                    .description(selling.description.clone())
                    .sell(x402),
            )?;
            let router = a2a::http::router(gateway);
            host.mount_http("/agents", router.clone())?;
            host.mount_http("/.well-known/agent-card.json", router)?;
            // Expired deals are closed and channels settled before they expire,
            // without waiting for the next buyer.
            tasks.push(
                selling
                    .seller
                    .spawn_upkeep(handle.context(), SELLER_UPKEEP_EVERY),
            );
        }
        #[cfg(feature = "llm")]
        if let Some(travel) = travel {
            travel.resume(&handle).await;
        }
        let contracts = Deployment::at(
            connect(&site.rpc_url, wallet.clone(), &config).await?,
            &addresses,
        );
        let model = selling
            .as_ref()
            .map_or(wallets::B256::default(), Selling::model);
        register(
            &agent,
            &discovery,
            &contracts,
            wallet.address(),
            &url,
            model,
        )
        .await?;
        if addresses.has_erc8004() {
            let file = register_identity(
                &agent,
                &contracts,
                &addresses,
                wallet.address(),
                &url,
                selling.as_ref().map(|s| s.priced.skill().to_owned()),
            )
            .await?;
            host.mount_http(REGISTRATION_PATH, registration_service(file)?)?;
        }
        #[cfg(feature = "llm")]
        if agent.oracle {
            let Some((selling, engine)) = selling
                .as_ref()
                .and_then(|s| s.model.clone().map(|e| (s, e)))
            else {
                return Err(Error::Composition {
                    agent: agent.name.clone(),
                    reason: "only an LLM seller serves the oracle".into(),
                });
            };
            if !addresses.has_inference() {
                return Err(Error::Composition {
                    agent: agent.name.clone(),
                    reason: "the deployment has no InferenceOracle (it predates it); \
                             redeploy the contracts to serve the oracle"
                        .into(),
                });
            }
            // The seller's chain client: the oracle's transactions take their nonces
            // in turn with the sales'.
            let oracle = Deployment::at(selling.client.clone(), &addresses);
            crate::llm_agent::anchor_model(&agent.name, &engine, &oracle).await?;
            tasks.push(crate::llm_agent::spawn_oracle(
                agent.name.clone(),
                engine,
                wallet.clone(),
                oracle,
                addresses.deployed_at,
            ));
            tracing::info!(target: "agora::agent", agent = %agent.name, "serving the inference oracle");
        }
        tracing::info!(target: "agora::agent", agent = %agent.name, address = %handle.address(), %url, "agent serving");
        Ok(Self {
            name: agent.name,
            url,
            handle,
            host,
            tasks,
        })
    }

    /// The agent's name in the deployment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL its host serves.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it runs as.
    pub fn address(&self) -> Address {
        self.handle.address()
    }

    /// Its handle (its context, to send as it).
    pub fn handle(&self) -> &AgentHandle {
        &self.handle
    }

    /// Stops its upkeep, the agent and its host.
    pub async fn shutdown(self) {
        tracing::info!(target: "agora::agent", agent = %self.name, "stopping");
        for task in self.tasks {
            task.abort();
        }
        drop(self.handle);
        let host = self.host;
        let _ = tokio::task::spawn_blocking(move || host.shutdown()).await;
    }
}

/// A negotiation seller of `weather.forecast` from `provider`, listing `price` and
/// conceding down to [`seller_floor`], settling with `settlement`, journaling to
/// `journal`.
pub fn forecast_seller(
    wallet: Arc<Wallet>,
    price: Amount,
    provider: Arc<dyn WeatherProvider>,
    settlement: impl negotiation::Settlement,
    journal: Journal,
) -> Seller {
    Seller::new(
        FORECAST_KIND,
        wallet,
        DefaultSellerStrategy::new(price, seller_floor(price)),
        WeatherService::new(provider),
        settlement,
        journal,
    )
}

/// What an agent sells: its negotiation seller, and the same service at the same
/// price for x402 and A2A clients ([`Selling::x402`], made once the agent runs), with
/// the seller's journal and chain client.
pub(crate) struct Selling {
    pub(crate) seller: Seller,
    pub(crate) client: Arc<chain::Client>,
    pub(crate) priced: PricedService,
    /// The agent's description on its A2A card.
    pub(crate) description: String,
    /// The model an LLM seller sells from.
    #[cfg(feature = "llm")]
    pub(crate) model: Option<Arc<llm::LlmEngine>>,
}

impl Selling {
    /// The x402 seller of the service, for the agent whose context is `ctx`; its
    /// sales are kept in `dir/x402`.
    fn x402(&self, ctx: Context, addresses: &Addresses, dir: &Path) -> Result<X402Seller> {
        let asset = wallets::Address(addresses.stablecoin.0);
        Ok(X402Seller::new(
            ctx,
            self.client.clone(),
            asset,
            self.seller.journal(),
            SellerConfig::new(dir.join("x402"), TOKEN),
        )?
        .sell(self.priced.clone())?)
    }

    /// The fingerprint of the model the agent sells from (zero for none): what it
    /// registers with.
    fn model(&self) -> wallets::B256 {
        #[cfg(feature = "llm")]
        if let Some(engine) = &self.model {
            return engine.fingerprint().to_b256();
        }
        wallets::B256::default()
    }
}

/// The weather seller of `agent`: its forecast service at the configured price,
/// settled on chain, journaled.
async fn weather_seller(
    site: &AgentSite,
    config: &Config,
    agent: &AgentConfig,
    addresses: &Addresses,
    wallet: Arc<Wallet>,
    dir: &Path,
) -> Result<Selling> {
    let service = agent
        .services
        .iter()
        .find(|s| s.skill == FORECAST_KIND)
        .ok_or_else(|| Error::Composition {
            agent: agent.name.clone(),
            reason: format!("it runs the weather skill but sells no {FORECAST_KIND} service"),
        })?;
    let provider: Arc<dyn WeatherProvider> = Arc::new(ClimatologyProvider::new()?);
    let client = connect(&site.rpc_url, wallet.clone(), config).await?;
    let settlement = ChainSettlement::with_client(client.clone(), addresses, TOKEN);
    let journal = Journal::open(dir.join("journal"), wallet.clone())?;
    let seller = forecast_seller(wallet, service.price, provider.clone(), settlement, journal);
    let priced = PricedService::typed::<ForecastQuery, Forecast>(
        FORECAST_KIND,
        service.price,
        WeatherService::new(provider),
    )
    .description("a daily weather forecast (or the climate normals) of a place")
    .example(
        serde_json::json!({"place": {"city": {"name": "Lisbon"}}, "start": "2026-07-01", "days": 3}),
        None,
    );
    Ok(Selling {
        seller,
        client,
        priced,
        description: format!(
            "Agora weather agent {}: forecasts by city and date, paid in the stablecoin \
             with x402",
            agent.name
        ),
        #[cfg(feature = "llm")]
        model: None,
    })
}

/// Where an agent serves its ERC-8004 registration file: the EIP's domain proof.
pub const REGISTRATION_PATH: &str = "/.well-known/agent-registration.json";

/// Registers the agent, or updates its record when the endpoint or services changed.
async fn register(
    agent: &AgentConfig,
    discovery: &Discovery,
    contracts: &Deployment,
    address: Address,
    url: &str,
    model: wallets::B256,
) -> Result<()> {
    let logs = discovery.sync().await?;
    tracing::info!(target: "agora::agent", agent = %agent.name, logs, "registry synced");
    let services = agent
        .services
        .iter()
        .map(|s| chain::service(&s.skill, s.price, &s.unit))
        .collect::<Result<Vec<_>, _>>()?;
    let card = format!("{}/card/{address}", http_base(url));
    match discovery.agent_at(address)? {
        None => {
            let tx = contracts
                .register_agent(url, &card, model, services)
                .await?;
            tracing::info!(target: "agora::agent", agent = %agent.name, %tx, "registered");
        }
        Some(record) => {
            let same = record.endpoint == url
                && record.model_fingerprint == model.0
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
                let tx = contracts.update_agent(url, &card, model, services).await?;
                tracing::info!(target: "agora::agent", agent = %agent.name, %tx, "registration updated");
            }
        }
    }
    Ok(())
}

/// `http://host:port` of a host whose URL is `ws://host:port`.
fn http_base(url: &str) -> String {
    format!("http://{}", url.trim_start_matches("ws://"))
}

/// Registers the agent's ERC-8004 identity, linked to its `AgentRegistry` entry, or
/// brings its registration file up to date; returns the file.
async fn register_identity(
    agent: &AgentConfig,
    contracts: &Deployment,
    addresses: &Addresses,
    wallet: Address,
    url: &str,
    sold: Option<String>,
) -> Result<registry::erc8004::RegistrationFile> {
    let selling: Vec<String> = agent
        .services
        .iter()
        .map(|s| format!("{} at {} per {}", s.skill, s.price, s.unit))
        .collect();
    let description = if selling.is_empty() {
        format!("Agora agent {}", agent.name)
    } else {
        format!("Agora agent {} selling {}", agent.name, selling.join(", "))
    };
    let registration = registry::erc8004::AgentRegistration {
        name: agent.name.clone(),
        description,
        base_url: http_base(url),
        // A seller serves A2A and its service over x402.
        a2a: sold.is_some(),
        x402_skills: sold.into_iter().collect(),
        chain_id: addresses.chain_id,
        wallet,
        identity_registry: wallets::Address(addresses.identity_registry.0),
        ..Default::default()
    };
    let (identity, change, file) = contracts
        .ensure_registration(addresses.deployed_at, &registration)
        .await?;
    match change {
        chain::IdentityChange::Registered(tx) => tracing::info!(target: "agora::agent",
            agent = %agent.name, agent_id = %identity.id, tx = %tx.tx_hash, "ERC-8004 identity registered"),
        chain::IdentityChange::UriUpdated(tx) => tracing::info!(target: "agora::agent",
            agent = %agent.name, agent_id = %identity.id, tx = %tx.tx_hash, "ERC-8004 registration file updated"),
        chain::IdentityChange::Unchanged => tracing::info!(target: "agora::agent",
            agent = %agent.name, agent_id = %identity.id, "ERC-8004 identity up to date"),
    }
    Ok(file)
}

/// Serves `file` as JSON to `GET` (and `HEAD`) at [`REGISTRATION_PATH`].
fn registration_service(file: registry::erc8004::RegistrationFile) -> Result<axum::Router> {
    let json = file.to_json().map_err(|e| Error::Composition {
        agent: file.name.clone(),
        reason: format!("its ERC-8004 registration file: {e}"),
    })?;
    Ok(axum::Router::new().route(
        REGISTRATION_PATH,
        axum::routing::get(move || {
            let json = json.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seller_floor_is_80_percent_rounded_down() {
        let usdc = |s: &str| format!("{s} USDC").parse::<Amount>().unwrap();
        assert_eq!(seller_floor(usdc("1.20")), usdc("0.96"));
        assert_eq!(seller_floor(usdc("10")), usdc("8"));
        assert_eq!(
            seller_floor(Amount::from_base_units(19)),
            Amount::from_base_units(8)
        );
    }
}
