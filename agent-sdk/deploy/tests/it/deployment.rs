//! A travel agent and two weather agents from an agents.toml, started through
//! [`RunningAgent::start`] on the embedded chain: the travel agent plans a trip for
//! its principal, paying a weather agent at most the mandate's price, and refuses a
//! stranger without spending anything; then a cheaper weather agent listed in the
//! registry as an A2A agent (its entry's endpoint its A2A URL) is hired over A2A and
//! paid with x402 through the same policy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::{AgentBuilder, Host, HostConfig};
use deploy::config::Config;
use deploy::{AgentSite, ChainSetup, PlanTrip, RunningAgent};
use wallets::{Amount, KdfStrength, KeystoreFile, Wallet};

const PASSWORD_ENV: &str = "AGORA_DEPLOY_TEST_PASSWORD";

/// Writes a light keystore for `wallet` at `dir/keys/NAME.json`.
fn keystore(dir: &Path, name: &str, wallet: &Wallet) {
    KeystoreFile::encrypt(wallet, b"pw", KdfStrength::Light)
        .unwrap()
        .write_new(&dir.join(format!("keys/{name}.json")))
        .unwrap();
}

/// The agents.toml of the test: weather agents at 1.20, 0.95 and 0.50 USDC, and a travel
/// agent whose only principal is `owner`, up to 2 USDC a trip. Every host listens on
/// port 0: the agents register the address they got.
fn agents_toml(owner: wallets::Address) -> String {
    let agent = |name: &str| {
        format!(
            "\n[agents.{name}]\nkeystore = \"keys/{name}.json\"\npassword_env = \"{PASSWORD_ENV}\"\nlisten = \"127.0.0.1:0\"\n"
        )
    };
    let weather = |name: &str, price: &str| {
        agent(name)
            + &format!("skills = [\"weather\"]\nservices = [{{ skill = \"weather.forecast\", price = \"{price}\", unit = \"forecast\" }}]\n")
    };
    format!(
        "[network]\nkind = \"embedded\"\n{}{}{}{}skills = [\"travel\", \"llm\"]\n\n\
         [agents.travel.policy]\nper_deal = \"5 USDC\"\ndaily = \"25 USDC\"\n\n\
         [agents.travel.principals.owner]\naddress = \"{owner}\"\nskills = [\"travel.Plan\"]\n\
         max_per_request = \"2 USDC\"\ndaily = \"10 USDC\"\n",
        weather("weather-a", "1.20 USDC"),
        weather("weather-b", "0.95 USDC"),
        weather("weather-c", "0.50 USDC"),
        agent("travel"),
    )
}

