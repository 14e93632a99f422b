//! `agora chain` and `agora registry ...`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use registry::chain::{self, Addresses, DeployConfig, Deployment};
use registry::devnet::{dev_key, dev_wallet, Devnet, DevnetConfig, DEV_ACCOUNTS};
use registry::discovery::{AgentRecord, Discovery};
use wallets::{keystore, Amount};

use crate::wallet_cmd::{agora_home, PasswordArgs};

/// `agora chain`: serve the embedded devnet.
#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    /// Address to serve JSON-RPC (HTTP and WebSocket) on.
    #[arg(long, default_value = "127.0.0.1:8545")]
    listen: SocketAddr,
    /// Chain data directory (default: $AGORA_HOME/chain).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Chain id of a new chain.
    #[arg(long, default_value_t = registry::devnet::DEFAULT_CHAIN_ID)]
    chain_id: u64,
    /// Do not deploy the Agora contracts on a new chain.
    #[arg(long)]
    no_deploy: bool,
    /// Also serve the x402 facilitator API for the deployment's stablecoin on this
    /// address, relaying from dev account 9 (see `agora x402 facilitator`).
    #[arg(long, value_name = "ADDR")]
    x402_facilitator: Option<SocketAddr>,
}

/// Where a chain's contract addresses are written.
pub(crate) fn addresses_path(data_dir: &Path) -> PathBuf {
    data_dir.join("addresses.json")
}

pub(crate) fn default_data_dir() -> PathBuf {
    agora_home().join("chain")
}

pub(crate) async fn run_chain(args: ChainArgs) -> Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = DevnetConfig::new(&data_dir);
    config.listen = args.listen;
    config.chain_id = args.chain_id;
    let node = Devnet::spawn(config).await?;
    println!("chain id:  {}", node.chain_id());
    println!(
        "json-rpc:  {}  (WebSocket: {})",
        node.http_url(),
        node.ws_url()
    );
    println!("data:      {}", data_dir.display());
    // As anvil does: these keys are public by construction (derived from a published
    // rule), so printing them leaks nothing, and `cast send` needs them.
    println!(
        "dev accounts (10 000 ETH each at genesis; public test keys from \
         registry::devnet::dev_key: never send real funds to them):"
    );
    for i in 0..DEV_ACCOUNTS as u32 {
        println!(
            "  ({i}) {}  private key 0x{}",
            dev_wallet(i).address(),
            hex::encode(dev_key(i))
        );
    }
    let path = addresses_path(&data_dir);
    if !args.no_deploy && !path.exists() {
        let deployer = Arc::new(dev_wallet(0));
        let client = chain::connect(&node.http_url(), deployer).await?;
        let (_, addresses) = Deployment::deploy(client, &DeployConfig::dev()).await?;
        let json = serde_json::to_string_pretty(&addresses)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut a: Addresses =
            serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        if !args.no_deploy && !a.has_erc8004() {
            // A chain from before the ERC-8004 contracts: add them beside the others.
            let client = chain::connect(&node.http_url(), Arc::new(dev_wallet(0))).await?;
            a = Deployment::deploy_erc8004(client, &a).await?.1;
            let json = serde_json::to_string_pretty(&a)?;
            std::fs::write(&path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("deployed the ERC-8004 contracts next to the existing ones");
        }
        println!("contracts ({}):", path.display());
        println!("  Stablecoin     {:?}", a.stablecoin);
        println!("  AgentRegistry  {:?}", a.registry);
        println!("  JobEscrow      {:?}", a.escrow);
        println!("  Reputation     {:?}", a.reputation);
        println!("  PaymentChannel {:?}", a.channel);
        println!("  ERC-8004 IdentityRegistry   {:?}", a.identity_registry);
        println!("  ERC-8004 ReputationRegistry {:?}", a.reputation_registry);
        println!("  SettledFeedback (reviewer)  {:?}", a.settled_feedback);
    }
    let facilitator = match args.x402_facilitator {
        Some(listen) => {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "--x402-facilitator needs the contracts: reading {}",
                    path.display()
                )
            })?;
            let a: Addresses =
                serde_json::from_str(&text).with_context(|| path.display().to_string())?;
            let relayer = Arc::new(dev_wallet(9));
            let f = x402::Facilitator::connect(
                &node.http_url(),
                relayer,
                x402::FacilitatorConfig {
                    assets: vec![wallets::Address(a.stablecoin.0)],
                    store: data_dir.join("x402-facilitator"),
                    from_block: a.deployed_at,
                },
            )
            .await?;
            let server = x402::facilitator::serve(Arc::new(f), listen).await?;
            println!(
                "x402 facilitator: {} (relayer: dev account 9)",
                server.url()
            );
            Some(server)
        }
        None => None,
    };
    let mut stop = crate::signals::Stop::listen()?;
    println!("serving; Ctrl-C to stop");
    stop.recv().await;
    if let Some(server) = facilitator {
        server.shutdown().await;
    }
    node.shutdown().await;
    eprintln!("stopped; chain data kept in {}", data_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Which node and deployment the registry commands talk to.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// JSON-RPC URL of the node.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub(crate) rpc: String,
    /// The deployment's addresses.json (default: $AGORA_HOME/chain/addresses.json).
    #[arg(long)]
    addresses: Option<PathBuf>,
}

