//! Shared fixtures: the nodes the tests run against (embedded devnet and anvil) and
//! the foundry binaries from the npm registry.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use ethers::providers::{Http, Provider};
use ethers::types::{Address as EAddress, U256 as EU256};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig, DevnetHandle, DEV_ACCOUNTS};

/// Installs the pinned npm packages of registry/contracts once per test run.
static NPM: Mutex<bool> = Mutex::new(false);

/// A foundry binary (`cast`, `anvil`) from registry/contracts/node_modules, installed
/// with `npm ci` (the npm registry) if it is not there yet.
pub(crate) fn foundry_bin(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts");
    let bin = dir.join("node_modules/.bin").join(name);
    let mut installed = NPM.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() && !*installed {
        let status = Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to fetch the foundry binaries");
        assert!(status.success(), "npm ci in {} failed", dir.display());
        *installed = true;
    }
    assert!(bin.exists(), "{} is missing after npm ci", bin.display());
    bin
}

/// A running node of either kind; stops when dropped.
pub(crate) enum Node {
    Embedded(DevnetHandle),
    Anvil { child: Child, url: String },
}

impl Node {
    pub(crate) fn url(&self) -> String {
        match self {
            Self::Embedded(h) => h.http_url(),
            Self::Anvil { url, .. } => url.clone(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::Anvil { .. } => "anvil",
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Self::Anvil { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The embedded devnet on a free loopback port.
pub(crate) async fn embedded(dir: &std::path::Path) -> Node {
    Node::Embedded(Devnet::spawn(DevnetConfig::new(dir)).await.unwrap())
}

/// anvil on a free loopback port, with our dev accounts funded like the devnet's.
pub(crate) async fn anvil() -> Node {
    let mut child = Command::new(foundry_bin("anvil"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // anvil prints "Listening on 127.0.0.1:PORT" once it serves; keep draining its
    // output afterwards so it never blocks on a full pipe.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.by_ref().map_while(Result::ok).find_map(|l| {
        l.strip_prefix("Listening on ")
            .map(|a| format!("http://{}", a.trim()))
    });
    std::thread::spawn(move || lines.for_each(drop));
    let Some(url) = url else {
        let _ = child.kill();
        panic!("anvil exited before listening");
    };
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
    let ether = EU256::exp10(18) * 10_000;
    for i in 0..DEV_ACCOUNTS as u32 {
        let addr = EAddress::from(dev_wallet(i).address().0);
        let () = provider
            .request("anvil_setBalance", (addr, ether))
            .await
            .unwrap();
    }
    Node::Anvil { child, url }
}
