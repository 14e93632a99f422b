//! `agora up`: run the agents of agents.toml until Ctrl-C.
//!
//! `agora up` prepares the chain (the embedded devnet, started or reopened in the state
//! directory, with the contracts deployed when they are missing; or a node by URL with a
//! deployment it is given), funds the agents on the embedded chain (ether for gas from
//! the devnet's faucet, stablecoin for buyers from the dev minter), then runs each agent
//! as a child process (`agora agent-run`, see [`crate::agent_cmd`]) under a supervisor:
//! a child that dies is restarted with a capped, doubling delay; Ctrl-C or SIGTERM
//! closes every child's standard input (the agent's signal to stop), waits for it, kills
//! what does not stop in time, stops the chain and exits 0. Each agent registers itself
//! in the `AgentRegistry` once it listens and finds its peers there.
//!
//! State directory layout (default `.agora` beside the config file):
//!
//! ```text
//! chain/                  embedded chain data, chain/addresses.json the deployment
//! agents/NAME/host/       the agent's host store (dialogues, nonces)
//! agents/NAME/journal     its payment journal
//! agents/NAME/policy      its spending-policy ledger (buyers)
//! agents/NAME/discovery/  its registry discovery cache
//! agents/NAME/pid         the running child's process id
//! discovery/              the supervisor's discovery cache
//! up.json                 what `agora plan` needs: RPC URL, chain id, agents' endpoints
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use registry::chain::{self, Addresses, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig, DevnetHandle};
use registry::discovery::Discovery;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use wallets::{Address, Amount, KeystoreFile, Wallet};

use crate::config::{AgentConfig, Config, Network};
use crate::LogFormat;

/// The stablecoin's EIP-712 name in our deployments.
pub(crate) const TOKEN: &str = "USD Coin";

/// Longest restart delay of a crashing agent.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// A child that ran this long before dying restarts after the initial delay again.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// How long a child has to stop after its standard input closes.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Ether an agent gets from the faucet when it has less than one.
const GAS_ETHER: u64 = 10;

/// `agora up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The deployment file.
    #[arg(long, default_value = "agents.toml")]
    config: PathBuf,
    /// State directory: chain data, agent stores, journals (default: .agora beside
    /// the config file).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the embedded chain serves JSON-RPC (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8545")]
    chain_listen: SocketAddr,
    /// For an rpc network: the deployment's addresses.json, as written by
    /// `agora registry deploy --out` (default: DIR/addresses.json).
    #[arg(long)]
    addresses: Option<PathBuf>,
    /// Delay before restarting an agent that died; it doubles per crash up to 30 s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    restart_delay: Duration,
    /// Stablecoin each buyer (an agent with the travel skill) is topped up to on the
    /// embedded chain.
    #[arg(long, default_value = "100 USDC")]
    buyer_funds: Amount,
}

/// Parses `500ms`, `2s`, `1m` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 2s or 1m"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 500ms, 2s or 1m")),
    }
}

/// What a running `agora up` tells other commands (`agora plan`), in DIR/up.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpState {
    /// JSON-RPC URL of the chain.
    pub(crate) rpc_url: String,
    /// Chain id.
    pub(crate) chain_id: u64,
    /// The deployment's addresses file.
    pub(crate) addresses: PathBuf,
    /// The supervisor's process id.
    pub(crate) pid: u32,
    /// Agents by name.
    pub(crate) agents: BTreeMap<String, UpAgent>,
}

/// One agent in [`UpState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UpAgent {
    /// Its wallet address.
    pub(crate) address: Address,
    /// Its WebSocket endpoint, once it listens.
    pub(crate) endpoint: Option<String>,
    /// Its skills.
    pub(crate) skills: Vec<String>,
}

impl UpState {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("up.json")
    }

    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is `agora up` running with this state directory?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not an up.json", path.display()))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The directory paths are relative to: the config file's.
