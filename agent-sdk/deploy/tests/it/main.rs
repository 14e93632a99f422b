//! Integration tests of the `deploy` crate, one binary (see STYLE.md): a deployment's
//! agents composed and run in this process, without the command line, on the
//! embedded chain and the real default model.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod dashboard;
#[cfg(feature = "llm")]
mod deployment;
mod erc8004;
#[cfg(feature = "llm")]
mod llm;
mod up;
mod x402;

use deploy::config::Config;
use deploy::layout::agent_wallet;
use deploy::{AgentSite, ChainSetup};
use wallets::{Address, Amount, KdfStrength, KeystoreFile, Wallet};

/// A deployment in `dir` of one weather agent, `weather`, selling the forecast at 0.95
/// USDC on a loopback port, its keystore's password in the environment variable
/// `password_env` (which only the calling test reads); the embedded chain started with
/// the contracts. The agent is for the test to start.
pub(crate) async fn weather_site(
    dir: &std::path::Path,
    password_env: &str,
) -> (AgentSite, ChainSetup, Address) {
    one_agent_site(
        dir,
        password_env,
        "weather",
        "skills = [\"weather\"]\n\
         services = [{ skill = \"weather.forecast\", price = \"0.95 USDC\", unit = \"forecast\" }]\n",
    )
    .await
}

/// A deployment in `dir` of one agent, `name`, on a loopback port, its keystore's
/// password in the environment variable `password_env` (which only the calling test
/// reads), the rest of its `[agents.NAME]` table `entry`; the embedded chain started
/// with the contracts, the agent funded with gas. The agent is for the test to start.
pub(crate) async fn one_agent_site(
    dir: &std::path::Path,
    password_env: &str,
    name: &str,
    entry: &str,
) -> (AgentSite, ChainSetup, Address) {
    KeystoreFile::encrypt(&Wallet::random(), b"pw", KdfStrength::Light)
        .unwrap()
        .write_new(&dir.join(format!("keys/{name}.json")))
        .unwrap();
    let config_path = dir.join("agents.toml");
    std::fs::write(
        &config_path,
        format!(
            "[network]\nkind = \"embedded\"\n\n[agents.{name}]\nkeystore = \"keys/{name}.json\"\n\
             password_env = \"{password_env}\"\nlisten = \"127.0.0.1:0\"\n{entry}"
        ),
    )
    .unwrap();
    std::env::set_var(password_env, "pw");
    let config = Config::load(&config_path).unwrap();
    let address = agent_wallet(&config_path, &config.agents[0])
        .await
        .unwrap()
        .address();
    let chain = ChainSetup::embedded(
        &dir.join("chain"),
        31337,
        "127.0.0.1:0".parse().unwrap(),
        &[(&config.agents[0], address)],
        Amount::ZERO,
    )
    .await
    .unwrap();
    let site = AgentSite {
        config_path,
        state_dir: dir.join("state"),
        rpc_url: chain.url.clone(),
        addresses_path: chain.addresses_path.clone(),
        default_model: None,
    };
    (site, chain, address)
}

/// The arguments of the x402 and A2A client scripts (`pay_seller.py`,
/// `pay_seller.mjs`, `pay_agent.py`): the URL, the network, the asset and the most
/// to pay, then each `(flag, value)` of `more` (the request body and the like).
pub(crate) fn client_args(
    url: &str,
    network: &str,
    asset: &str,
    max: Amount,
    more: &[(&str, &str)],
) -> Vec<String> {
    let mut args: Vec<String> = [("--url", url), ("--network", network), ("--asset", asset)]
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
        .collect();
    args.extend(["--max-amount".to_owned(), max.base_units().to_string()]);
    for (k, v) in more {
        args.extend([(*k).to_owned(), (*v).to_owned()]);
    }
    args
}
