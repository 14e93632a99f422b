//! Deploy everything on the embedded devnet, register agents, and discover them.

use std::sync::Arc;
use std::time::Duration;

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address as EAddress, U256 as EU256};
use registry::chain::bindings::agent_registry::Service;
use registry::chain::{self, skill_tag, AgentRegistry, DeployConfig, Deployment};
use registry::devnet::dev_wallet;
use registry::discovery::Discovery;
use wallets::Amount;

use crate::support::{self, Node};

const FORECAST: &str = "weather.forecast";

async fn register(url: &str, registry: EAddress, i: u32, price: &str, model: u8) -> EAddress {
    let wallet = Arc::new(dev_wallet(i));
    let client = chain::connect(url, wallet.clone()).await.unwrap();
    chain::allow_contract(
        &client,
        registry,
        &chain::bindings::agent_registry::AGENTREGISTRY_ABI,
    );
    let reg = AgentRegistry::new(registry, client);
    let price: Amount = format!("{price} USDC").parse().unwrap();
    reg.register(
        format!("ws://127.0.0.1:{}", 7400 + i),
        format!("https://agents.example/{i}.json"),
        [model; 32],
        vec![Service {
            skill: skill_tag(FORECAST).unwrap(),
            price: EU256::from(price.base_units()),
            unit: "forecast".into(),
        }],
        EU256::zero(),
    )
    .send()
    .await
    .unwrap()
    .await
    .unwrap();
    EAddress::from(wallet.address().0)
}

async fn deploy(url: &str) -> (Deployment, chain::Addresses) {
    let client = chain::connect(url, Arc::new(dev_wallet(0))).await.unwrap();
    Deployment::deploy(client, &DeployConfig::dev())
        .await
        .unwrap()
}

fn sellers(offers: &[registry::discovery::Offer]) -> Vec<EAddress> {
    offers.iter().map(|o| o.agent.address).collect()
}

on_devnet_and_anvil!(
    register_lookup_suspend_and_kill_switch_on_the_embedded_devnet,
    register_lookup_suspend_and_kill_switch_on_anvil,
    register_lookup_suspend_and_kill_switch
);

