//! A deployed agent registers its ERC-8004 identity at start, linked to its
//! `AgentRegistry` entry, with its registration file as the identity's `agentURI`,
//! serves the same file at `/.well-known/agent-registration.json`, and keeps the one
//! identity across a restart, its file following the agent's new port.

use std::sync::Arc;

use deploy::{RunningAgent, REGISTRATION_PATH};
use registry::chain::{self, Deployment};
use registry::devnet::dev_wallet;
use registry::erc8004::{agent_registry_id, RegistrationFile, REGISTRATION_V1};

const PASSWORD_ENV: &str = "AGORA_ERC8004_DEPLOY_TEST_PASSWORD";

async fn served_file(base: &str) -> RegistrationFile {
    let r = reqwest::get(format!("{base}{REGISTRATION_PATH}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_agent_registers_and_serves_its_erc8004_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (site, chain, address) = crate::weather_site(dir.path(), PASSWORD_ENV).await;
    let reader = Deployment::at(
        chain::connect(&chain.url, Arc::new(dev_wallet(0)))
            .await
            .unwrap(),
        &chain.addresses,
    );
    assert_eq!(
        reader
            .find_identity(address, chain.addresses.deployed_at)
            .await
            .unwrap(),
        None,
        "no identity before the agent starts"
    );

    let agent = RunningAgent::start(&site, "weather").await.unwrap();
    let base = agent.url().replacen("ws://", "http://", 1);
    let file = served_file(&base).await;

    // On chain: one identity, owned by the agent, its wallet the agent's, linked to
    // its AgentRegistry entry, its agentURI the file served.
    let identity = reader
        .find_identity(address, chain.addresses.deployed_at)
        .await
        .unwrap()
        .expect("the agent registered an identity");
    assert_eq!(identity.owner, address);
    assert_eq!(identity.wallet, Some(address));
    assert!(identity.is_linked_to(wallets::Address(chain.addresses.registry.0), address));
    assert_eq!(
        RegistrationFile::from_data_uri(&identity.agent_uri).unwrap(),
        file
    );

    // The file: registration-v1, the A2A card, the wallet and the x402 resource that
    // this host serves, and the identity it has.
    let chain_id = chain.addresses.chain_id;
    assert_eq!(file.kind, REGISTRATION_V1);
    assert_eq!(file.name, "weather");
    assert!(
        file.description
            .contains("weather.forecast at 0.95 USDC per forecast"),
        "{file:?}"
    );
    assert!(file.x402_support && file.active);
    let services: Vec<(&str, &str)> = file
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.endpoint.as_str()))
        .collect();
    let card = format!("{base}/.well-known/agent-card.json");
    let wallet = agent_registry_id(chain_id, address);
    let x402 = format!("{base}/x402/weather.forecast");
    assert_eq!(
        services,
        [
            ("A2A", card.as_str()),
            ("agentWallet", wallet.as_str()),
            ("x402", x402.as_str())
        ]
    );
    assert_eq!(file.registrations.len(), 1);
    assert_eq!(file.registrations[0].agent_id, identity.id.0);
    assert_eq!(
        file.registrations[0].agent_registry,
        agent_registry_id(
            chain_id,
            wallets::Address(chain.addresses.identity_registry.0)
        )
    );
    // The services it names answer: the A2A card is the agent's.
    let served_card: serde_json::Value = reqwest::get(&card).await.unwrap().json().await.unwrap();
    assert_eq!(served_card["name"], "weather", "{served_card}");

    // A restart (on another port) keeps the one identity, and its file follows.
    agent.shutdown().await;
    let agent = RunningAgent::start(&site, "weather").await.unwrap();
    let moved = agent.url().replacen("ws://", "http://", 1);
    let again = reader
        .find_identity(address, chain.addresses.deployed_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, identity.id);
    let file = served_file(&moved).await;
    assert_eq!(
        RegistrationFile::from_data_uri(&again.agent_uri).unwrap(),
        file
    );
    assert_eq!(file.registrations[0].agent_id, identity.id.0);
    assert_eq!(
        file.services[0].endpoint,
        format!("{moved}/.well-known/agent-card.json")
    );

    agent.shutdown().await;
    chain.shutdown().await;
}
