//! Fixtures for negotiation tests of this crate and of the crates above it (features
//! `negotiation` and `test-utils`): the embedded devnet with the contracts deployed,
//! buyer and seller agents with journals, and [`settled_deal`], one whole deal.
//!
//! The functions panic when a fixture cannot be set up: they are for tests.
#![allow(clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::prelude::*;
use agent_sdk::{Peer, StaticDirectory};
use registry::chain::{self, Addresses, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig, DevnetHandle};
use serde_json::{json, Value};
use wallets::{journal, Journal, JournalEntry, Limits, SpendingPolicy};

use super::{
    service_fn, token_domain, Buyer, ChainSettlement, ChainVerifier, Deal, DefaultSellerStrategy,
    PaymentMode, Seller, SellerStrategy, ServiceOutput,
};

/// The skill the fixtures' sellers sell.
pub const KIND: &str = "weather.Forecast";
/// The name of the stablecoin's EIP-712 domain.
pub const TOKEN: &str = "USD Coin";

/// An amount in USDC, e.g. `usdc("2.5")`.
pub fn usdc(s: &str) -> Amount {
    format!("{s} USDC").parse().expect("an amount")
}

/// The node a [`Chain`] runs on.
pub enum Node {
    /// The embedded devnet.
    Devnet(DevnetHandle),
    /// A local anvil (`registry::anvil`).
    Anvil(registry::anvil::Anvil),
}

impl Node {
    /// Its JSON-RPC URL.
    pub fn http_url(&self) -> String {
        match self {
            Self::Devnet(d) => d.http_url(),
            Self::Anvil(a) => a.http_url(),
        }
    }
}

/// A chain with the contracts deployed by dev account 0: the embedded devnet, or
/// anvil.
pub struct Chain {
    /// The node.
    pub node: Node,
    /// Where the contracts are.
    pub addresses: Addresses,
    /// The deployment, through dev account 0 (the stablecoin's minter).
    pub minter: Deployment,
}

impl Chain {
    /// Starts a devnet in `dir/chain` and deploys the contracts.
    pub async fn start(dir: &Path) -> Self {
        let node = Devnet::spawn(DevnetConfig::new(dir.join("chain")))
            .await
            .expect("devnet");
        Self::deploy(Node::Devnet(node)).await
    }

    /// Starts anvil (from the npm registry) and deploys the contracts.
    pub async fn start_on_anvil() -> Self {
        let node = registry::anvil::Anvil::spawn().await.expect("anvil");
        Self::deploy(Node::Anvil(node)).await
    }

    async fn deploy(node: Node) -> Self {
        let deployer = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
            .await
            .expect("connect");
        let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
            .await
            .expect("deploy");
        Self {
            node,
            addresses,
            minter,
        }
    }

    /// The stablecoin balance of `who`.
    pub async fn balance(&self, who: Address) -> Amount {
        self.minter.balance_of(who).await.expect("balance")
    }

    /// A settlement of [`TOKEN`] on this chain, signing with `wallet`.
    pub async fn settlement(&self, wallet: Arc<Wallet>) -> ChainSettlement {
        ChainSettlement::connect(&self.node.http_url(), wallet, &self.addresses, TOKEN)
            .await
            .expect("settlement")
    }
}

/// A running seller and its journal.
pub struct SellerAgent {
    /// The agent.
    pub handle: AgentHandle,
    /// Its seller skill (to settle its channels).
    pub seller: Seller,
    /// Its journal file.
    pub journal: PathBuf,
}

/// A seller of [`KIND`] with dev wallet `account` (which pays the gas), settling on
/// `chain`, answering with a fixed forecast, journaling to `dir/<name>.journal`.
/// Its service fails (error code `service_failed`) for tasks that start with
/// `fail:`, for tests of orders that go wrong after they were paid.
pub async fn seller(
    host: &Host,
    dir: &Path,
    chain: &Chain,
    name: &str,
    account: u32,
    strategy: impl SellerStrategy,
) -> SellerAgent {
    let wallet = Arc::new(dev_wallet(account));
    let settlement = chain.settlement(wallet.clone()).await;
    let journal_path = dir.join(format!("{name}.journal"));
    let journal = Journal::open(&journal_path, wallet.clone()).expect("journal");
    let seller_name = name.to_owned();
    let service = service_fn(move |task: String| {
        let by = seller_name.clone();
        async move {
            if task.starts_with("fail:") {
                return Err(SkillError::new(
                    "service_failed",
                    "the forecast service is down",
                ));
            }
            Ok(ServiceOutput::new(
                json!({"task": task, "by": by, "forecast": "sunny", "celsius": 21}),
            ))
        }
    });
    let seller = Seller::new(KIND, wallet.clone(), strategy, service, settlement, journal);
    let handle = seller
        .install(AgentBuilder::new(name).wallet(wallet))
        .spawn(host)
        .expect("seller agent");
    SellerAgent {
        handle,
        seller,
        journal: journal_path,
    }
}

/// A directory entry for `agent`.
pub fn peer(agent: &SellerAgent, endpoint: Option<String>, price: Option<Amount>) -> Peer {
    Peer {
        address: agent.handle.address(),
        endpoint,
        price,
    }
}