async fn register_lookup_suspend_and_kill_switch(node: &Node, dir: &std::path::Path) {
    let url = node.url();
    let (contracts, addresses) = deploy(&url).await;

    let a = register(&url, addresses.registry, 3, "1.20", 1).await;
    let b = register(&url, addresses.registry, 4, "0.95", 1).await;
    let c = register(&url, addresses.registry, 5, "1.50", 2).await;

    let discovery = Discovery::open(dir.join("discovery"), &url, addresses)
        .await
        .unwrap();
    assert!(discovery.sync().await.unwrap() >= 6);
    let max: Amount = "1.30".parse().unwrap();
    // Same (prior) reputation, so the cheaper one ranks first; 1.50 is over budget.
    assert_eq!(sellers(&discovery.find(FORECAST, max).unwrap()), vec![b, a]);
    let offer = &discovery.find(FORECAST, max).unwrap()[0];
    assert_eq!(offer.service.price, "0.95".parse().unwrap());
    assert_eq!(offer.agent.endpoint, "ws://127.0.0.1:7404");
    assert!(discovery.find("weather.history", max).unwrap().is_empty());

    // The governor suspends `a`: gone from discovery and from the chain's own lookup.
    contracts
        .registry
        .suspend_agent(a, "serves stale data".into())
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    assert_eq!(sellers(&discovery.find(FORECAST, max).unwrap()), vec![b]);
    let (on_chain, _) = contracts
        .registry
        .agents_by_skill(skill_tag(FORECAST).unwrap(), EU256::zero(), EU256::from(10))
        .call()
        .await
        .unwrap();
    assert!(!on_chain.contains(&a) && on_chain.contains(&b) && on_chain.contains(&c));

    // The kill switch on model 1 removes `b` too; `c` runs another model.
    contracts
        .registry
        .suspend_model([1; 32], "prompt-injection bug".into())
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    assert!(discovery.find(FORECAST, max).unwrap().is_empty());
    assert_eq!(
        sellers(&discovery.find(FORECAST, "2 USDC".parse().unwrap()).unwrap()),
        vec![c]
    );

    // Reopening the cache keeps what was synced; nothing new to read.
    let synced = discovery.synced_to().unwrap();
    drop(discovery);
    let discovery = Arc::new(
        Discovery::open(dir.join("discovery"), &url, addresses)
            .await
            .unwrap(),
    );
    assert_eq!(discovery.synced_to().unwrap(), synced);
    assert_eq!(discovery.sync().await.unwrap(), 0);
    assert_eq!(discovery.agents().unwrap().len(), 3);

    // Following new blocks picks up a new agent by itself: once the follower has
    // synced the block that registered it, it is found.
    let follow = discovery.clone().follow(Duration::from_millis(20));
    let d = register(&url, addresses.registry, 6, "1.00", 3).await;
    let registered_in = Provider::<Http>::try_from(url.as_str())
        .unwrap()
        .get_block_number()
        .await
        .unwrap()
        .as_u64();
    let mut synced = follow.synced();
    tokio::time::timeout(
        Duration::from_secs(30),
        synced.wait_for(|s| s.is_some_and(|s| s >= registered_in)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{}: the follower did not sync block {registered_in} within 30 s",
            node.name()
        )
    })
    .unwrap();
    assert!(
        sellers(&discovery.find(FORECAST, max).unwrap()).contains(&d),
        "{}: the follower never saw the new agent",
        node.name()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_refuses_another_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let node = support::embedded(&dir.path().join("chain")).await;
    let (_, first) = deploy(&node.url()).await;
    let (_, second) = deploy(&node.url()).await;
    let path = dir.path().join("discovery");
    drop(Discovery::open(&path, &node.url(), first).await.unwrap());
    let err = Discovery::open(&path, &node.url(), second)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache is for registry"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn faucet_deployment_check_update_and_sync_progress_on_the_devnet() {
    use registry::devnet::{Devnet, DevnetConfig};

    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let url = node.http_url();

    // The faucet: a fresh key gets gas, durably.
    let wallet = Arc::new(wallets::Wallet::random());
    let ether = wallets::U256::exp10(18);
    assert!(node.balance(wallet.address()).await.is_zero());
    node.set_balance(wallet.address(), ether * 3).await.unwrap();
    assert_eq!(node.balance(wallet.address()).await, ether * 3);

    // A deployment has code; an addresses file of another chain's does not.
    let (contracts, addresses) = deploy(&url).await;
    assert!(contracts.is_deployed().await.unwrap());
    let mut elsewhere = addresses;
    elsewhere.registry = EAddress::repeat_byte(0x42);
    let client = chain::connect(&url, wallet.clone()).await.unwrap();
    assert!(!Deployment::at(client.clone(), &elsewhere)
        .is_deployed()
        .await
        .unwrap());

    // The funded key registers, then moves: discovery sees the new endpoint and price.
    let mine = Deployment::at(client, &addresses);
    let price: Amount = "1 USDC".parse().unwrap();
    mine.register_agent(
        "ws://127.0.0.1:1",
        "",
        wallets::B256::default(),
        vec![chain::service(FORECAST, price, "forecast").unwrap()],
    )
    .await
    .unwrap();
    let cheaper: Amount = "0.5".parse().unwrap();
    mine.update_agent(
        "ws://127.0.0.1:2",
        "card",
        wallets::B256::default(),
        vec![chain::service(FORECAST, cheaper, "forecast").unwrap()],
    )
    .await
    .unwrap();
    let d = Discovery::open(dir.path().join("discovery"), &url, addresses)
        .await
        .unwrap();
    let mut seen = Vec::new();
    d.sync_with_progress(|done, head| seen.push((done, head)))
        .await
        .unwrap();
    let head = node.block_number().await;
    assert_eq!(seen.last(), Some(&(head, head)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    let record = d.agent_at(wallet.address()).unwrap().unwrap();
    assert_eq!(record.endpoint, "ws://127.0.0.1:2");
    assert_eq!(record.services.len(), 1);
    assert_eq!(record.services[0].price, cheaper);

    // The faucet's balance survives a restart of the chain.
    node.shutdown().await;
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    assert!(node.balance(wallet.address()).await > ether);
    node.shutdown().await;
}

on_devnet_and_anvil!(
    feedback_on_settled_escrows_ranks_sellers_on_the_embedded_devnet,
    feedback_on_settled_escrows_ranks_sellers_on_anvil,
    feedback_on_settled_escrows_ranks_sellers
);

/// A buyer that pays sellers through escrow and rates them afterwards.
struct Buyer {
    wallet: Arc<wallets::Wallet>,
    contracts: Deployment,
    policy: wallets::SpendingPolicy,
    domain: wallets::Eip712Domain,
    url: String,
    addresses: chain::Addresses,
}

impl Buyer {
    /// Locks `price` for the seller (dev wallet `seller`) under `job` and returns the
    /// escrow id; the seller has until ten minutes from now to deliver.
    async fn lock(&self, seller: u32, job: u8, price: &str) -> wallets::B256 {
        use ethers::providers::Middleware as _;

        let now = self
            .contracts
            .escrow
            .client()
            .get_block(ethers::types::BlockNumber::Latest)
            .await
            .unwrap()
            .unwrap()
            .timestamp
            .as_u64();
        let job = wallets::B256([job; 32]);
        let owner = self.wallet.address();
        let signed = self
            .policy
            .authorize(&wallets::Payment::EscrowDeposit {
                domain: self.domain.clone(),
                permit: wallets::Permit {
                    owner,
                    spender: wallets::Address(self.addresses.escrow.0),
                    value: price.parse().unwrap(),
                    nonce: self.contracts.permit_nonce(owner).await.unwrap(),
                    deadline: now + 3_600,
                },
                seller: dev_wallet(seller).address(),
                job_id: job,
            })
            .unwrap();
        self.contracts
            .lock_with_permit(&signed, now + 600, 300)
            .await
            .unwrap();
        chain::escrow_id_of(owner, job)
    }

    /// Locks `price` for `seller` (a dev wallet index), has the seller deliver, accepts,
    /// and gives `score`: one settled job with feedback.
    async fn hire_and_rate(&self, seller: u32, job: u8, price: &str, score: u8) {
        let id = self.hire(seller, job, price).await;
        self.rate(id, score).await.unwrap();
    }

    /// Locks `price` for `seller` (a dev wallet index), has the seller deliver and
    /// accepts: one settled job; returns its escrow id.
    async fn hire(&self, seller: u32, job: u8, price: &str) -> wallets::B256 {
        let id = self.lock(seller, job, price).await;
        let as_seller = Deployment::at(
            chain::connect(&self.url, Arc::new(dev_wallet(seller)))
                .await
                .unwrap(),
            &self.addresses,
        );
        as_seller
            .deliver_escrow(id, wallets::B256([0xaa; 32]))
            .await
            .unwrap();
        self.contracts.accept_escrow(id).await.unwrap();
        assert_eq!(
            self.contracts.escrow_job(id).await.unwrap().state,
            chain::EscrowState::Released
        );
        id
    }

    /// `Reputation.giveFeedback` for escrow `id`, mined.
    async fn rate(&self, id: wallets::B256, score: u8) -> Result<(), String> {
        let call = self.contracts.reputation.give_feedback(
            id.0,
            score,
            format!("ipfs://feedback/{id}"),
            [7; 32],
        );
        let pending = call
            .send()
            .await
            .map_err(|e| chain::contract_error("Reputation.giveFeedback", e).to_string())?;
        let receipt = pending.await.unwrap().unwrap();
        assert_eq!(receipt.status, Some(1.into()));
        Ok(())
    }
}

/// dev wallet 1 as a buyer with 100 USDC.
async fn buyer(
    url: &str,
    contracts: &Deployment,
    addresses: chain::Addresses,
    dir: &std::path::Path,
) -> Buyer {
    let wallet = Arc::new(dev_wallet(1));
    contracts
        .mint(wallet.address(), "100 USDC".parse().unwrap())
        .await
        .unwrap();
    Buyer {
        contracts: Deployment::at(
            chain::connect(url, wallet.clone()).await.unwrap(),
            &addresses,
        ),
        policy: wallets::SpendingPolicy::open(
            dir.join("policy"),
            wallet.clone(),
            wallets::Limits::default(),
        )
        .map(|p| addresses.pin(p, "USD Coin"))
        .unwrap(),
        domain: wallets::Eip712Domain::new(
            "USD Coin",
            "2",
            addresses.chain_id,
            wallets::Address(addresses.stablecoin.0),
        ),
        wallet,
        url: url.to_owned(),
        addresses,
    }
}

/// Four sellers of one skill: three are hired through escrow and rated 90, 20 and 60,
/// the fourth never; discovery ranks them by reputation, not price, and drops the
/// best one once the governor suspends it.
async fn feedback_on_settled_escrows_ranks_sellers(node: &Node, dir: &std::path::Path) {
    let url = node.url();
    let (contracts, addresses) = deploy(&url).await;
    let good = register(&url, addresses.registry, 3, "1.20", 1).await;
    let bad = register(&url, addresses.registry, 4, "0.95", 1).await;
    let fair = register(&url, addresses.registry, 5, "1.10", 1).await;
    let new = register(&url, addresses.registry, 6, "0.90", 1).await;

    let buyer = buyer(&url, &contracts, addresses, dir).await;
    buyer.hire_and_rate(3, 1, "1.20", 90).await;
    buyer.hire_and_rate(4, 2, "0.95", 20).await;
    buyer.hire_and_rate(5, 3, "1.10", 60).await;

    // Feedback the contract refuses counts nowhere: a second entry for a settled job,
    // and an entry for a job that is locked but not delivered.
    let settled = chain::escrow_id_of(buyer.wallet.address(), wallets::B256([1; 32]));
    let err = buyer.rate(settled, 100).await.unwrap_err();
    assert!(
        err.contains("FeedbackAlreadyGiven"),
        "{}: {err}",
        node.name()
    );
    let unsettled = buyer.lock(6, 4, "0.90").await;
    let err = buyer.rate(unsettled, 100).await.unwrap_err();
    assert!(err.contains("JobNotSettled"), "{}: {err}", node.name());

    let (count, total, average) = contracts.reputation.summary_of(good).call().await.unwrap();
    assert_eq!((count, total, average), (1.into(), 90.into(), 90.into()));

    let discovery = Discovery::open(dir.join("discovery"), &url, addresses)
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    let max: Amount = "2 USDC".parse().unwrap();
    let offers = discovery.find(FORECAST, max).unwrap();
    // (90+100)/3, (60+100)/3, the prior 50, (20+100)/3: the two cheapest rank last.
    assert_eq!(
        sellers(&offers),
        vec![good, fair, new, bad],
        "{}: {offers:#?}",
        node.name()
    );
    let scores: Vec<f64> = offers.iter().map(|o| o.score).collect();
    let expected = [190.0 / 3.0, 160.0 / 3.0, 50.0, 120.0 / 3.0];
    assert!(
        scores
            .iter()
            .zip(expected)
            .all(|(s, e)| (s - e).abs() < 1e-9),
        "{}: {scores:?}",
        node.name()
    );
    let counts: Vec<(u64, u64)> = offers
        .iter()
        .map(|o| (o.agent.feedback_count, o.agent.feedback_total))
        .collect();
    assert_eq!(counts, vec![(1, 90), (1, 60), (0, 0), (1, 20)]);

    // The governor suspends the best-rated seller: it disappears, the rest keep their order.
    contracts
        .registry
        .suspend_agent(good, "fake reviews".into())
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    assert_eq!(
        sellers(&discovery.find(FORECAST, max).unwrap()),
        vec![fair, new, bad],
        "{}",
        node.name()
    );
}

on_devnet_and_anvil!(
    settled_erc8004_feedback_ranks_sellers_on_the_embedded_devnet,
    settled_erc8004_feedback_ranks_sellers_on_anvil,
    settled_erc8004_feedback_ranks_sellers
);

/// Three sellers with ERC-8004 identities. Discovery counts the "starred" ratings
/// `SettledFeedback` writes for settled deals, once per deal, until revoked; it skips
/// other tags, other clients of the ERC-8004 registry, and a second rating of the same
/// escrow through `Reputation`.
async fn settled_erc8004_feedback_ranks_sellers(node: &Node, dir: &std::path::Path) {
    let url = node.url();
    let (contracts, addresses) = deploy(&url).await;
    let good = register(&url, addresses.registry, 3, "1.20", 1).await;
    let bad = register(&url, addresses.registry, 4, "0.95", 1).await;
    let other = register(&url, addresses.registry, 5, "1.10", 1).await;
    let mut ids = Vec::new();
    for i in [3, 4, 5] {
        let seller = Deployment::at(
            chain::connect(&url, Arc::new(dev_wallet(i))).await.unwrap(),
            &addresses,
        );
        let (identity, _) = seller
            .ensure_identity(addresses.deployed_at, |_| format!("ipfs://agent-{i}"))
            .await
            .unwrap();
        ids.push(identity.id);
    }
    let buyer = buyer(&url, &contracts, addresses, dir).await;
    let stars = |score| chain::FeedbackInput::stars(score, FORECAST);

    // good: 100 through SettledFeedback; the same escrow rated 0 through Reputation too.
    let deal = buyer.hire(3, 1, "1.20").await;
    buyer
        .contracts
        .give_escrow_feedback(deal, ids[0], &stars(100))
        .await
        .unwrap();
    buyer.rate(deal, 0).await.unwrap();
    // bad: 10, and a 0 that is revoked below.
    let deal = buyer.hire(4, 2, "0.95").await;
    buyer
        .contracts
        .give_escrow_feedback(deal, ids[1], &stars(10))
        .await
        .unwrap();
    let revoked = buyer.hire(4, 3, "0.95").await;
    buyer
        .contracts
        .give_escrow_feedback(revoked, ids[1], &stars(0))
        .await
        .unwrap();
    // other: an uptime figure, not a rating; and 100 stars from a client that paid
    // nothing, straight into the ERC-8004 registry.
    let deal = buyer.hire(5, 4, "1.10").await;
    let uptime = chain::FeedbackInput {
        value: 9977,
        value_decimals: 2,
        tag1: "uptime".into(),
        ..stars(0)
    };
    buyer
        .contracts
        .give_escrow_feedback(deal, ids[2], &uptime)
        .await
        .unwrap();
    let sybil = Deployment::at(
        chain::connect(&url, Arc::new(dev_wallet(7))).await.unwrap(),
        &addresses,
    );
    sybil
        .reputation_registry
        .give_feedback(
            EU256::from(ids[2].0),
            100,
            0,
            "starred".into(),
            FORECAST.into(),
            String::new(),
            String::new(),
            [0; 32],
        )
        .send()
        .await
        .unwrap()
        .await
        .unwrap();

    let discovery = Discovery::open(dir.join("discovery"), &url, addresses)
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    let counts = |d: &Discovery| -> Vec<(u64, u64)> {
        [good, bad, other]
            .iter()
            .map(|a| {
                let r = d.agent(*a).unwrap().unwrap();
                (r.feedback_count, r.feedback_total)
            })
            .collect()
    };
    assert_eq!(
        counts(&discovery),
        vec![(1, 100), (2, 10), (0, 0)],
        "{}",
        node.name()
    );

    buyer
        .contracts
        .settled_feedback
        .revoke_feedback(0, revoked.0)
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    assert_eq!(
        counts(&discovery),
        vec![(1, 100), (1, 10), (0, 0)],
        "{}",
        node.name()
    );
    let offers = discovery.find(FORECAST, "2 USDC".parse().unwrap()).unwrap();
    // (100+100)/3, the prior 50, (10+100)/3.
    assert_eq!(
        sellers(&offers),
        vec![good, other, bad],
        "{}: {offers:#?}",
        node.name()
    );
}

/// Behind a node that refuses `eth_getLogs` over more than 2 blocks (as hosted nodes
/// cap a query's range or size), the sync narrows its ranges until the node answers,
/// and finds every agent, as a sync straight from the node does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_narrows_its_log_ranges_for_a_node_that_caps_them() {
    use registry::devnet::{Devnet, DevnetConfig};

    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let url = node.http_url();
    let (_, addresses) = deploy(&url).await;
    let mut agents = Vec::new();
    for i in 3..8 {
        agents.push(register(&url, addresses.registry, i, "1.00", 1).await);
    }
    let proxy = crate::proxy::RangeCappedProxy::spawn(node.addr(), 2).await;
    let capped = Discovery::open(dir.path().join("capped"), &proxy.url(), addresses)
        .await
        .unwrap();
    let direct = Discovery::open(dir.path().join("direct"), &url, addresses)
        .await
        .unwrap();
    let logs = capped.sync().await.unwrap();
    assert_eq!(logs, direct.sync().await.unwrap());
    assert!(!proxy.refused().is_empty(), "the cap was never hit");
    let relayed = proxy.relayed();
    assert!(
        relayed.iter().all(|(from, to)| to - from < 2),
        "{relayed:?}"
    );
    let offers = |d: &Discovery| {
        let mut found = sellers(&d.find(FORECAST, "2 USDC".parse().unwrap()).unwrap());
        found.sort();
        found
    };
    agents.sort();
    assert_eq!(offers(&capped), agents);
    assert_eq!(offers(&direct), agents);
    assert_eq!(capped.synced_to().unwrap(), direct.synced_to().unwrap());
    node.shutdown().await;
}
