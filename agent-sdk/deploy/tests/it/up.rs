//! [`Up`]: a deployment of two weather agents on the embedded chain, its agents run
//! by a stand-in command (a shell that reports ready as an agent would and waits for
//! its standard input to close), without the command line.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use deploy::layout::UpState;
use deploy::up::{AgentRun, ChainPlace, Up, UpEvent, UpOptions};
use deploy::{Error, SupervisorEvent};
use wallets::{Address, KdfStrength, KeystoreFile, Wallet};

const PASSWORD_ENV: &str = "AGORA_UP_TEST_PASSWORD";

/// Two weather agents whose keystores open with the password in `password_env`.
fn deployment(dir: &Path, password_env: &str) -> HashMap<String, Address> {
    let mut text = "[network]\nkind = \"embedded\"\n".to_owned();
    let mut addresses = HashMap::new();
    for (name, price) in [("weather-a", "1.20 USDC"), ("weather-b", "0.95 USDC")] {
        let wallet = Wallet::random();
        KeystoreFile::encrypt(&wallet, b"pw", KdfStrength::Light)
            .unwrap()
            .write_new(&dir.join(format!("keys/{name}.json")))
            .unwrap();
        text += &format!(
            "\n[agents.{name}]\nkeystore = \"keys/{name}.json\"\npassword_env = \"{password_env}\"\n\
             listen = \"127.0.0.1:0\"\nskills = [\"weather\"]\n\
             services = [{{ skill = \"weather.forecast\", price = \"{price}\", unit = \"forecast\" }}]\n"
        );
        addresses.insert(name.to_owned(), wallet.address());
    }
    std::fs::write(dir.join("agents.toml"), text).unwrap();
    addresses
}

fn options(dir: &Path, addresses: HashMap<String, Address>) -> UpOptions {
    UpOptions {
        config_path: dir.join("agents.toml"),
        state_dir: dir.join("state"),
        chain_data: Some(dir.join("state/chain")),
        chain_listen: "127.0.0.1:0".parse().unwrap(),
        addresses: None,
        restart_delay: Duration::from_millis(100),
        buyer_funds: "100 USDC".parse().unwrap(),
        // Reports ready as `agora agent-run` does, then serves until stdin closes.
        agent_command: Box::new(move |run: &AgentRun| {
            let script = format!(
                "echo READY ws://stand-in/{}?rpc={} {}; cat >/dev/null",
                run.name, run.rpc_url, addresses[&run.name]
            );
            ("/bin/sh".into(), vec!["-c".into(), script.into()])
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_comes_up_records_its_agents_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = deployment(dir.path(), PASSWORD_ENV);
    // The keystores' password, as `agora up` takes it; only this test reads it.
    std::env::set_var(PASSWORD_ENV, "pw");
    let mut steps = Vec::new();
    let mut up = Up::start(options(dir.path(), addresses.clone()), |s| {
        steps.push(s.to_owned())
    })
    .await
    .unwrap();
    assert!(
        steps[0].starts_with("starting the embedded chain"),
        "{steps:?}"
    );
    let state_dir = dir.path().join("state");
    assert!(matches!(up.chain_place(), ChainPlace::Embedded(d) if d == &state_dir.join("chain")));
    assert!(up.chain().deployed_now);
    assert!(up.chain().addresses_path.exists());
    // up.json names the agents before they are ready, without endpoints.
    let before = UpState::load(&state_dir).unwrap();
    assert_eq!(before.rpc_url, up.chain().url);
    assert_eq!(before.agents.len(), 2);
    assert!(before.agents.values().all(|a| a.endpoint.is_none()));

    // Each child's readiness is recorded; once both are ready, AllReady follows.
    let mut ready = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), up.next())
            .await
            .expect("the children report")
            .unwrap()
            .expect("the supervisor runs");
        match event {
            UpEvent::Child(SupervisorEvent::Ready { name, address, .. }) => {
                assert_eq!(address, addresses[&name]);
                ready.push(name);
            }
            UpEvent::AllReady => break,
            UpEvent::Child(_) => {}
            other => panic!("{other:?}"),
        }
    }
    ready.sort();
    assert_eq!(ready, ["weather-a", "weather-b"]);
    let after = UpState::load(&state_dir).unwrap();
    for (name, a) in &after.agents {
        // The child was told the chain's URL.
        let endpoint = format!("ws://stand-in/{name}?rpc={}", up.chain().url);
        assert_eq!(a.endpoint.as_deref(), Some(&*endpoint));
        assert_eq!(a.address, addresses[name]);
        assert_eq!(a.skills, ["weather"]);
    }
    assert_eq!(
        format!("{:?}", up.state().agents),
        format!("{:?}", after.agents)
    );

    // Stopping closes the children's stdin (they exit 0), stops the chain and
    // removes up.json, keeping the rest of the state.
    let mut stopped = Vec::new();
    up.stop(|e| {
        if let SupervisorEvent::Stopped { name, status, .. } = e {
            stopped.push((name, status));
        }
    })
    .await;
    stopped.sort();
    assert_eq!(
        stopped,
        [
            ("weather-a".to_owned(), Some("exit code 0".to_owned())),
            ("weather-b".to_owned(), Some("exit code 0".to_owned()))
        ]
    );
    assert!(!UpState::path(&state_dir).exists());
    assert!(state_dir.join("chain/addresses.json").exists());
}

#[tokio::test]
async fn a_missing_password_stops_the_deployment_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = deployment(dir.path(), "AGORA_UP_TEST_UNSET_PASSWORD");
    let err = Up::start(options(dir.path(), addresses), |s| panic!("started: {s}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Password { var, problem: "not set", .. } if var == "AGORA_UP_TEST_UNSET_PASSWORD"),
        "{err}"
    );
    assert!(!dir.path().join("state/chain").exists());
}
