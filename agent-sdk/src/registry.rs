//! Peers from the on-chain registry: a [`Directory`] over the registry's discovery
//! cache.

use std::sync::Arc;

use agent_core::{Directory, Error, Peer, Result};
use wallets::{Address, Amount};

pub use registry::discovery::Discovery;

/// Finds peers in the `AgentRegistry` through a synced [`Discovery`] cache: active,
/// staked agents, not suspended, offering the skill at or under the price, ranked by
/// reputation and then price. Each lookup first syncs the cache with the chain.
#[derive(Clone)]
pub struct RegistryDirectory {
    discovery: Arc<Discovery>,
    sync_first: bool,
}

impl std::fmt::Debug for RegistryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryDirectory")
            .field("sync_first", &self.sync_first)
            .finish_non_exhaustive()
    }
}

impl RegistryDirectory {
    /// A directory over `discovery`, syncing it before each lookup.
    pub fn new(discovery: Arc<Discovery>) -> Self {
        Self {
            discovery,
            sync_first: true,
        }
    }

    /// Answers from the cache alone (something else keeps it synced, e.g.
    /// [`Discovery::follow`]).
    #[must_use]
    pub fn cached(mut self) -> Self {
        self.sync_first = false;
        self
    }
}

#[async_trait::async_trait]
impl Directory for RegistryDirectory {
    async fn find(&self, kind: &str, max_price: Option<Amount>) -> Result<Vec<Peer>> {
        let err = |e: registry::discovery::DiscoveryError| Error::Host(format!("registry: {e}"));
        if self.sync_first {
            self.discovery.sync().await.map_err(err)?;
        }
        let max = max_price.unwrap_or(Amount::from_base_units(u128::MAX));
        let offers = self.discovery.find(kind, max).map_err(err)?;
        Ok(offers
            .into_iter()
            .map(|o| Peer {
                address: Address(o.agent.address.0),
                endpoint: (!o.agent.endpoint.is_empty()).then_some(o.agent.endpoint),
                price: Some(o.service.price),
            })
            .collect())
    }
}