impl NodeArgs {
    pub(crate) fn addresses(&self) -> Result<Addresses> {
        let path = self
            .addresses
            .clone()
            .unwrap_or_else(|| addresses_path(&default_data_dir()));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `agora chain` first, or pass --addresses)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not an addresses file", path.display()))
    }

    async fn discovery(&self) -> Result<Discovery> {
        let addresses = self.addresses()?;
        let cache = agora_home()
            .join("discovery")
            .join(format!("{}-{:?}", addresses.chain_id, addresses.registry));
        let d = Discovery::open(cache, &self.rpc, addresses).await?;
        let n = d.sync().await?;
        tracing::debug!(target: "registry::cli", logs = n, "synced");
        Ok(d)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// List agents; with --skill, only those offering it (cheapest, best-rated first).
    List {
        #[command(flatten)]
        node: NodeArgs,
        /// Only agents offering this skill tag.
        #[arg(long)]
        skill: Option<String>,
        /// With --skill: the most you would pay ("1.50 USDC").
        #[arg(long, default_value = "1000000 USDC")]
        max_price: Amount,
    },
    /// Show one agent's record.
    Show {
        #[command(flatten)]
        node: NodeArgs,
        /// The agent's address.
        agent: wallets::Address,
    },
    /// Deploy the contracts (Agora's and the ERC-8004 registries) to a node from the
    /// keystore's account.
    Deploy {
        /// JSON-RPC URL of the node.
        #[arg(long, default_value = "http://127.0.0.1:8545")]
        rpc: String,
        /// The deployer's keystore (it becomes governor and arbiter unless
        /// `--governor` or `--arbiter` name others).
        #[arg(long)]
        keystore: PathBuf,
        /// The governor of the registry and the escrow (suspends agents, replaces
        /// the arbiter); the deployer by default.
        #[arg(long)]
        governor: Option<wallets::Address>,
        /// The escrow's arbiter, who rules on disputed escrows; the deployer by
        /// default. On a shared network, a party that neither buyers nor sellers
        /// control.
        #[arg(long)]
        arbiter: Option<wallets::Address>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Where to write the addresses (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// Let the deployer mint tokens after deployment (dev and test chains only).
        #[arg(long)]
        dev_faucet: bool,
    },
    /// Register the keystore's agent with its endpoint and services, and its ERC-8004
    /// identity linked to that entry. Running it again changes only what differs.
    Register {
        #[command(flatten)]
        node: NodeArgs,
        /// The agent's keystore.
        #[arg(long)]
        keystore: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        /// Where the agent listens (e.g. ws://127.0.0.1:7401).
        #[arg(long)]
        endpoint: String,
        /// URI of the agent card.
        #[arg(long, default_value = "")]
        card: String,
        /// SHA-256 of the model file, hex (zero if none).
        #[arg(long)]
        model_fingerprint: Option<wallets::B256>,
        /// A service as SKILL=PRICE/UNIT, e.g. weather.forecast=1.20/forecast (repeatable).
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// The agent's name in its ERC-8004 registration file (default: its address).
        #[arg(long)]
        name: Option<String>,
        /// What the agent does, for its registration file (default: its skills).
        #[arg(long)]
        description: Option<String>,
        /// The agent's HTTP base URL, where it serves its A2A card and x402 resources
        /// (default: the endpoint with ws:// read as http://, wss:// as https://).
        #[arg(long)]
        base_url: Option<String>,
        /// The ERC-8004 agentURI: a URL where the registration file is served. Without
        /// it the file itself goes on chain as a data:application/json;base64 URI.
        #[arg(long)]
        agent_uri: Option<String>,
    },
}

/// The HTTP base URL of a WebSocket endpoint (`ws://` as `http://`, `wss://` as
/// `https://`), without a trailing `/`.
fn http_base(endpoint: &str) -> String {
    let base = if let Some(rest) = endpoint.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = endpoint.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        endpoint.to_owned()
    };
    base.trim_end_matches('/').to_owned()
}

