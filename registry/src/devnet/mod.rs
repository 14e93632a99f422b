//! The embedded devnet: an in-process EVM (revm, Cancun rules) behind the Ethereum
//! JSON-RPC API, over HTTP and WebSocket on one port.
//!
//! Every transaction is mined at once in its own block; state, blocks, receipts and
//! logs persist in sled under the data directory, so a restart loses nothing. Dev
//! accounts are prefunded at genesis. ethers, `cast` and other clients talk to it as
//! to any node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), registry::devnet::DevnetError> {
//! use registry::devnet::{Devnet, DevnetConfig};
//! let dir = std::env::temp_dir().join("agora-devnet-doc");
//! let node = Devnet::spawn(DevnetConfig::new(&dir)).await?;
//! println!("JSON-RPC on {}", node.http_url());
//! node.shutdown().await;
//! # Ok(()) }
//! ```

#[cfg(test)]
mod fuzz_tests;
mod rpc;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ethers::types::H256;
use revm::primitives::{Address, U256};
use tokio::sync::{broadcast, oneshot, Mutex};
use wallets::{keccak256, Wallet};

use state::ChainState;
pub(crate) use state::Mined;

/// The embedded chain's default chain id. Deliberately not anvil's 31337, so
/// signatures made for one dev chain never replay on the other.
pub const DEFAULT_CHAIN_ID: u64 = 1337;

/// How many dev accounts [`DevnetConfig::new`] prefunds.
pub const DEV_ACCOUNTS: usize = 10;

/// Errors of the devnet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// The chain data could not be read or written.
    #[error("devnet data {path}: {source}")]
    Storage {
        /// The data directory.
        path: PathBuf,
        /// The sled error.
        #[source]
        source: sled::Error,
    },
    /// Stored chain data did not decode.
    #[error("devnet data is corrupt: {0}")]
    Corrupt(String),
    /// The configuration is unusable.
    #[error("devnet configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A transaction or call was rejected before execution (bad nonce, funds, signature).
    #[error("{0}")]
    Rejected(String),
    /// Execution reverted or halted; the revert data, if any, comes along.
    #[error("{}", .0.0)]
    Reverted((String, Option<ethers::types::Bytes>)),
}

impl DevnetError {
    pub(crate) fn storage(path: &Path, source: sled::Error) -> Self {
        Self::Storage {
            path: path.to_owned(),
            source,
        }
    }
}

/// The secret key of dev account `i`: `keccak256("agora devnet account" ‖ i)`.
///
/// These keys are public by construction, like anvil's; they exist only so that
/// tests and local demos have funded accounts. Never use them on a real chain.
pub fn dev_key(i: u32) -> [u8; 32] {
    keccak256([b"agora devnet account".as_slice(), &i.to_be_bytes()].concat()).0
}

/// Dev account `i` as a wallet.
///
/// # Panics
/// Never: every derived key is a valid secp256k1 secret (checked by a test for the
/// accounts that are prefunded).
pub fn dev_wallet(i: u32) -> Wallet {
    // keccak256 outputs of these fixed inputs are valid keys; fall back to the next
    // index in the astronomically unlikely other case.
    Wallet::from_bytes(&dev_key(i)).unwrap_or_else(|_| dev_wallet(i + 1_000))
}

/// How to run a devnet.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Where chain data lives.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The chain id.
    pub chain_id: u64,
    /// Balances at genesis (only used when the data directory is new).
    pub genesis: Vec<(wallets::Address, wallets::U256)>,
}

impl DevnetConfig {
    /// Loopback on a free port, chain [`DEFAULT_CHAIN_ID`], the [`DEV_ACCOUNTS`] dev
    /// accounts funded with 10 000 ether each.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let ether = wallets::U256::exp10(18);
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            chain_id: DEFAULT_CHAIN_ID,
            genesis: (0..DEV_ACCOUNTS as u32)
                .map(|i| (dev_wallet(i).address(), ether * 10_000))
                .collect(),
        }
    }
}

/// Shared between the RPC handlers.
pub(crate) struct Shared {
    pub(crate) chain: Mutex<ChainState>,
    pub(crate) chain_id: u64,
    pub(crate) events: broadcast::Sender<Arc<Mined>>,
}

/// The devnet.
#[derive(Debug)]
pub struct Devnet;

impl Devnet {
    /// Opens the chain data and serves JSON-RPC until the handle is shut down or dropped.
    ///
    /// # Errors
    /// [`DevnetError::Storage`] / [`DevnetError::Corrupt`] for unreadable data (or data
    /// of another chain id), [`DevnetError::Bind`] if the address is taken.
    pub async fn spawn(config: DevnetConfig) -> Result<DevnetHandle, DevnetError> {
        let genesis: Vec<(Address, U256)> = config
            .genesis
            .iter()
            .map(|(a, v)| {
                let mut b = [0u8; 32];
                v.to_big_endian(&mut b);
                (Address::from(a.0), U256::from_be_bytes(b))
            })
            .collect();
        let dir = config.data_dir.clone();
        let chain_id = config.chain_id;
        let chain = tokio::task::spawn_blocking(move || ChainState::open(&dir, chain_id, &genesis))
            .await
            .map_err(|e| DevnetError::Config(format!("opening chain data: {e}")))??;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
            chain_id,
            events,
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| DevnetError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DevnetError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = rpc::router(shared.clone());
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(target: "chain::devnet", error = %e, "server stopped");
            }
        });
        tracing::info!(target: "chain::devnet", %addr, chain_id, data = %config.data_dir.display(), "devnet listening");
        Ok(DevnetHandle {
            addr,
            chain_id,
            stop: Some(stop_tx),
            task: Some(task),
            shared,
        })
    }
}

/// A running devnet. Dropping it stops the server.
#[derive(Debug)]
pub struct DevnetHandle {
    addr: SocketAddr,
    chain_id: u64,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

impl DevnetHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// `http://addr`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://addr`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The latest block number.
    pub async fn block_number(&self) -> u64 {
        self.shared.chain.lock().await.head_number()
    }

    /// The ether balance of `who`, in wei.
    pub async fn balance(&self, who: wallets::Address) -> wallets::U256 {
        let b = self
            .shared
            .chain
            .lock()
            .await
            .balance(ethers::types::Address::from(who.0));
        let mut bytes = [0u8; 32];
        b.to_big_endian(&mut bytes);
        wallets::U256::from_big_endian(&bytes)
    }

    /// Sets the ether balance of `who` (the devnet's faucet: gas for dev agents whose
    /// keys it did not fund at genesis). Persisted like any other state.
    ///
    /// # Errors
    /// [`DevnetError::Storage`].
    pub async fn set_balance(
        &self,
        who: wallets::Address,
        wei: wallets::U256,
    ) -> Result<(), DevnetError> {
        let mut bytes = [0u8; 32];
        wei.to_big_endian(&mut bytes);
        self.shared.chain.lock().await.set_balance(
            ethers::types::Address::from(who.0),
            ethers::types::U256::from_big_endian(&bytes),
        )
    }

    /// Whether the transaction is mined.
    ///
    /// # Errors
    /// [`DevnetError::Storage`].
    pub async fn has_transaction(&self, hash: H256) -> Result<bool, DevnetError> {
        self.shared.chain.lock().await.has_tx(&hash)
    }

    /// Stops serving and waits for the server task; the chain data stays on disk.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DevnetHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
