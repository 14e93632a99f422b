//! A2A agents listed in the directory are sellers beside the negotiation's:
//! `market::Market::hire` quotes them, negotiates with the Agora sellers for less,
//! and pays the cheapest, through one spending policy; the money moves on chain to
//! the base unit, and the losing quotes are canceled.

use std::sync::Arc;

use a2a::client::A2aClient;
use a2a::market::{Deal, Market, MarketError, Order};
use a2a::wire::TaskState;
use a2a::{A2aAgent, A2aGateway, GatewayConfig};
use agent_sdk::{AgentBuilder, Peer, StaticDirectory};
use negotiation::test_utils::Market as Chain;
use negotiation::test_utils::{buyer_with, peer, usdc, KIND, TOKEN};
use negotiation::{service_fn, PaymentMode, ServiceOutput, SharedJournal};
use registry::chain;
use registry::devnet::dev_wallet;
use serde_json::json;
use wallets::{Address, Amount, Journal, Wallet};
use x402::{BuyerConfig, PricedService, SellerConfig, X402Buyer, X402Seller};

/// An A2A agent with dev wallet `account`, selling [`KIND`] at `price` over x402 on
/// the seller's host; its A2A base URL.
async fn a2a_seller(
    m: &Chain,
    gateway: &A2aGateway,
    dir: &std::path::Path,
    account: u32,
    price: Amount,
) -> (agent_sdk::AgentHandle, String) {
    let wallet = Arc::new(dev_wallet(account));
    let name = format!("a2a-{account}");
    let agent = AgentBuilder::new(name.clone())
        .wallet(wallet.clone())
        .spawn(&m.hosts.1)
        .unwrap();
    let client = chain::connect(&m.chain.node.http_url(), wallet.clone())
        .await
        .unwrap();
    let journal = SharedJournal::new(
        Journal::open(dir.join(format!("{name}.journal")), wallet.clone()).unwrap(),
    );
    let forecast = service_fn(move |task: String| async move {
        Ok(ServiceOutput::new(
            json!({"task": task, "by": "a2a", "forecast": "rain"}),
        ))
    });
    let schema = json!({"type": "object"});
    let seller = X402Seller::new(
        agent.context(),
        client,
        wallets::Address(m.chain.addresses.stablecoin.0),
        journal,
        SellerConfig::new(dir.join(format!("{name}.sales")), TOKEN),
    )
    .unwrap()
    .sell(PricedService::new(
        KIND,
        price,
        forecast,
        schema.clone(),
        schema,
    ))
    .unwrap();
    gateway
        .add(A2aAgent::new(agent.address(), name).sell(Arc::new(seller)))
        .unwrap();
    let url = gateway.agent_url(agent.address());
    (agent, url)
}

/// The states of the tasks an A2A agent holds, through `ListTasks`.
async fn task_states(url: &str) -> Vec<String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}});
    let answer: serde_json::Value = reqwest::Client::new()
        .post(url)
        .header("A2A-Version", "1.0")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["status"]["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn plus(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).unwrap()
}

/// A buyer on the buyer's host with `directory`, a per-deal limit of 5 USDC, 10 USDC,
/// and an A2A client paying through the same spending policy.
async fn hirer(
    m: &Chain,
    dir: &std::path::Path,
    directory: StaticDirectory,
) -> (negotiation::test_utils::BuyerAgent, Market) {
    std::fs::create_dir_all(dir).unwrap();
    let wallet = Arc::new(Wallet::random());
    let mut b = buyer_with(
        &m.hosts.0,
        dir,
        &m.chain,
        usdc("5"),
        directory,
        wallet.clone(),
    )
    .await;
    b.buyer = b
        .buyer
        .clone()
        .with_settlement(m.chain.settlement(wallet.clone()).await);
    m.chain
        .minter
        .mint(b.handle.address(), usdc("10"))
        .await
        .unwrap();
    let journal = SharedJournal::new(Journal::open(dir.join("x402.journal"), wallet).unwrap());
    let x402 = X402Buyer::open(
        b.policy.clone(),
        journal,
        BuyerConfig::new(dir.join("x402")),
    )
    .unwrap();
    let market = Market::new(b.buyer.clone(), A2aClient::new().with_buyer(Arc::new(x402)));
    (b, market)
}

/// Hires a forecast of Lisbon for at most `max`, in authorization mode.
async fn hire(
    b: &negotiation::test_utils::BuyerAgent,
    market: &Market,
    id: &str,
    max: Amount,
) -> Result<Deal, MarketError> {
    let order = Order {
        id: id.into(),
        kind: KIND.into(),
        request: json!({"city": "Lisbon", "days": 3}),
        max_price: max,
        mode: PaymentMode::Authorization,
    };
    market.hire(&b.handle.context(), &order).await
}

