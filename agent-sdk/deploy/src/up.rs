//! A whole deployment running: what `agora up` does, without the command line.
//!
//! [`Up::start`] checks every agent's password and keystore before anything starts,
//! prepares the chain ([`ChainSetup`]: the embedded devnet, started or reopened, with
//! the contracts deployed when they are missing and the agents funded; or a node by
//! URL with a deployment it is given), writes `up.json`, and runs each agent as a
//! child process under a [`Supervisor`] (the command comes from the caller: for the
//! `agora` binary, `agora agent-run`). [`Up::next`] follows the children and keeps
//! `up.json` current with each agent's endpoint as it reports ready; [`Up::stop`]
//! stops the children in order, then the chain, and removes `up.json`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use wallets::{Address, Amount};

use crate::config::{Config, Network};
use crate::layout::{agent_dir, agent_password, agent_wallet, base_dir, UpAgent, UpState};
use crate::{ChainSetup, ChildSpec, Error, Result, Supervisor, SupervisorEvent};

/// What an agent's child process is to run: one agent of the deployment, on the
/// prepared chain.
#[derive(Clone, Debug)]
pub struct AgentRun {
    /// The deployment file.
    pub config_path: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The agent's name.
    pub name: String,
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The deployment's addresses file.
    pub addresses_path: PathBuf,
}

/// The program and arguments that run one agent (see [`AgentRun`]) in a child
/// process, which prints `READY <url> <address>` once it serves.
pub type AgentCommand = Box<dyn Fn(&AgentRun) -> (PathBuf, Vec<OsString>) + Send + Sync>;

/// How to run a deployment.
pub struct UpOptions {
    /// The deployment file.
    pub config_path: PathBuf,
    /// The state directory (see [`crate::layout::state_dir`]).
    pub state_dir: PathBuf,
    /// Where the embedded chain keeps its data (default: the deployment's
    /// `data_dir`, relative to the deployment file).
    pub chain_data: Option<PathBuf>,
    /// Where the embedded chain serves JSON-RPC (port 0 picks a free port).
    pub chain_listen: SocketAddr,
    /// For an rpc network, the deployment's addresses file (default:
    /// `state_dir/addresses.json`).
    pub addresses: Option<PathBuf>,
    /// Delay before restarting an agent that died; it doubles per crash, capped.
    pub restart_delay: Duration,
    /// Stablecoin each buyer (an agent with the travel skill) is topped up to on the
    /// embedded chain.
    pub buyer_funds: Amount,
    /// How an agent's child process is started.
    pub agent_command: AgentCommand,
}

impl std::fmt::Debug for UpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpOptions")
            .field("config_path", &self.config_path)
            .field("state_dir", &self.state_dir)
            .field("chain_data", &self.chain_data)
            .field("chain_listen", &self.chain_listen)
            .field("addresses", &self.addresses)
            .field("restart_delay", &self.restart_delay)
            .field("buyer_funds", &self.buyer_funds)
            .finish_non_exhaustive()
    }
}

/// Where the chain of a running deployment is.
#[derive(Clone, Debug)]
pub enum ChainPlace {
    /// The embedded devnet, with its data directory.
    Embedded(PathBuf),
    /// A node by URL.
    Rpc,
}

/// What [`Up::next`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpEvent {
    /// What the supervisor saw (readiness already recorded in `up.json`).
    Child(SupervisorEvent),
    /// Every agent has reported ready once: the deployment is up.
    AllReady,
}

/// A deployment running in this process and its children.
#[derive(Debug)]
pub struct Up {
    chain: ChainSetup,
    place: ChainPlace,
    dir: PathBuf,
    state: UpState,
    supervisor: Supervisor,
    events: mpsc::Receiver<SupervisorEvent>,
    waiting: Option<usize>,
}