/// Asks the travel agent at `url` to plan a trip, as `who`.
async fn ask(
    chain_id: u64,
    store: &Path,
    who: Wallet,
    travel: &RunningAgent,
) -> Result<deploy::PlannedTrip, agent_sdk::Error> {
    let host = Host::spawn(HostConfig::new(chain_id, store).name("asker")).unwrap();
    host.add_peer(travel.address(), travel.url());
    let me = AgentBuilder::new("asker")
        .wallet(Arc::new(who))
        .spawn(&host)
        .unwrap();
    let ctx = me.context();
    let answer = ctx
        .ask_in(
            ctx.new_dialogue(),
            travel.address(),
            PlanTrip {
                request: "Two days in Lisbon in May, museums".into(),
            },
            Duration::from_secs(300),
        )
        .await;
    drop(me);
    tokio::task::spawn_blocking(move || host.shutdown())
        .await
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_plans_for_its_principal_and_refuses_a_stranger() {
    let dir = tempfile::tempdir().unwrap();
    // The principal's key, to ask twice (`ask` takes the wallet).
    let owner_key = wallets::B256::random();
    let owner = Wallet::from_bytes(&owner_key.0).unwrap();
    let owner_again = Wallet::from_bytes(&owner_key.0).unwrap();
    for name in ["weather-a", "weather-b", "weather-c", "travel"] {
        keystore(dir.path(), name, &Wallet::random());
    }
    let config_path = dir.path().join("agents.toml");
    std::fs::write(&config_path, agents_toml(owner.address())).unwrap();
    // The keystores' password, as `agora up` takes it; only this test reads it.
    std::env::set_var(PASSWORD_ENV, "pw");
    let config = Config::load(&config_path).unwrap();
    let mut agents = Vec::new();
    for a in &config.agents {
        let wallet = deploy::layout::agent_wallet(&config_path, a).await.unwrap();
        agents.push((a, wallet.address()));
    }
    let funds: Amount = "100 USDC".parse().unwrap();
    let chain = ChainSetup::embedded(
        &dir.path().join("chain"),
        31337,
        "127.0.0.1:0".parse().unwrap(),
        &agents,
        funds,
    )
    .await
    .unwrap();
    assert!(chain.deployed_now);
    let site = AgentSite {
        config_path: config_path.clone(),
        state_dir: dir.path().join("state"),
        rpc_url: chain.url.clone(),
        addresses_path: chain.addresses_path.clone(),
        default_model: Some(llm::test_utils::default_model()),
    };
    let mut running = Vec::new();
    for name in ["weather-a", "weather-b", "travel"] {
        running.push(RunningAgent::start(&site, name).await.unwrap());
    }
    let travel = running.pop().unwrap();
    assert_ne!(travel.url(), "ws://127.0.0.1:0", "port 0 is resolved");

    // A stranger is refused, and nothing is spent.
    let stranger = ask(
        31337,
        &dir.path().join("stranger"),
        Wallet::random(),
        &travel,
    )
    .await;
    let err = stranger.unwrap_err().to_string();
    assert!(err.contains("is not a principal of this agent"), "{err}");

    // The principal gets a trip, paid to one of the weather agents within the mandate.
    let plan = ask(31337, &dir.path().join("owner"), owner, &travel)
        .await
        .unwrap();
    assert!(plan.itinerary.contains("Lisbon"), "{}", plan.itinerary);
    let price: Amount = plan.price.parse().unwrap();
    assert!(price <= "2 USDC".parse().unwrap(), "{price}");
    let sellers: Vec<String> = running.iter().map(|a| a.address().to_string()).collect();
    assert!(
        sellers.contains(&plan.seller),
        "{} not in {sellers:?}",
        plan.seller
    );

    // The buyer's balance fell by exactly the price, and only once.
    let client = registry::chain::connect(&chain.url, Arc::new(Wallet::random()))
        .await
        .unwrap();
    let contracts = registry::chain::Deployment::at(client, &chain.addresses);
    let left = contracts.balance_of(travel.address()).await.unwrap();
    assert_eq!(left.base_units() + price.base_units(), funds.base_units());

    // weather-c, at 0.50 USDC, lists itself in the registry as an A2A agent: its
    // entry's endpoint is its A2A URL. The travel agent does not negotiate with it; it
    // asks it for a quote, finds no Agora seller as cheap, and pays it over A2A.
    let c = RunningAgent::start(&site, "weather-c").await.unwrap();
    let c_config = config
        .agents
        .iter()
        .find(|a| a.name == "weather-c")
        .unwrap();
    let c_wallet = deploy::layout::agent_wallet(&config_path, c_config)
        .await
        .unwrap();
    let a2a_url = format!(
        "{}/agents/{}",
        c.url().replacen("ws://", "http://", 1),
        c.address()
    );
    let c_contracts = registry::chain::Deployment::at(
        registry::chain::connect(&chain.url, c_wallet)
            .await
            .unwrap(),
        &chain.addresses,
    );
    let price_c: Amount = "0.50 USDC".parse().unwrap();
    c_contracts
        .update_agent(
            &a2a_url,
            &format!("{a2a_url}/.well-known/agent-card.json"),
            wallets::B256::default(),
            vec![registry::chain::service("weather.forecast", price_c, "forecast").unwrap()],
        )
        .await
        .unwrap();
    let before_c = contracts.balance_of(c.address()).await.unwrap();
    let plan = ask(31337, &dir.path().join("owner-2"), owner_again, &travel)
        .await
        .unwrap();
    assert_eq!(plan.seller, c.address().to_string(), "{plan:?}");
    assert_eq!(plan.price.parse::<Amount>().unwrap(), price_c);
    assert!(plan.tx_hash.starts_with("0x"), "{plan:?}");
    assert!(plan.itinerary.contains("Lisbon"), "{}", plan.itinerary);
    assert_eq!(
        contracts
            .balance_of(c.address())
            .await
            .unwrap()
            .base_units(),
        before_c.base_units() + price_c.base_units()
    );
    assert_eq!(
        contracts
            .balance_of(travel.address())
            .await
            .unwrap()
            .base_units(),
        left.base_units() - price_c.base_units()
    );

    c.shutdown().await;
    travel.shutdown().await;
    for a in running {
        a.shutdown().await;
    }
    chain.shutdown().await;
}