fn a2a_peer(address: Address, url: &str) -> Peer {
    Peer {
        address,
        endpoint: Some(url.to_owned()),
        price: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cheapest_seller_is_hired_whether_agora_or_a2a() {
    let dir = tempfile::tempdir().unwrap();
    // The Agora seller asks 1.00 USDC.
    let m = Chain::start(dir.path(), "agora", 2, usdc("1")).await;
    let base = format!("http://{}", m.hosts.1.local_addr().unwrap());
    let gateway =
        Arc::new(A2aGateway::open(GatewayConfig::new(dir.path().join("a2a"), base)).unwrap());
    m.hosts
        .1
        .mount_http("/agents", a2a::http::router(gateway.clone()))
        .unwrap();
    // Two A2A agents: one at 0.80, one at 1.50.
    let (cheap_agent, cheap_url) = a2a_seller(&m, &gateway, dir.path(), 3, usdc("0.8")).await;
    let (dear_agent, dear_url) = a2a_seller(&m, &gateway, dir.path(), 4, usdc("1.5")).await;
    let (cheap, dear) = (cheap_agent.address(), dear_agent.address());
    let agora_peer = peer(&m.seller, m.hosts.1.url(), None);
    let balance = |who: Address| {
        let chain = &m.chain;
        async move { chain.balance(who).await }
    };
    let agora = m.seller.handle.address();
    let (agora_before, cheap_before, dear_before) = (
        balance(agora).await,
        balance(cheap).await,
        balance(dear).await,
    );

    // All three listed: the A2A agent at 0.80 is hired and paid on chain.
    let directory = StaticDirectory::default()
        .with(KIND, agora_peer.clone())
        .with(KIND, a2a_peer(cheap, &cheap_url))
        .with(KIND, a2a_peer(dear, &dear_url));
    let (b, market) = hirer(&m, &dir.path().join("b1"), directory).await;
    let deal = hire(&b, &market, "trip-1-forecast-lisbon", usdc("2"))
        .await
        .unwrap();
    let Deal::A2a(a2a) = &deal else {
        panic!("expected the A2A agent at 0.80, got {deal:?}")
    };
    assert_eq!((a2a.seller, a2a.price), (cheap, usdc("0.8")));
    assert_eq!(deal.result()["forecast"], "rain");
    assert_eq!(a2a.hired.task.status.state, TaskState::Completed);
    assert_eq!(balance(cheap).await, plus(cheap_before, usdc("0.8")));
    assert_eq!(balance(b.handle.address()).await, usdc("9.2"));
    assert_eq!(balance(agora).await, agora_before);
    assert_eq!(balance(dear).await, dear_before);
    // The dearer agent's quote was canceled; it was never paid.
    assert_eq!(task_states(&dear_url).await, ["TASK_STATE_CANCELED"]);

    // Only the dearer A2A agent beside the Agora seller: the Agora seller wins.
    let directory = StaticDirectory::default()
        .with(KIND, agora_peer.clone())
        .with(KIND, a2a_peer(dear, &dear_url));
    let (b, market) = hirer(&m, &dir.path().join("b2"), directory).await;
    let deal = hire(&b, &market, "trip-2-forecast-lisbon", usdc("2"))
        .await
        .unwrap();
    assert!(matches!(deal, Deal::Negotiated(_)), "{deal:?}");
    assert_eq!(deal.seller(), agora);
    assert_eq!(deal.price(), usdc("1"));
    assert_eq!(balance(b.handle.address()).await, usdc("9"));
    assert_eq!(balance(dear).await, dear_before);

    // An A2A listing whose quote pays another address than the one listed is passed
    // over, and a most-price under every offer hires no one and pays nothing.
    let stranger = Wallet::random().address();
    let directory = StaticDirectory::default().with(KIND, a2a_peer(stranger, &cheap_url));
    let (b, market) = hirer(&m, &dir.path().join("b3"), directory).await;
    let err = hire(&b, &market, "trip-3-forecast-lisbon", usdc("2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no seller"), "{err}");
    let directory = StaticDirectory::default()
        .with(KIND, agora_peer)
        .with(KIND, a2a_peer(cheap, &cheap_url));
    let (b, market) = hirer(&m, &dir.path().join("b4"), directory).await;
    let err = hire(&b, &market, "trip-4-forecast-lisbon", usdc("0.5"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0.5"), "{err}");
    assert_eq!(balance(b.handle.address()).await, usdc("10"));
    assert_eq!(balance(cheap).await, plus(cheap_before, usdc("0.8")));
    drop((cheap_agent, dear_agent));
}
