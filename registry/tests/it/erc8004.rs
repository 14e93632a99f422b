//! ERC-8004 on both nodes: an agent's identity registered with a `data:` registration
//! file and linked to its `AgentRegistry` entry, read back by us and by foundry's
//! `cast`; re-running the registration changes nothing; feedback only for a settled
//! escrow that paid the agent's wallet, through `SettledFeedback`.

use std::sync::Arc;

use registry::chain::{
    self, escrow_id_of, DeployConfig, Deployment, FeedbackInput, IdentityChange, IdentityId,
};
use registry::devnet::dev_wallet;
use registry::erc8004::{registration_file, AgentRegistration, RegistrationFile};
use wallets::{Amount, Limits, Payment, Permit, SpendingPolicy, B256};

use crate::support::Node;

fn cast(args: &[&str]) -> String {
    registry::anvil::run_foundry("cast", args).unwrap_or_else(|e| panic!("{e}"))
}

/// `cast call` prints strings quoted.
fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

async fn identity_and_feedback(node: &Node, dir: &std::path::Path) {
    let url = node.url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (admin, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
        .await
        .unwrap();
    assert!(admin.is_deployed().await.unwrap());

    // The seller: an AgentRegistry entry, then its ERC-8004 identity.
    let seller = Arc::new(dev_wallet(2));
    let seller_client = chain::connect(&url, seller.clone()).await.unwrap();
    let as_seller = Deployment::at(seller_client.clone(), &addresses);
    as_seller
        .register_agent(
            "ws://127.0.0.1:7411",
            "",
            B256::default(),
            vec![
                chain::service("weather.forecast", "1.2 USDC".parse().unwrap(), "forecast")
                    .unwrap(),
            ],
        )
        .await
        .unwrap();
    let agent = |description: &str, id: IdentityId| AgentRegistration {
        name: "weather-1".into(),
        description: description.into(),
        base_url: "http://127.0.0.1:7411".into(),
        x402_skills: vec!["weather.forecast".into()],
        chain_id: addresses.chain_id,
        wallet: seller.address(),
        identity_registry: wallets::Address(addresses.identity_registry.0),
        agent_id: Some(id.0),
        ..AgentRegistration::default()
    };
    let uri_of = |description: &'static str| {
        move |id: IdentityId| {
            registration_file(&agent(description, id))
                .to_data_uri()
                .unwrap()
        }
    };

    let (identity, change) = as_seller
        .ensure_identity(addresses.deployed_at, uri_of("Forecasts"))
        .await
        .unwrap();
    assert!(
        matches!(change, IdentityChange::Registered(_)),
        "{change:?}"
    );
    assert_eq!(identity.id, IdentityId(0), "the first identity");
    assert_eq!(identity.owner, seller.address());
    assert_eq!(identity.wallet, Some(seller.address()), "wallet = owner");
    assert_eq!(
        identity.link,
        Some((wallets::Address(addresses.registry.0), seller.address())),
        "linked to the AgentRegistry entry"
    );
    let file = RegistrationFile::from_data_uri(&identity.agent_uri).unwrap();
    assert_eq!(
        file.registrations[0].agent_id, 0,
        "the file names its own id"
    );
    assert_eq!(
        file.registrations[0].agent_registry,
        format!(
            "eip155:{}:{}",
            addresses.chain_id,
            wallets::Address(addresses.identity_registry.0)
        )
    );
    assert_eq!(
        as_seller
            .find_identity(seller.address(), addresses.deployed_at)
            .await
            .unwrap()
            .as_ref(),
        Some(&identity)
    );

    // Idempotent: the same registration again sends nothing; a new file replaces the URI.
    let (again, change) = as_seller
        .ensure_identity(addresses.deployed_at, uri_of("Forecasts"))
        .await
        .unwrap();
    assert_eq!(change, IdentityChange::Unchanged);
    assert_eq!(again, identity);
    let (updated, change) = as_seller
        .ensure_identity(addresses.deployed_at, uri_of("Forecasts, now hourly"))
        .await
        .unwrap();
    assert!(
        matches!(change, IdentityChange::UriUpdated(_)),
        "{change:?}"
    );
    assert_eq!(updated.id, identity.id);
    let identity = as_seller.identity(identity.id).await.unwrap();
    assert_eq!(identity, updated);

    // cast reads the identity like any ERC-721.
    let rpc = ["--rpc-url", url.as_str()];
    let registry_addr = format!("{:?}", addresses.identity_registry);
    let call = |sig: &str, arg: &str| {
        cast(&[&["call", registry_addr.as_str(), sig, arg][..], &rpc].concat())
    };
    assert_eq!(
        unquote(&call("tokenURI(uint256)(string)", "0")),
        identity.agent_uri,
        "{}",
        node.name()
    );
    assert_eq!(
        call("ownerOf(uint256)(address)", "0"),
        seller.address().to_string()
    );
    assert_eq!(
        call("getAgentWallet(uint256)(address)", "0"),
        seller.address().to_string()
    );
    let link = cast(
        &[
            &[
                "call",
                registry_addr.as_str(),
                "getMetadata(uint256,string)(bytes)",
                "0",
                "agoraRegistry",
            ][..],
            &rpc,
        ]
        .concat(),
    );
    assert_eq!(
        link.to_lowercase(),
        format!(
            "0x{:0>64}{:0>64}",
            hex::encode(addresses.registry.0),
            hex::encode(seller.address().0)
        )
    );

    // The buyer pays the seller through the escrow; feedback only once it is settled.
    let buyer = Arc::new(dev_wallet(1));
    let buyer_client = chain::connect(&url, buyer.clone()).await.unwrap();
    let as_buyer = Deployment::at(buyer_client.clone(), &addresses);
    admin
        .mint(buyer.address(), "10 USDC".parse().unwrap())
        .await
        .unwrap();
    let policy = SpendingPolicy::open(dir.join("policy"), buyer.clone(), Limits::default())
        .map(|p| addresses.pin(p, "USD Coin"))
        .unwrap();
    let now = chain::chain_time(&buyer_client).await.unwrap();
    let price: Amount = "1.2 USDC".parse().unwrap();
    let job = B256([7; 32]);
    let signed = policy
        .authorize(&Payment::EscrowDeposit {
            domain: addresses.token_domain("USD Coin"),
            permit: Permit {
                owner: buyer.address(),
                spender: wallets::Address(addresses.escrow.0),
                value: price,
                nonce: as_buyer.permit_nonce(buyer.address()).await.unwrap(),
                deadline: now + 3_600,
            },
            seller: seller.address(),
            job_id: job,
        })
        .unwrap();
    as_buyer
        .lock_with_permit(&signed, now + 600, 300)
        .await
        .unwrap();
    let escrow_id = escrow_id_of(buyer.address(), job);
    let stars = FeedbackInput::stars(90, "weather.forecast")
        .with_endpoint("http://127.0.0.1:7411/x402/weather.forecast");

    let refused = as_buyer
        .give_escrow_feedback(escrow_id, identity.id, &stars)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("EscrowNotSettled"), "{refused}");
    as_seller
        .deliver_escrow(escrow_id, B256([0xaa; 32]))
        .await
        .unwrap();
    as_buyer.accept_escrow(escrow_id).await.unwrap();

    // Someone who did not pay is refused; the buyer is heard, once.
    let mallory = chain::connect(&url, Arc::new(dev_wallet(3))).await.unwrap();
    let refused = Deployment::at(mallory, &addresses)
        .give_escrow_feedback(escrow_id, identity.id, &stars)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("NotPayer"), "{refused}");
    as_buyer
        .give_escrow_feedback(escrow_id, identity.id, &stars)
        .await
        .unwrap();
    let refused = as_buyer
        .give_escrow_feedback(escrow_id, identity.id, &stars)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("AlreadyReviewed"), "{refused}");

    let summary = as_buyer
        .payment_backed_summary(identity.id, "starred")
        .await
        .unwrap();
    assert_eq!((summary.count, summary.value, summary.decimals), (1, 90, 0));
}

