//! Peers found in the on-chain registry (embedded devnet), then asked over
//! WebSocket at the endpoint they registered.

use std::sync::Arc;

use agent_sdk::prelude::*;
use agent_sdk::registry::{Discovery, RegistryDirectory};
use agent_sdk::testing::{Echo, Echoer};
use registry::chain::{self, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};

use crate::support::host;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_finds_a_registered_peer_and_asks_it_at_its_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let url = chain.http_url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (_, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
        .await
        .unwrap();

    // Two hosts: the seller's listens, the buyer's only dials.
    let (sd, bd) = (dir.path().join("seller"), dir.path().join("buyer"));
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::create_dir_all(&bd).unwrap();
    let (seller_host, buyer_host) = (host(&sd), host(&bd));
    let seller_wallet = Arc::new(dev_wallet(3));
    let seller = AgentBuilder::new("echo-seller")
        .wallet(seller_wallet.clone())
        .skill(Echoer)
        .spawn(&seller_host)
        .unwrap();
    let client = chain::connect(&url, seller_wallet).await.unwrap();
    let price: Amount = "0.25".parse().unwrap();
    Deployment::at(client, &addresses)
        .register_agent(
            &seller_host.url().unwrap(),
            "https://agents.invalid/echo.json",
            wallets::B256([0; 32]),
            vec![chain::service(Echo::KIND, price, "call").unwrap()],
        )
        .await
        .unwrap();

    let discovery = Arc::new(
        Discovery::open(dir.path().join("discovery"), &url, addresses)
            .await
            .unwrap(),
    );
    let buyer = AgentBuilder::new("buyer")
        .directory(RegistryDirectory::new(discovery))
        .spawn(&buyer_host)
        .unwrap();
    let ctx = buyer.context();
    let cheap: Amount = "0.10".parse().unwrap();
    assert!(ctx
        .find_peers(Echo::KIND, Some(cheap))
        .await
        .unwrap()
        .is_empty());
    let peers = ctx.find_peers(Echo::KIND, Some(price)).await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].address, seller.address());
    assert_eq!(peers[0].price, Some(price));
    assert_eq!(peers[0].endpoint, seller_host.url());
    let answer = ctx
        .ask(
            seller.address(),
            Echo {
                text: "found you".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(answer.text, "found you");
    chain.shutdown().await;
}
