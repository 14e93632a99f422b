//! Where a message for an address goes: an agent on this host, or a link to a
//! remote host.

use std::sync::{Arc, PoisonError, RwLock};

use actix::Addr;
use wallets::Address;

use crate::agent::{AgentActor, Mailbox};
use crate::envelope::FastMap;
use crate::error::{Error, Result};
use crate::transport::{Link, Transport};

/// A resolved destination.
#[derive(Clone)]
pub(crate) enum Route {
    Local(LocalAgent),
    Remote(Arc<Link>),
}

/// An agent on this host: its actor and its mailbox's room counter.
#[derive(Clone)]
pub(crate) struct LocalAgent {
    pub(crate) addr: Addr<AgentActor>,
    pub(crate) mailbox: Arc<Mailbox>,
}

/// The host's routing table.
pub(crate) struct Router {
    local: RwLock<FastMap<Address, LocalAgent>>,
    /// Remote agents reachable over an existing connection (learned from traffic).
    learned: RwLock<FastMap<Address, Arc<Link>>>,
    /// Remote agents' endpoints (from configuration or discovery).
    endpoints: RwLock<FastMap<Address, String>>,
    transport: Arc<Transport>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    pub(crate) fn new(transport: Arc<Transport>) -> Self {
        Self {
            local: RwLock::default(),
            learned: RwLock::default(),
            endpoints: RwLock::default(),
            transport,
        }
    }

    pub(crate) fn add_local(&self, address: Address, agent: LocalAgent) -> Result<()> {
        let mut local = write(&self.local);
        if local.contains_key(&address) {
            return Err(Error::Duplicate(address));
        }
        local.insert(address, agent);
        Ok(())
    }

    pub(crate) fn remove_local(&self, address: &Address) -> Option<Addr<AgentActor>> {
        write(&self.local).remove(address).map(|a| a.addr)
    }

    pub(crate) fn local(&self, address: &Address) -> Option<Addr<AgentActor>> {
        read(&self.local).get(address).map(|a| a.addr.clone())
    }

    /// Remembers that `address` answers on `link` (a connection it used).
    pub(crate) fn learn(&self, address: Address, link: &Arc<Link>) {
        let known = read(&self.learned)
            .get(&address)
            .is_some_and(|l| Arc::ptr_eq(l, link) && l.is_open());
        if !known {
            write(&self.learned).insert(address, link.clone());
        }
    }

    /// Sets the endpoint (a `ws://` URL) where `address` is reached.
    pub(crate) fn set_endpoint(&self, address: Address, url: String) {
        write(&self.endpoints).insert(address, url);
    }

    pub(crate) fn resolve(&self, to: &Address) -> Result<Route> {
        if let Some(agent) = read(&self.local).get(to) {
            return Ok(Route::Local(agent.clone()));
        }
        if let Some(link) = read(&self.learned).get(to).filter(|l| l.is_open()) {
            return Ok(Route::Remote(link.clone()));
        }
        let url = read(&self.endpoints).get(to).cloned();
        match url {
            Some(url) => Ok(Route::Remote(self.transport.dial(&url))),
            None => Err(Error::NoRoute(*to)),
        }
    }
}