on_devnet_and_anvil!(
    erc8004_identity_and_settled_feedback_on_the_embedded_devnet,
    erc8004_identity_and_settled_feedback_on_anvil,
    identity_and_feedback
);

/// An addresses file from before the ERC-8004 contracts still reads (their addresses
/// zero), `deploy_erc8004` adds them to that deployment, and a discovery cache made
/// for the old file accepts the completed one.
#[tokio::test(flavor = "multi_thread")]
async fn deployment_from_before_erc8004_gains_the_registries() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::embedded(&dir.path().join("chain")).await;
    let url = node.url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (_, full) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    assert!(full.has_erc8004());
    let mut json = serde_json::to_value(full).unwrap();
    for key in ["identityRegistry", "reputationRegistry", "settledFeedback"] {
        json.as_object_mut().unwrap().remove(key);
    }
    let old: chain::Addresses = serde_json::from_value(json).unwrap();
    assert!(!old.has_erc8004());
    assert!(!Deployment::at(deployer.clone(), &old)
        .is_deployed()
        .await
        .unwrap());

    let cache = dir.path().join("discovery");
    drop(
        registry::discovery::Discovery::open(&cache, &url, old)
            .await
            .unwrap(),
    );
    let (contracts, new) = Deployment::deploy_erc8004(deployer.clone(), &old)
        .await
        .unwrap();
    assert!(new.has_erc8004());
    assert_eq!(
        (new.registry, new.escrow, new.deployed_at),
        (old.registry, old.escrow, old.deployed_at)
    );
    assert_ne!(
        new.identity_registry, full.identity_registry,
        "a second set"
    );
    assert!(contracts.is_deployed().await.unwrap());
    assert_eq!(
        contracts.settled_feedback.escrow().call().await.unwrap(),
        old.escrow,
        "the reviewer reads the existing escrow"
    );
    assert!(Deployment::deploy_erc8004(deployer, &new).await.is_err());
    registry::discovery::Discovery::open(&cache, &url, new)
        .await
        .unwrap();
}