/// Whether the registry's record already says what `register` would write.
fn same_entry(
    record: &AgentRecord,
    endpoint: &str,
    card: &str,
    model: wallets::B256,
    services: &[registry::chain::bindings::agent_registry::Service],
) -> bool {
    record.endpoint == endpoint
        && record.card_uri == card
        && record.model_fingerprint == model.0
        && record.services.len() == services.len()
        && services.iter().all(|s| {
            record.services.iter().any(|r| {
                chain::skill_tag(&r.skill).is_ok_and(|tag| tag == s.skill)
                    && u128::try_from(s.price).is_ok_and(|p| p == r.price.base_units())
                    && r.unit == s.unit
            })
        })
}

fn parse_service(s: &str) -> Result<registry::chain::bindings::agent_registry::Service> {
    let (skill, rest) = s
        .split_once('=')
        .with_context(|| format!("--service {s:?}: expected SKILL=PRICE/UNIT"))?;
    let (price, unit) = rest
        .split_once('/')
        .with_context(|| format!("--service {s:?}: expected SKILL=PRICE/UNIT"))?;
    let price: Amount = price.parse().with_context(|| format!("--service {s:?}"))?;
    chain::service(skill, price, unit).with_context(|| format!("--service {s:?}"))
}

fn print_agent(a: &AgentRecord, active: bool) {
    println!("agent:     {}", wallets::Address(a.address.0));
    println!(
        "status:    {}",
        if active { "active" } else { "not listed" }
    );
    println!("endpoint:  {}", a.endpoint);
    println!("card:      {}", a.card_uri);
    println!("model:     0x{}", hex::encode(a.model_fingerprint));
    println!("stake:     {}", Amount::from_base_units(a.stake));
    println!(
        "feedback:  {} entries, score {:.1}",
        a.feedback_count,
        a.score()
    );
    for s in &a.services {
        println!("service:   {} at {} per {}", s.skill, s.price, s.unit);
    }
}

/// Decrypts a keystore off the async workers (scrypt takes about a second).
pub(crate) async fn load_wallet(
    path: PathBuf,
    password: &PasswordArgs,
) -> Result<Arc<wallets::Wallet>> {
    let pw = password.read(false)?;
    let wallet =
        tokio::task::spawn_blocking(move || keystore::load(&path, pw.as_bytes())).await??;
    Ok(Arc::new(wallet))
}

