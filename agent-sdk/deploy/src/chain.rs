//! The chain a deployment runs on: the embedded devnet (started or reopened, the
//! contracts deployed when missing, the agents funded from dev accounts) or a node by
//! URL with a deployment it was given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry::chain::{self, Addresses, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig, DevnetHandle};
use wallets::{Address, Amount, Wallet};

use crate::config::AgentConfig;
use crate::layout::{read_addresses, write_json_atomically};
use crate::{Error, Result};

/// Ether each agent gets for gas on the embedded chain.
pub const DEV_GAS_ETHER: u64 = 10;

/// The chain a deployment runs on.
#[derive(Debug)]
pub struct ChainSetup {
    /// JSON-RPC URL.
    pub url: String,
    /// The deployment.
    pub addresses: Addresses,
    /// Where the deployment's addresses are written.
    pub addresses_path: PathBuf,
    /// The embedded node, when it is ours.
    pub node: Option<DevnetHandle>,
    /// Whether the contracts were deployed just now (not found from an earlier run).
    pub deployed_now: bool,
}

impl ChainSetup {
    /// Starts (or reopens) the embedded devnet in `data`, deploys the contracts when
    /// `data/addresses.json` names none with code, and funds the agents from the dev
    /// accounts: gas for every agent, and stablecoin up to `buyer_funds` for the
    /// agents that buy (travel agents).
    ///
    /// # Errors
    /// [`Error::Devnet`] when the node does not start, [`Error::Chain`] when a deploy
    /// or funding transaction fails, [`Error::Io`] when the addresses cannot be
    /// written.
    pub async fn embedded(
        data: &Path,
        chain_id: u64,
        listen: SocketAddr,
        agents: &[(&AgentConfig, Address)],
        buyer_funds: Amount,
    ) -> Result<Self> {
        let mut devnet = DevnetConfig::new(data);
        devnet.chain_id = chain_id;
        devnet.listen = listen;
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
        let deployed_now = existing.is_none();
        let (contracts, addresses) = match existing {
            Some(a) => (Deployment::at(deployer, &a), a),
            None => {
                tracing::info!(target: "agora::up", "deploying the contracts");
                let (contracts, a) = Deployment::deploy(deployer, &DeployConfig::dev()).await?;
                write_json_atomically(&addresses_path, &a)?;
                (contracts, a)
            }
        };
        tracing::info!(target: "agora::up", rpc = %url, registry = ?addresses.registry, "chain ready");

        let wei = wallets::U256::exp10(18);
        for (agent, address) in agents {
            if node.balance(*address).await < wei {
                node.set_balance(*address, wei * DEV_GAS_ETHER).await?;
                tracing::info!(target: "agora::up", agent = %agent.name, %address, ether = DEV_GAS_ETHER, "funded for gas");
            }
            if agent.skills.contains("travel") {
                let have = contracts.balance_of(*address).await?;
                if have < buyer_funds {
                    let top_up =
                        Amount::from_base_units(buyer_funds.base_units() - have.base_units());
                    contracts.mint(*address, top_up).await?;
                    tracing::info!(target: "agora::up", agent = %agent.name, %address, amount = %top_up, "minted stablecoin");
                }
            }
        }
        Ok(Self {
            url,
            addresses,
            addresses_path,
            node: Some(node),
            deployed_now,
        })
    }

    /// A node by URL, with the deployment in `addresses_path`: the file must exist,
    /// be a deployment on `chain_id`, and its contracts must have code on the node.
    ///
    /// # Errors
    /// [`Error::Network`] saying which of these fails and how to fix it;
    /// [`Error::Chain`] when the node does not answer.
    pub async fn rpc(url: &str, chain_id: u64, addresses_path: PathBuf) -> Result<Self> {
        let network = |reason: String| Error::Network {
            url: url.to_owned(),
            reason,
        };
        if !addresses_path.exists() {
            return Err(network(format!(
                "no deployment addresses at {path}; agora up deploys contracts only on the \
                 embedded chain. Deploy them with `agora registry deploy --rpc {url} --keystore KEY \
                 --out {path}` or pass --addresses FILE",
                path = addresses_path.display()
            )));
        }
        let addresses = read_addresses(&addresses_path)?;
        if addresses.chain_id != chain_id {
            return Err(network(format!(
                "{} is a deployment on chain {}, but agents.toml says chain {chain_id}",
                addresses_path.display(),
                addresses.chain_id
            )));
        }
        let client = chain::connect(url, Arc::new(Wallet::random())).await?;
        if !Deployment::at(client, &addresses).is_deployed().await? {
            return Err(network(format!(
                "the contracts of {} have no code there (another chain, or a reset node?)",
                addresses_path.display()
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            addresses,
            addresses_path,
            node: None,
            deployed_now: false,
        })
    }

    /// Stops the embedded node, if it is ours.
    pub async fn shutdown(self) {
        if let Some(node) = self.node {
            node.shutdown().await;
        }
    }
}