/// A running buyer, its skill, wallet, policy and journal.
pub struct BuyerAgent {
    /// The agent.
    pub handle: AgentHandle,
    /// Its buyer skill.
    pub buyer: Buyer,
    /// Its wallet.
    pub wallet: Arc<Wallet>,
    /// Its spending policy.
    pub policy: Arc<SpendingPolicy>,
    /// Its journal file (`dir/buyer.journal`).
    pub journal: PathBuf,
}

/// A buyer with a fresh wallet (it needs no gas), a spending policy of at most
/// `per_deal` per payment, and `directory`; it checks payments on `chain`
/// ([`ChainVerifier`]).
pub async fn buyer(
    host: &Host,
    dir: &Path,
    chain: &Chain,
    per_deal: Amount,
    directory: StaticDirectory,
) -> BuyerAgent {
    buyer_with(
        host,
        dir,
        chain,
        per_deal,
        directory,
        Arc::new(Wallet::random()),
    )
    .await
}

/// [`buyer`] with the given wallet.
pub async fn buyer_with(
    host: &Host,
    dir: &Path,
    chain: &Chain,
    per_deal: Amount,
    directory: StaticDirectory,
    wallet: Arc<Wallet>,
) -> BuyerAgent {
    let policy = SpendingPolicy::open(
        dir.join("buyer.policy"),
        wallet.clone(),
        Limits {
            per_deal: Some(per_deal),
            ..Limits::default()
        },
    )
    .expect("policy");
    let policy = chain.addresses.pin(policy, TOKEN);
    let journal_path = dir.join("buyer.journal");
    let journal = Journal::open(&journal_path, wallet.clone()).expect("journal");
    let verifier = ChainVerifier::connect(&chain.node.http_url(), &chain.addresses)
        .await
        .expect("verifier");
    let buyer = Buyer::new(
        wallet.clone(),
        token_domain(&chain.addresses, TOKEN),
        journal,
    )
    .with_verifier(verifier);
    let policy = Arc::new(policy);
    let handle = AgentBuilder::new("buyer")
        .wallet(wallet.clone())
        .policy(policy.clone())
        .directory(directory)
        .spawn(host)
        .expect("buyer agent");
    BuyerAgent {
        handle,
        buyer,
        wallet,
        policy,
        journal: journal_path,
    }
}

/// A host in `dir/name` listening on a free loopback port.
pub fn host(dir: &Path, name: &str, chain_id: u64) -> Host {
    Host::spawn(
        HostConfig::new(chain_id, dir.join(name))
            .name(name)
            .workers(2)
            .listen("127.0.0.1:0".parse().expect("address")),
    )
    .expect("host")
}

/// An agent of a test and its journal.
pub trait Journaled {
    /// The journal file.
    fn journal_path(&self) -> &Path;
    /// The agent's address, which signs the journal.
    fn signer(&self) -> Address;
    /// Changes after each write to the journal.
    fn journal_writes(&self) -> tokio::sync::watch::Receiver<u64>;
}

impl Journaled for SellerAgent {
    fn journal_path(&self) -> &Path {
        &self.journal
    }
    fn signer(&self) -> Address {
        self.handle.address()
    }
    fn journal_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.seller.journal_writes()
    }
}

impl Journaled for BuyerAgent {
    fn journal_path(&self) -> &Path {
        &self.journal
    }
    fn signer(&self) -> Address {
        self.handle.address()
    }
    fn journal_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.buyer.journal_writes()
    }
}

/// The entries of `agent`'s journal once it verifies and holds an entry of `until`
/// (tells arrive after the asker has moved on): read again after each write.
///
/// # Panics
/// When no such entry is written within a minute, or the journal does not verify.
pub async fn entries(agent: &impl Journaled, until: &str) -> Vec<JournalEntry> {
    let path = agent.journal_path();
    let mut writes = agent.journal_writes();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            writes.borrow_and_update();
            journal::verify(path, Some(agent.signer())).expect("journal verifies");
            let entries = journal::read_entries(path).expect("journal entries");
            if entries.iter().any(|e| e.kind == until) {
                return entries;
            }
            writes.changed().await.expect("the journal writer is alive");
        }
    });
    match found.await {
        Ok(entries) => entries,
        Err(_) => panic!("{} has no {until} entry", path.display()),
    }
}

/// The kinds of `entries`, in order.
pub fn kinds(entries: &[JournalEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.kind.as_str()).collect()
}

/// The body of the one entry of `kind`.
///
/// # Panics
/// Unless there is exactly one.
pub fn only<'a>(entries: &'a [JournalEntry], kind: &str) -> &'a Value {
    let found: Vec<_> = entries.iter().filter(|e| e.kind == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} entry in {:?}", kinds(entries));
    found.first().map(|e| &e.body).expect("checked above")
}

/// A chain, a buyer's host and a seller's host on loopback, and one seller of [`KIND`]
/// at a fixed price; the buyer is for the test to make (see [`Market::directory`]).
pub struct Market {
    /// The chain.
    pub chain: Chain,
    /// The buyer's host (`h1`) and the seller's (`h2`).
    pub hosts: (Host, Host),
    /// The seller, named `name`, with dev wallet `account`.
    pub seller: SellerAgent,
}