pub(crate) async fn run_registry(cmd: RegistryCommand) -> Result<ExitCode> {
    match cmd {
        RegistryCommand::List {
            node,
            skill,
            max_price,
        } => {
            let d = node.discovery().await?;
            match skill {
                Some(skill) => {
                    let offers = d.find(&skill, max_price)?;
                    println!("{:<44} {:>14} {:>6}  endpoint", "agent", "price", "score");
                    for o in &offers {
                        println!(
                            "{:<44} {:>14} {:>6.1}  {}",
                            wallets::Address(o.agent.address.0).to_string(),
                            o.service.price.to_string(),
                            o.score,
                            o.agent.endpoint
                        );
                    }
                    println!("{} offer(s) of {skill} at ≤ {max_price}", offers.len());
                }
                None => {
                    let agents = d.agents()?;
                    for a in &agents {
                        let skills: Vec<&str> =
                            a.services.iter().map(|s| s.skill.as_str()).collect();
                        let active = if d.is_active(a)? {
                            "active"
                        } else {
                            "not listed"
                        };
                        println!(
                            "{}  {active:<10}  {}  [{}]",
                            wallets::Address(a.address.0),
                            a.endpoint,
                            skills.join(", ")
                        );
                    }
                    println!("{} agent(s)", agents.len());
                }
            }
        }
        RegistryCommand::Deploy {
            rpc,
            keystore: path,
            governor,
            arbiter,
            password,
            out,
            dev_faucet,
        } => {
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite a deployment's addresses",
                    out.display()
                );
            }
            let wallet = load_wallet(path, &password).await?;
            let client = chain::connect(&rpc, wallet).await?;
            let mut config = DeployConfig {
                dev_faucet,
                ..DeployConfig::dev()
            };
            if let Some(g) = governor {
                config = config.with_governor(g);
            }
            if let Some(a) = arbiter {
                config = config.with_arbiter(a);
            }
            let (deployment, addresses) = Deployment::deploy(client, &config).await?;
            let roles = deployment
                .roles()
                .await
                .context("reading the deployment's roles back")?;
            let json = serde_json::to_string_pretty(&addresses)?;
            std::fs::write(&out, json + "\n")
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "deployed on chain {}; addresses in {}",
                addresses.chain_id,
                out.display()
            );
            println!(
                "governor {} (registry), {} (escrow); escrow arbiter {}",
                roles.registry_governor, roles.escrow_governor, roles.arbiter
            );
        }
        RegistryCommand::Show { node, agent } => {
            let d = node.discovery().await?;
            let Some(record) = d.agent_at(agent)? else {
                bail!("agent {agent} is not registered");
            };
            print_agent(&record, d.is_active(&record)?);
            let addresses = node.addresses()?;
            if !addresses.has_erc8004() {
                println!("erc-8004:  this deployment has no ERC-8004 registries");
                return Ok(ExitCode::SUCCESS);
            }
            let client = chain::connect(&node.rpc, Arc::new(wallets::Wallet::random())).await?;
            let contracts = Deployment::at(client, &addresses);
            match contracts
                .find_identity(agent, addresses.deployed_at)
                .await?
            {
                Some(identity) => println!(
                    "erc-8004:  agent {} in {}",
                    identity.id,
                    registry::erc8004::agent_registry_id(
                        addresses.chain_id,
                        wallets::Address(addresses.identity_registry.0)
                    )
                ),
                None => println!("erc-8004:  no identity linked to this entry"),
            }
        }
        RegistryCommand::Register {
            node,
            keystore: path,
            password,
            endpoint,
            card,
            model_fingerprint,
            services,
            name,
            description,
            base_url,
            agent_uri,
        } => {
            let skills: Vec<String> = services
                .iter()
                .map(|s| s.split_once('=').map_or(s.as_str(), |(k, _)| k).to_owned())
                .collect();
            let services = services
                .iter()
                .map(|s| parse_service(s))
                .collect::<Result<Vec<_>>>()?;
            let model = model_fingerprint.unwrap_or_default();
            let addresses = node.addresses()?;
            if !addresses.has_erc8004() {
                bail!(
                    "the deployment predates the ERC-8004 contracts: restart `agora chain` \
                     (it adds them), or deploy again with `agora registry deploy`"
                );
            }
            let wallet = load_wallet(path, &password).await?;
            let me = wallet.address();
            let client = chain::connect(&node.rpc, wallet.clone()).await?;
            let contracts = Deployment::at(client, &addresses);

            // 1. The AgentRegistry entry.
            let agent_registry = wallets::Address(addresses.registry.0);
            let identity_registry = wallets::Address(addresses.identity_registry.0);
            println!("AgentRegistry {agent_registry}: agent {me}");
            let d = node.discovery().await?;
            match d.agent_at(me)? {
                None => {
                    let tx = contracts
                        .register_agent(&endpoint, &card, model, services)
                        .await?;
                    println!("registered {me} in tx {tx}");
                }
                Some(record) if same_entry(&record, &endpoint, &card, model, &services) => {
                    println!("entry up to date");
                }
                Some(_) => {
                    let tx = contracts
                        .update_agent(&endpoint, &card, model, services)
                        .await?;
                    println!("entry updated in tx {tx}");
                }
            }

            // 2. The ERC-8004 identity, linked to that entry.
            println!("ERC-8004 IdentityRegistry {identity_registry}: looking for {me}'s identity");
            let registration = registry::erc8004::AgentRegistration {
                name: name.unwrap_or_else(|| me.to_string()),
                description: description
                    .unwrap_or_else(|| format!("Agora agent selling {}", skills.join(", "))),
                base_url: base_url.unwrap_or_else(|| http_base(&endpoint)),
                x402_skills: skills,
                chain_id: addresses.chain_id,
                wallet: me,
                identity_registry,
                ..Default::default()
            };
            let (identity, change) = match &agent_uri {
                Some(uri) => {
                    contracts
                        .ensure_identity(addresses.deployed_at, |_| uri.clone())
                        .await?
                }
                None => {
                    let (identity, change, _) = contracts
                        .ensure_registration(addresses.deployed_at, &registration)
                        .await?;
                    (identity, change)
                }
            };
            match change {
                chain::IdentityChange::Registered(tx) => {
                    println!(
                        "registered ERC-8004 agent {} in tx {}",
                        identity.id, tx.tx_hash
                    );
                }
                chain::IdentityChange::UriUpdated(tx) => {
                    println!(
                        "ERC-8004 agent {}: agent URI updated in tx {}",
                        identity.id, tx.tx_hash
                    );
                }
                chain::IdentityChange::Unchanged => {
                    println!("ERC-8004 agent {} up to date", identity.id);
                }
            }
            println!(
                "agentRegistry {}, agentId {}, linked to AgentRegistry {agent_registry} \
                 (metadata {} names agent {me})",
                registry::erc8004::agent_registry_id(addresses.chain_id, identity_registry),
                identity.id,
                chain::AGORA_REGISTRY_KEY,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
