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

/// Regression: `node_modules/.bin/anvil` is a node script that runs the real anvil as
/// its child, and killing the script left that child serving. Dropping an [`Anvil`]
/// must stop the node itself: its port refuses connections afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_anvil_stops_the_node() {
    let anvil = Anvil::spawn().await.unwrap();
    let url = anvil.http_url();
    let addr = url.trim_start_matches("http://").to_owned();
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "anvil at {addr} is not serving"
    );
    drop(anvil);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "anvil still serves at {addr} after its handle was dropped"
    );
}
