//! Shared fixtures: the nodes the tests run against (embedded devnet and anvil).

use registry::anvil::Anvil;
use registry::devnet::{Devnet, DevnetConfig, DevnetHandle};

/// A running node of either kind; stops when dropped.
pub(crate) enum Node {
    Embedded(DevnetHandle),
    Anvil(Anvil),
}

impl Node {
    pub(crate) fn url(&self) -> String {
        match self {
            Self::Embedded(h) => h.http_url(),
            Self::Anvil(a) => a.http_url(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Anvil(_) => "anvil",
        }
    }
}

/// The embedded devnet on a free loopback port.
pub(crate) async fn embedded(dir: &std::path::Path) -> Node {
    Node::Embedded(Devnet::spawn(DevnetConfig::new(dir)).await.unwrap())
}

/// anvil on a free loopback port, with our dev accounts funded like the devnet's.
pub(crate) async fn anvil() -> Node {
    Node::Anvil(Anvil::spawn().await.unwrap())
}