pub(crate) fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The state directory: `--dir`, else `.agora` beside the config file.
pub(crate) fn state_dir(config: &Path, dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(|| base_dir(config).join(".agora"), Path::to_owned)
}

/// An agent's own directory in the state directory.
pub(crate) fn agent_dir(state: &Path, name: &str) -> PathBuf {
    state.join("agents").join(name)
}

/// Decrypts an agent's keystore with the password from its `password_env` variable.
///
/// # Errors
/// Names the agent and the variable when it is not set; the keystore's errors.
pub(crate) async fn agent_wallet(config_path: &Path, agent: &AgentConfig) -> Result<Arc<Wallet>> {
    let password = password_of(agent)?;
    let path = base_dir(config_path).join(&agent.keystore);
    let p = path.clone();
    let wallet =
        tokio::task::spawn_blocking(move || wallets::keystore::load(&p, password.as_bytes()))
            .await?
            .with_context(|| {
                format!(
                    "agent {}: opening the keystore {} with the password in ${}",
                    agent.name,
                    path.display(),
                    agent.password_env
                )
            })?;
    if let Ok(Some(stated)) = KeystoreFile::read(&path).and_then(|f| f.address(&path)) {
        if stated != wallet.address() {
            bail!(
                "agent {}: keystore {} is inconsistent",
                agent.name,
                path.display()
            );
        }
    }
    Ok(Arc::new(wallet))
}

fn password_of(agent: &AgentConfig) -> Result<zeroize::Zeroizing<String>> {
    match std::env::var(&agent.password_env) {
        Ok(pw) if !pw.is_empty() => Ok(zeroize::Zeroizing::new(pw)),
        Ok(_) => bail!(
            "agent {}: the environment variable {} that holds its keystore password is empty",
            agent.name,
            agent.password_env
        ),
        Err(_) => bail!(
            "agent {}: the environment variable {} that holds its keystore password is not set",
            agent.name,
            agent.password_env
        ),
    }
}

/// Reads a deployment's addresses file.
pub(crate) fn read_addresses(path: &Path) -> Result<Addresses> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not an addresses file", path.display()))
}

