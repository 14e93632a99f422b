//! Where a message for a remote address goes: a link to another host. (Agents on
//! this host are found first, by the agent module's table of local agents; the
//! router knows nothing of agents.)
//!
//! A remote agent is reached through, in this order:
//!
//! 1. its **configured endpoint** (given to [`Host::add_peer`](crate::Host::add_peer)
//!    or found through a [`Directory`](crate::Directory)): it always wins, and no
//!    route is ever learned for an address that has one;
//! 2. a **learned route**: the connection its last admitted envelope arrived on.
//!    A route is learned only once the envelope passed every check (signature,
//!    chain, expiry, duplicates, replays), so a recorded envelope replayed on
//!    another connection cannot re-point it. The learned routes are bounded
//!    ([`HostConfig::max_learned_routes`](crate::HostConfig::max_learned_routes)):
//!    beyond that the least recently learned or used one is forgotten (routes over
//!    closed connections first). Recency is a counter of learnings and uses, not
//!    a time: no clock is read here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use wallets::Address;

use crate::envelope::FastMap;
use crate::error::{Error, Result};
use crate::link::Link;
use crate::transport::Transport;

/// A route learned from traffic, with the tick of its last learning or use.
struct Learned {
    link: Arc<Link>,
    used: AtomicU64,
}

/// The bounded table of learned routes.
struct LearnedRoutes {
    map: FastMap<Address, Learned>,
    cap: usize,
    evicted: u64,
}

impl LearnedRoutes {
    /// Forgets routes until at most `cap` are left: those over closed connections
    /// first, then the least recently learned or used. O(n) per eviction, and an
    /// eviction happens only when a new address is learned at capacity.
    fn evict(&mut self) {
        while self.map.len() > self.cap {
            let victim = self
                .map
                .iter()
                .min_by_key(|(_, r)| (r.link.is_open(), r.used.load(Ordering::Relaxed)))
                .map(|(a, _)| *a);
            let Some(victim) = victim else { return };
            self.map.remove(&victim);
            self.evicted += 1;
        }
    }
}

/// The host's table of routes to remote agents.
pub(crate) struct Router {
    /// Remote agents reachable over an existing connection (learned from admitted
    /// traffic), bounded.
    learned: RwLock<LearnedRoutes>,
    /// Remote agents' endpoints (from configuration or discovery); they win over
    /// learned routes.
    endpoints: RwLock<FastMap<Address, String>>,
    /// Ticks for the recency of learned routes.
    ticks: AtomicU64,
    transport: Arc<Transport>,
}

/// Counts of the learned routes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RouteStats {
    pub(crate) learned: u64,
    pub(crate) evicted: u64,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    /// A router keeping at most `max_learned` learned routes (at least one).
    pub(crate) fn new(transport: Arc<Transport>, max_learned: usize) -> Self {
        Self {
            learned: RwLock::new(LearnedRoutes {
                map: FastMap::default(),
                cap: max_learned.max(1),
                evicted: 0,
            }),
            endpoints: RwLock::default(),
            ticks: AtomicU64::new(0),
            transport,
        }
    }

    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Remembers that `address` answers on `link`, the connection an envelope of
    /// it arrived on. Call only once that envelope was admitted (signature, chain,
    /// expiry, duplicate and replay checks passed). Does nothing for an address
    /// with a configured endpoint.
    pub(crate) fn learn(&self, address: Address, link: &Arc<Link>) {
        if read(&self.endpoints).contains_key(&address) {
            return;
        }
        let now = self.tick();
        {
            let learned = read(&self.learned);
            if let Some(r) = learned
                .map
                .get(&address)
                .filter(|r| Arc::ptr_eq(&r.link, link) && r.link.is_open())
            {
                r.used.store(now, Ordering::Relaxed);
                return;
            }
        }
        let mut learned = write(&self.learned);
        learned.map.insert(
            address,
            Learned {
                link: link.clone(),
                used: AtomicU64::new(now),
            },
        );
        learned.evict();
    }

    /// Sets the endpoint (a `ws://` URL) where `address` is reached. It wins over
    /// any route learned for that address, which is forgotten.
    pub(crate) fn set_endpoint(&self, address: Address, url: String) {
        write(&self.endpoints).insert(address, url);
        write(&self.learned).map.remove(&address);
    }

    /// The link to the remote agent `to`: over its configured endpoint (dialed if
    /// need be), else over its learned route.
    ///
    /// # Errors
    /// [`Error::NoRoute`] when it has neither.
    pub(crate) fn resolve(&self, to: &Address) -> Result<Arc<Link>> {
        let url = read(&self.endpoints).get(to).cloned();
        if let Some(url) = url {
            return Ok(self.transport.dial(&url));
        }
        if let Some(r) = read(&self.learned).map.get(to).filter(|r| r.link.is_open()) {
            r.used.store(self.tick(), Ordering::Relaxed);
            return Ok(r.link.clone());
        }
        Err(Error::NoRoute(*to))
    }

    /// Counts of the learned routes.
    pub(crate) fn route_stats(&self) -> RouteStats {
        let learned = read(&self.learned);
        RouteStats {
            learned: u64::try_from(learned.map.len()).unwrap_or(u64::MAX),
            evicted: learned.evicted,
        }
    }
}