impl Up {
    /// Starts the deployment of `options` (see the module's documentation); `progress`
    /// hears each step in words before it is taken.
    ///
    /// # Errors
    /// The deployment's errors ([`Error::Config`], [`Error::Password`],
    /// [`Error::Keystore`]), the chain's ([`ChainSetup::embedded`],
    /// [`ChainSetup::rpc`]) and [`Error::Io`] for the state directory.
    pub async fn start(options: UpOptions, mut progress: impl FnMut(&str)) -> Result<Self> {
        let config = Config::load(&options.config_path)?;
        let dir = options.state_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        // Every agent's password and keystore first: a missing variable is an error
        // before anything starts.
        for agent in &config.agents {
            agent_password(agent)?;
        }
        let mut wallets = Vec::new();
        for agent in &config.agents {
            wallets.push(agent_wallet(&options.config_path, agent).await?.address());
        }
        let (chain, place) = match &config.network {
            Network::Embedded { data_dir, chain_id } => {
                let data = options
                    .chain_data
                    .clone()
                    .unwrap_or_else(|| base_dir(&options.config_path).join(data_dir));
                progress(&format!(
                    "starting the embedded chain in {}",
                    data.display()
                ));
                let agents: Vec<_> = config.agents.iter().zip(wallets.iter().copied()).collect();
                let chain = ChainSetup::embedded(
                    &data,
                    *chain_id,
                    options.chain_listen,
                    &agents,
                    options.buyer_funds,
                )
                .await?;
                (chain, ChainPlace::Embedded(data))
            }
            Network::Rpc { url, chain_id } => {
                let path = options
                    .addresses
                    .clone()
                    .unwrap_or_else(|| dir.join("addresses.json"));
                (
                    ChainSetup::rpc(url, *chain_id, path).await?,
                    ChainPlace::Rpc,
                )
            }
        };
        let mut state = UpState {
            rpc_url: chain.url.clone(),
            chain_id: chain.addresses.chain_id,
            addresses: chain.addresses_path.clone(),
            pid: std::process::id(),
            agents: BTreeMap::new(),
        };
        let mut children = Vec::new();
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
            std::fs::create_dir_all(&adir).map_err(|e| Error::io("creating", &adir, e))?;
            let (program, args) = (options.agent_command)(&AgentRun {
                config_path: options.config_path.clone(),
                state_dir: dir.clone(),
                name: agent.name.clone(),
                rpc_url: chain.url.clone(),
                addresses_path: chain.addresses_path.clone(),
            });
            children.push(
                ChildSpec::new(agent.name.clone(), program, args)
                    .pid_file(adir.join("pid"))
                    .restart_delay(options.restart_delay),
            );
        }
        state.save(&dir)?;
        let waiting = Some(children.len());
        let (supervisor, events) = Supervisor::start(children);
        Ok(Self {
            chain,
            place,
            dir,
            state,
            supervisor,
            events,
            waiting,
        })
    }

    /// The chain the deployment runs on.
    pub fn chain(&self) -> &ChainSetup {
        &self.chain
    }

    /// Where that chain is.
    pub fn chain_place(&self) -> &ChainPlace {
        &self.place
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// What `up.json` says now: the agents, their addresses and endpoints.
    pub fn state(&self) -> &UpState {
        &self.state
    }

    /// The next event of the children; `None` once the supervisor has stopped. A
    /// child's readiness is written to `up.json` before it is returned, and the
    /// first time every agent has been ready, [`UpEvent::AllReady`] follows it.
    ///
    /// # Errors
    /// [`Error::Io`] when `up.json` cannot be written.
    pub async fn next(&mut self) -> Result<Option<UpEvent>> {
        if self.waiting == Some(0) {
            self.waiting = None;
            return Ok(Some(UpEvent::AllReady));
        }
        let Some(event) = self.events.recv().await else {
            return Ok(None);
        };
        if let SupervisorEvent::Ready {
            name, url, address, ..
        } = &event
        {
            self.ready(name, url, *address)?;
        }
        Ok(Some(UpEvent::Child(event)))
    }

    fn ready(&mut self, name: &str, url: &str, address: Address) -> Result<()> {
        if let Some(a) = self.state.agents.get_mut(name) {
            if a.address != address {
                tracing::warn!(target: "agora::up", agent = %name, %address, "agent reports another address");
            }
            a.endpoint = Some(url.to_owned());
        }
        self.state.save(&self.dir)?;
        self.waiting = self.waiting.map(|n| n.saturating_sub(1));
        Ok(())
    }

    /// Stops every child (each hears it on its standard input and is killed if it
    /// does not stop in time), reporting what they say meanwhile to `on_event`, then
    /// the chain; removes `up.json` and keeps the rest of the state directory.
    pub async fn stop(self, mut on_event: impl FnMut(SupervisorEvent)) {
        let Self {
            chain,
            dir,
            supervisor,
            mut events,
            ..
        } = self;
        let stopping = tokio::spawn(supervisor.stop());
        while let Some(event) = events.recv().await {
            on_event(event);
        }
        if let Err(e) = stopping.await {
            tracing::warn!(target: "agora::up", error = %e, "stopping the agents failed");
        }
        chain.shutdown().await;
        let _ = std::fs::remove_file(UpState::path(&dir));
    }
}