/// Syncs `discovery` with the chain, with a progress bar on a terminal and a plain
/// line otherwise.
pub(crate) async fn sync_with_progress(discovery: &Discovery, what: &str) -> Result<usize> {
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut announced = false;
    let logs = discovery
        .sync_with_progress(|done, head| {
            if terminal {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(head).with_message(format!("syncing {what}"));
                    b.set_style(
                        ProgressStyle::with_template("{msg} [{bar:30}] block {pos}/{len}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    b
                });
                b.set_length(head);
                b.set_position(done);
            } else if !announced {
                announced = true;
                eprintln!("syncing {what}: blocks {done}..{head}");
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(target: "agora::up", what, logs, "registry synced");
    Ok(logs)
}

/// The chain `agora up` runs on.
struct ChainSetup {
    url: String,
    addresses: Addresses,
    addresses_path: PathBuf,
    node: Option<DevnetHandle>,
}

pub(crate) async fn run_up(args: UpArgs, log: LogFormat) -> Result<ExitCode> {
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = state_dir(&args.config, args.dir.as_deref());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Every agent's password and keystore first: a missing variable is an error before
    // anything starts.
    for agent in &config.agents {
        password_of(agent)?;
    }
    let mut wallets = Vec::new();
    for agent in &config.agents {
        wallets.push(agent_wallet(&args.config, agent).await?.address());
    }

    let chain = match &config.network {
        Network::Embedded { data_dir, chain_id } => {
            let data = match &args.dir {
                Some(d) => d.join("chain"),
                None => base_dir(&args.config).join(data_dir),
            };
            embedded_chain(&args, &config, &data, *chain_id, &wallets).await?
        }
        Network::Rpc { url, chain_id } => rpc_chain(&args, &dir, url, *chain_id).await?,
    };

    // The agents, each in a supervised child process.
    let exe = std::env::current_exe().context("finding the agora executable")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<(String, String, Address)>(64);
    let mut tasks = Vec::new();
    let mut state = UpState {
        rpc_url: chain.url.clone(),
        chain_id: chain.addresses.chain_id,
        addresses: chain.addresses_path.clone(),
        pid: std::process::id(),
        agents: BTreeMap::new(),
    };
    for (agent, address) in config.agents.iter().zip(&wallets) {
        state.agents.insert(
            agent.name.clone(),
            UpAgent {
                address: *address,
                endpoint: None,
                skills: agent.skills.iter().cloned().collect(),
            },
        );
        let adir = agent_dir(&dir, &agent.name);
        std::fs::create_dir_all(&adir).with_context(|| format!("creating {}", adir.display()))?;
        let child_args: Vec<OsString> = vec![
            "--log-format".into(),
            log.as_str().into(),
            "agent-run".into(),
            "--config".into(),
            args.config.clone().into(),
            "--dir".into(),
            dir.clone().into(),
            "--name".into(),
            agent.name.clone().into(),
            "--rpc".into(),
            chain.url.clone().into(),
            "--addresses".into(),
            chain.addresses_path.clone().into(),
        ];
        let child = Supervised {
            name: agent.name.clone(),
            exe: exe.clone(),
            args: child_args,
            pid_file: adir.join("pid"),
            restart_delay: args.restart_delay,
        };
        tasks.push(tokio::spawn(supervise(
            child,
            stop_rx.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    state.save(&dir)?;

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut waiting: usize = config.agents.len();
    let mut discovery: Option<Discovery> = None;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                tracing::info!(target: "agora::up", "Ctrl-C: stopping the agents");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!(target: "agora::up", "SIGTERM: stopping the agents");
                break;
            }
            Some((name, url, address)) = ready_rx.recv() => {
                if let Some(a) = state.agents.get_mut(&name) {
                    if a.address != address {
                        tracing::warn!(target: "agora::up", agent = %name, %address, "agent reports another address");
                    }
                    a.endpoint = Some(url);
                }
                state.save(&dir)?;
                waiting = waiting.saturating_sub(1);
                if waiting == 0 {
                    waiting = usize::MAX; // announce once
                    let d = match discovery.take() {
                        Some(d) => d,
                        None => Discovery::open(dir.join("discovery"), &chain.url, chain.addresses).await?,
                    };
                    if let Err(e) = announce(&d, &state).await {
                        tracing::warn!(target: "agora::up", error = %e, "registry listing failed");
                    }
                    discovery = Some(d);
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(discovery);
    if let Some(node) = chain.node {
        node.shutdown().await;
    }
    let _ = std::fs::remove_file(UpState::path(&dir));
    println!("stopped; state kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Prints the registry's view of the running agents once all of them are up.
async fn announce(d: &Discovery, state: &UpState) -> Result<()> {
    sync_with_progress(d, "the agent registry").await?;
    for (name, a) in &state.agents {
        let listed = d.agent_at(a.address)?;
        let services = listed
            .as_ref()
            .map(|r| {
                r.services
                    .iter()
                    .map(|s| format!("{} at {}", s.skill, s.price))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "{name:<10} {} {} {}{}",
            a.address,
            a.endpoint.as_deref().unwrap_or("-"),
            if listed.is_some() {
                "registered"
            } else {
                "NOT registered"
            },
            if services.is_empty() {
                String::new()
            } else {
                format!(" ({services})")
            }
        );
    }
    println!("all {} agents are up; Ctrl-C to stop", state.agents.len());
    Ok(())
}

/// Starts (or reopens) the devnet, deploys the contracts when missing and funds the
/// agents.
async fn embedded_chain(
    args: &UpArgs,
    config: &Config,
    data: &Path,
    chain_id: u64,
    agents: &[Address],
) -> Result<ChainSetup> {
    let mut devnet = DevnetConfig::new(data);
    devnet.chain_id = chain_id;
    devnet.listen = args.chain_listen;
    eprintln!("starting the embedded chain in {}", data.display());
    let node = Devnet::spawn(devnet).await?;
    let url = node.http_url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await?;
    let addresses_path = data.join("addresses.json");
    let existing = match read_addresses(&addresses_path) {
        Ok(a) if a.chain_id == chain_id => {
            let deployed = Deployment::at(deployer.clone(), &a).is_deployed().await?;
            if !deployed {
                tracing::warn!(target: "agora::up", path = %addresses_path.display(), "the contracts of the addresses file have no code; deploying again");
            }
            deployed.then_some(a)
        }
        _ => None,
    };
    let (contracts, addresses) = match existing {
        Some(a) => (Deployment::at(deployer, &a), a),
        None => {
            eprintln!("deploying the contracts");
            let (contracts, a) = Deployment::deploy(deployer, &DeployConfig::dev()).await?;
            std::fs::write(&addresses_path, serde_json::to_string_pretty(&a)? + "\n")
                .with_context(|| format!("writing {}", addresses_path.display()))?;
            (contracts, a)
        }
    };
    tracing::info!(target: "agora::up", rpc = %url, registry = ?addresses.registry, "chain ready");

    // Dev funding: gas for everyone, stablecoin for buyers.
    let wei = wallets::U256::exp10(18);
    for (agent, address) in config.agents.iter().zip(agents) {
        if node.balance(*address).await < wei {
            node.set_balance(*address, wei * GAS_ETHER).await?;
            tracing::info!(target: "agora::up", agent = %agent.name, %address, ether = GAS_ETHER, "funded for gas");
        }
        if agent.skills.contains("travel") {
            let have = contracts.balance_of(*address).await?;
            if have < args.buyer_funds {
                let top_up =
                    Amount::from_base_units(args.buyer_funds.base_units() - have.base_units());
                contracts.mint(*address, top_up).await?;
                tracing::info!(target: "agora::up", agent = %agent.name, %address, amount = %top_up, "minted stablecoin");
            }
        }
    }
    println!(
        "chain:     {url} (chain {chain_id}, data in {})",
        data.display()
    );
    Ok(ChainSetup {
        url,
        addresses,
        addresses_path,
        node: Some(node),
    })
}

/// Connects to a node by URL and checks the deployment it was given.
async fn rpc_chain(args: &UpArgs, dir: &Path, url: &str, chain_id: u64) -> Result<ChainSetup> {
    let addresses_path = args
        .addresses
        .clone()
        .unwrap_or_else(|| dir.join("addresses.json"));
    if !addresses_path.exists() {
        bail!(
            "network {url}: no deployment addresses at {}; agora up deploys contracts only on the \
             embedded chain. Deploy them with `agora registry deploy --rpc {url} --keystore KEY \
             --out {}` or pass --addresses FILE",
            addresses_path.display(),
            addresses_path.display()
        );
    }
    let addresses = read_addresses(&addresses_path)?;
    if addresses.chain_id != chain_id {
        bail!(
            "{} is a deployment on chain {}, but agents.toml says chain {chain_id}",
            addresses_path.display(),
            addresses.chain_id
        );
    }
    let client = chain::connect(url, Arc::new(Wallet::random())).await?;
    if !Deployment::at(client, &addresses).is_deployed().await? {
        bail!(
            "network {url}: the contracts of {} have no code there (another chain, or a reset node?)",
            addresses_path.display()
        );
    }
    println!("chain:     {url} (chain {chain_id})");
    Ok(ChainSetup {
        url: url.to_owned(),
        addresses,
        addresses_path,
        node: None,
    })
}

/// One supervised agent process.
struct Supervised {
    name: String,
    exe: PathBuf,
    args: Vec<OsString>,
    pid_file: PathBuf,
    restart_delay: Duration,
}

/// Runs `child` until `stop`, restarting it when it dies.
async fn supervise(
    child: Supervised,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<(String, String, Address)>,
) {
    let name = child.name.as_str();
    let mut delay = child.restart_delay;
    let mut starts: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        starts += 1;
        let started = Instant::now();
        let spawned = tokio::process::Command::new(&child.exe)
            .args(&child.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a terminal's Ctrl-C reaches the supervisor only,
            // which stops the children in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut proc = match spawned {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "agora::up", agent = name, error = %e, "cannot start the agent process");
                if wait_or_stop(&mut stop, delay).await {
                    break;
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                continue;
            }
        };
        let pid = proc.id().unwrap_or_default();
        if let Err(e) = std::fs::write(&child.pid_file, format!("{pid}\n")) {
            tracing::warn!(target: "agora::up", agent = name, error = %e, "pid file not written");
        }
        tracing::info!(target: "agora::up", agent = name, pid, start = starts, "agent process started");
        let stdin = proc.stdin.take();
        if let Some(out) = proc.stdout.take() {
            let name = name.to_owned();
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut words = line.split_whitespace();
                    if words.next() == Some("READY") {
                        let url = words.next().unwrap_or_default().to_owned();
                        match words.next().map(str::parse::<Address>) {
                            Some(Ok(address)) => {
                                println!("agent {name:<10} ready  pid {pid}  {url}  {address}");
                                let _ = ready.send((name.clone(), url, address)).await;
                            }
                            _ => {
                                tracing::warn!(target: "agora::up", agent = %name, line, "bad READY line")
                            }
                        }
                    } else {
                        println!("[{name}] {line}");
                    }
                }
            });
        }
        let exited = tokio::select! {
            status = proc.wait() => Some(status),
            _ = stop.wait_for(|s| *s) => None,
        };
        match exited {
            Some(status) => {
                let status = match status {
                    Ok(s) => describe_exit(s),
                    Err(e) => format!("unknown status ({e})"),
                };
                let _ = std::fs::remove_file(&child.pid_file);
                if *stop.borrow() {
                    tracing::info!(target: "agora::up", agent = name, pid, %status, "agent exited while stopping");
                    break;
                }
                if started.elapsed() >= STABLE_RUN {
                    delay = child.restart_delay;
                }
                tracing::warn!(target: "agora::up", agent = name, pid, %status, restart_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "agent process died; restarting");
                println!(
                    "agent {name:<10} exited ({status}); restarting in {:.1}s",
                    delay.as_secs_f64()
                );
                drop(stdin);
                if wait_or_stop(&mut stop, delay).await {
                    break;
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
            None => {
                // Closing its standard input asks the agent to stop.
                drop(stdin);
                match tokio::time::timeout(STOP_GRACE, proc.wait()).await {
                    Ok(Ok(status)) => {
                        tracing::info!(target: "agora::up", agent = name, pid, status = %describe_exit(status), "agent stopped");
                    }
                    _ => {
                        tracing::warn!(target: "agora::up", agent = name, pid, "agent did not stop in time; killing it");
                        let _ = proc.kill().await;
                    }
                }
                let _ = std::fs::remove_file(&child.pid_file);
                break;
            }
        }
    }
}

/// Sleeps `delay`; true if `stop` came first.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(9)) => "killed by SIGKILL".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn state_dir_defaults_beside_the_config() {
        assert_eq!(
            state_dir(Path::new("x/agents.toml"), None),
            Path::new("x/.agora")
        );
        assert_eq!(
            state_dir(Path::new("agents.toml"), None),
            Path::new("./.agora")
        );
        assert_eq!(
            state_dir(Path::new("agents.toml"), Some(Path::new("/tmp/s"))),
            Path::new("/tmp/s")
        );
    }
}