impl Market {
    /// Starts the chain in `dir` and the hosts, and a seller `name` with dev account
    /// `account` selling at `price`.
    pub async fn start(dir: &Path, name: &str, account: u32, price: Amount) -> Self {
        let chain = Chain::start(dir).await;
        let chain_id = chain.addresses.chain_id;
        let hosts = (host(dir, "h1", chain_id), host(dir, "h2", chain_id));
        let seller = seller(
            &hosts.1,
            dir,
            &chain,
            name,
            account,
            DefaultSellerStrategy::fixed(price),
        )
        .await;
        Self {
            chain,
            hosts,
            seller,
        }
    }

    /// A directory listing the seller at its WebSocket endpoint.
    pub fn directory(&self) -> StaticDirectory {
        StaticDirectory::default().with(KIND, peer(&self.seller, self.hosts.1.url(), None))
    }

    /// A buyer with a fresh wallet (no gas needed), a per-deal limit of `per_deal`, its
    /// own read access to the chain (for escrow and channel mode) and 10 USDC.
    pub async fn buyer(&self, dir: &Path, per_deal: Amount) -> BuyerAgent {
        self.buyer_holding(dir, per_deal, usdc("10")).await
    }

    /// As [`Market::buyer`], holding `funds` (none minted when zero).
    pub async fn buyer_holding(&self, dir: &Path, per_deal: Amount, funds: Amount) -> BuyerAgent {
        let wallet = Arc::new(Wallet::random());
        let mut buyer = buyer_with(
            &self.hosts.0,
            dir,
            &self.chain,
            per_deal,
            self.directory(),
            wallet.clone(),
        )
        .await;
        let settlement = self.chain.settlement(wallet).await;
        buyer.buyer = buyer.buyer.clone().with_settlement(settlement);
        if !funds.is_zero() {
            self.chain
                .minter
                .mint(buyer.handle.address(), funds)
                .await
                .expect("mint");
        }
        buyer
    }
}

/// One finished deal and everything it ran on; dropping it stops the agents, the
/// hosts and the chain.
pub struct SettledDeal {
    /// The deal, as the buyer has it.
    pub deal: Deal,
    /// The buyer.
    pub buyer: BuyerAgent,
    /// The seller.
    pub seller: SellerAgent,
    /// The buyer's and the seller's hosts (the deal crosses loopback WebSocket).
    pub hosts: (Host, Host),
    /// The chain.
    pub chain: Chain,
}

/// Runs one whole deal in `mode` on a fresh devnet in `dir`: a seller at a fixed
/// price of 1.5 USDC on one host, a buyer on another, both journals written through
/// the receipt (the function waits for the seller's). In `channel` mode the deal is the
/// channel's first order, and the seller then closes the channel (settling it).
pub async fn settled_deal(dir: &Path, mode: PaymentMode) -> SettledDeal {
    settled_deal_on(Chain::start(dir).await, dir, mode).await
}

/// [`settled_deal`] on `chain` (the devnet or anvil).
pub async fn settled_deal_on(chain: Chain, dir: &Path, mode: PaymentMode) -> SettledDeal {
    let chain_id = chain.addresses.chain_id;
    let hosts = (host(dir, "h1", chain_id), host(dir, "h2", chain_id));
    let seller = seller(
        &hosts.1,
        dir,
        &chain,
        "seller",
        2,
        DefaultSellerStrategy::fixed(usdc("1.5")),
    )
    .await;
    let directory = StaticDirectory::default().with(KIND, peer(&seller, hosts.1.url(), None));
    // In escrow mode the buyer sends transactions: a dev account with gas.
    let wallet = match mode {
        PaymentMode::Authorization | PaymentMode::Channel => Arc::new(Wallet::random()),
        PaymentMode::Escrow => Arc::new(dev_wallet(3)),
    };
    let mut buyer = buyer_with(&hosts.0, dir, &chain, usdc("10"), directory, wallet.clone()).await;
    if mode != PaymentMode::Authorization {
        let settlement =
            ChainSettlement::connect(&chain.node.http_url(), wallet, &chain.addresses, TOKEN)
                .await
                .expect("settlement");
        // A channel deposit of two orders (3 USDC): the buyer holds 10.
        buyer.buyer = buyer
            .buyer
            .clone()
            .with_settlement(settlement)
            .with_channel_orders(2);
    }
    let me = buyer.handle.address();
    chain.minter.mint(me, usdc("10")).await.expect("mint");
    let deal = buyer
        .buyer
        .hire(
            &buyer.handle.context(),
            "Forecast for Lisbon",
            KIND,
            usdc("5"),
            mode,
        )
        .await
        .expect("the deal");
    entries(&seller, "receipt").await;
    if mode == PaymentMode::Channel {
        seller
            .seller
            .settle_channels(&seller.handle.context(), true)
            .await
            .expect("channel settled");
    }
    SettledDeal {
        deal,
        buyer,
        seller,
        hosts,
        chain,
    }
}
