//! `agora chain` serves the devnet and deploys the contracts; `agora registry`
//! registers an agent (and its ERC-8004 identity) and finds it; foundry's `cast` works
//! against it and with our keystores and signatures.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use registry::devnet::{dev_key, dev_wallet};

/// Starts `agora chain` with `extra` arguments; returns the child, its URL and what
/// it printed up to "serving".
pub(crate) fn start_chain(
    home: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String, String) {
    let mut chain = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["chain", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("AGORA_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(chain.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("json-rpc:") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("serving") {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no URL in:\n{printed}"));
    (chain, url, printed)
}

/// Imports dev account `i` (a public devnet key) into a keystore; returns its address.
pub(crate) fn import_dev_key(i: u32, keystore: &std::path::Path) -> String {
    let mut import = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "wallet",
            "import",
            "--light",
            "--keystore",
            keystore.to_str().unwrap(),
        ])
        .env("AGORA_PASSWORD", "pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut import.stdin.take().unwrap(),
        hex::encode(dev_key(i)).as_bytes(),
    )
    .unwrap();
    let out = import.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("address:").map(|a| a.trim().to_owned()))
        .unwrap()
}

/// Runs foundry's `cast` (installed from the npm registry on first use); its stdout.
pub(crate) fn cast(args: &[&str]) -> String {
    registry::anvil::run_foundry("cast", args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `agora ARGS --rpc URL` with `home` as `AGORA_HOME` and the keystore password
/// "pw"; returns whether it succeeded, its stdout and its stderr.
pub(crate) fn agora_on(home: &std::path::Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(args)
        .args(["--rpc", url])
        .env("AGORA_HOME", home)
        .env("AGORA_PASSWORD", "pw")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn stop(mut chain: std::process::Child) {
    let status = crate::stop_child(&mut chain, "-INT", std::time::Duration::from_secs(60))
        .expect("agora chain did not stop within a minute of Ctrl-C");
    assert!(status.success(), "agora chain exited with {status}");
}

#[test]
fn chain_register_list_show_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (chain, url, printed) = start_chain(&home, &[]);
    assert!(printed.contains("AgentRegistry"), "{printed}");
    // The dev keys, as anvil prints them: a newcomer needs them for `cast send`.
    for i in [0, 9] {
        let line = format!(
            "({i}) {}  private key 0x{}",
            dev_wallet(i).address(),
            hex::encode(dev_key(i))
        );
        assert!(printed.contains(&line), "{printed}");
    }
    assert!(home.join("chain/addresses.json").exists());

    let agora = |args: &[&str]| agora_on(&home, &url, args);

    let keystore = home.join("weather.json");
    let address = import_dev_key(3, &keystore);

    let register = |endpoint: &str| {
        agora(&[
            "registry",
            "register",
            "--keystore",
            keystore.to_str().unwrap(),
            "--endpoint",
            endpoint,
            "--service",
            "weather.forecast=1.20/forecast",
            "--name",
            "weather-3",
        ])
    };
    let (ok, out, err) = register("ws://127.0.0.1:7403");
    assert!(ok, "{err}");
    assert!(out.contains(&format!("registered {address}")), "{out}");
    assert!(out.contains("registered ERC-8004 agent 0"), "{out}");

    let (ok, out, err) = agora(&[
        "registry",
        "list",
        "--skill",
        "weather.forecast",
        "--max-price",
        "1.50",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&address) && out.contains("1.20 USDC"), "{out}");
    let (_, out, _) = agora(&[
        "registry",
        "list",
        "--skill",
        "weather.forecast",
        "--max-price",
        "1 USDC",
    ]);
    assert!(out.contains("0 offer(s)"), "{out}");

    let (ok, out, err) = agora(&["registry", "show", &address]);
    assert!(ok, "{err}");
    assert!(
        out.contains("status:    active") && out.contains("ws://127.0.0.1:7403"),
        "{out}"
    );

    // foundry's cast (pinned in registry/contracts) talks to `agora chain` as to any
    // node, reads the keystore `agora wallet import` wrote, and accepts a signature
    // `agora wallet sign` made.
    let (chain_id, balance) = (
        cast(&["chain-id", "--rpc-url", &url]),
        cast(&["balance", &address, "--rpc-url", &url]),
    );
    assert_eq!(chain_id, "1337");
    assert!(balance.parse::<u128>().is_ok_and(|b| b > 0), "{balance}");
    let receiver = "0x00000000000000000000000000000000000a6021";
    let key = format!("0x{}", hex::encode(dev_key(1)));
    let sent = cast(&[
        "send",
        "--json",
        "--private-key",
        &key,
        receiver,
        "--value",
        "2ether",
        "--rpc-url",
        &url,
    ]);
    assert!(sent.contains("\"status\":\"0x1\""), "{sent}");
    assert_eq!(
        cast(&["balance", receiver, "--rpc-url", &url]),
        "2000000000000000000"
    );
    let ks = keystore.to_str().unwrap();
    assert_eq!(
        cast(&["wallet", "address", "--keystore", ks, "--password", "pw"]),
        address
    );
    let signed = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["wallet", "sign", ks, "--message", "hire me"])
        .env("AGORA_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let signature = String::from_utf8_lossy(&signed.stdout).into_owned();
    let verified = cast(&[
        "wallet",
        "verify",
        "--address",
        &address,
        "hire me",
        signature.trim(),
    ]);
    assert!(verified.contains("Validation succeeded"), "{verified}");

    // cast reads the agent's ERC-8004 identity: owner, wallet, and the registration
    // file its agentURI carries.
    let addresses: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("chain/addresses.json")).unwrap())
            .unwrap();
    let identity = addresses["identityRegistry"].as_str().unwrap().to_owned();
    let read = |sig: &str| cast(&["call", &identity, sig, "0", "--rpc-url", &url]);
    assert_eq!(read("ownerOf(uint256)(address)"), address);
    assert_eq!(read("getAgentWallet(uint256)(address)"), address);
    let uri = read("tokenURI(uint256)(string)");
    let file = registry::erc8004::RegistrationFile::from_data_uri(uri.trim_matches('"'))
        .unwrap_or_else(|e| panic!("{e}: {uri}"));
    assert_eq!(file.name, "weather-3");
    assert_eq!(file.registrations[0].agent_id, 0);
    assert_eq!(
        file.services[0].endpoint,
        "http://127.0.0.1:7403/.well-known/agent-card.json"
    );
    let (ok, out, _) = agora(&["registry", "show", &address]);
    assert!(
        ok && out.contains("erc-8004:  agent 0 in eip155:1337:"),
        "{out}"
    );

    // Registering again changes nothing; a new endpoint updates both records.
    let (ok, out, err) = register("ws://127.0.0.1:7403");
    assert!(ok, "{err}");
    assert!(
        out.contains("entry up to date") && out.contains("ERC-8004 agent 0 up to date"),
        "{out}"
    );
    let (ok, out, err) = register("ws://127.0.0.1:7413");
    assert!(ok, "{err}");
    assert!(
        out.contains("entry updated") && out.contains("ERC-8004 agent 0: agent URI updated"),
        "{out}"
    );
    let uri = read("tokenURI(uint256)(string)");
    assert!(
        registry::erc8004::RegistrationFile::from_data_uri(uri.trim_matches('"'))
            .unwrap()
            .services[0]
            .endpoint
            .starts_with("http://127.0.0.1:7413/"),
        "{uri}"
    );

    // A bad service spec names itself.
    let (ok, _, err) = agora(&[
        "registry",
        "register",
        "--keystore",
        keystore.to_str().unwrap(),
        "--endpoint",
        "x",
        "--service",
        "weather.forecast=cheap/forecast",
    ]);
    assert!(!ok);
    assert!(err.contains("weather.forecast=cheap/forecast"), "{err}");

    // Ctrl-C stops the chain cleanly.
    stop(chain);
}

#[test]
fn deploy_by_url_then_register_with_an_addresses_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (chain, url, printed) = start_chain(&home, &["--no-deploy"]);
    assert!(!printed.contains("AgentRegistry"), "{printed}");
    let deployer = home.join("deployer.json");
    import_dev_key(0, &deployer);
    let seller = home.join("seller.json");
    let address = import_dev_key(4, &seller);
    let addresses = dir.path().join("deployment.json");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(args)
            .env("AGORA_HOME", &home)
            .env("AGORA_PASSWORD", "pw")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "agora {}: {err}", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let a = addresses.to_str().unwrap();
    // The roles go to other accounts than the deployer's, as on a shared network,
    // and are read back from the contracts.
    let governor = dev_wallet(8).address();
    let arbiter = dev_wallet(9).address();
    let deployed = run(&[
        "registry",
        "deploy",
        "--rpc",
        &url,
        "--keystore",
        deployer.to_str().unwrap(),
        "--governor",
        &governor.to_string(),
        "--arbiter",
        &arbiter.to_string(),
        "--out",
        a,
    ]);
    assert!(
        deployed.contains(&format!(
            "governor {governor} (registry), {governor} (escrow); escrow arbiter {arbiter}"
        )),
        "{deployed}"
    );
    run(&[
        "registry",
        "register",
        "--rpc",
        &url,
        "--addresses",
        a,
        "--keystore",
        seller.to_str().unwrap(),
        "--endpoint",
        "ws://127.0.0.1:7404",
        "--service",
        "llm.summarize=0.05/1k-tokens",
    ]);
    let out = run(&["registry", "list", "--rpc", &url, "--addresses", a]);
    assert!(
        out.contains(&address) && out.contains("llm.summarize"),
        "{out}"
    );
    stop(chain);
}

/// `agora model register` anchors a model file's provenance once, under its SHA-256;
/// `agora model show` reads it back (also with foundry's `cast`), and says whether the
/// model is suspended.
#[test]
fn model_register_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (chain, url, _) = start_chain(&home, &[]);
    let agora = |args: &[&str]| agora_on(&home, &url, args);
    let keystore = home.join("publisher.json");
    let publisher = import_dev_key(5, &keystore);
    // Any file will do: provenance is about the bytes, whatever they are.
    let model = dir.path().join("tiny-model.gguf");
    std::fs::write(&model, b"not really a model, but these exact bytes").unwrap();
    let fingerprint = llm::sha256_file(&model).unwrap().to_b256().to_string();
    let dataset = format!("0x{}", "ab".repeat(32));
    let model_path = model.to_str().unwrap();

    let (ok, out, _) = agora(&["model", "show", model_path]);
    assert!(!ok, "an unregistered model is a failure: {out}");
    assert!(out.contains("not registered"), "{out}");

    let register = || {
        agora(&[
            "model",
            "register",
            model_path,
            "--version",
            "7",
            "--uri",
            "file:///models/tiny-model.gguf",
            "--dataset",
            &dataset,
            "--keystore",
            keystore.to_str().unwrap(),
        ])
    };
    let (ok, out, err) = register();
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("registered model {fingerprint} (tiny-model)")),
        "{out}"
    );
    let (ok, _, err) = register();
    assert!(!ok);
    assert!(
        err.to_lowercase().contains(&format!(
            "registered already, by {}",
            publisher.to_lowercase()
        )),
        "{err}"
    );

    let (ok, out, err) = agora(&["model", "show", "--fingerprint", &fingerprint, "--json"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["record"]["name"], "tiny-model");
    assert_eq!(shown["record"]["version"], "7");
    assert_eq!(
        shown["record"]["publisher"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        publisher.to_lowercase()
    );
    assert_eq!(shown["record"]["datasetHashes"][0], dataset);
    assert_eq!(shown["suspended"], false);

    // The same record, read by cast from the ModelRegistry.
    let addresses: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("chain/addresses.json")).unwrap())
            .unwrap();
    let name = cast(&[
        "call",
        addresses["modelRegistry"].as_str().unwrap(),
        "getModel(bytes32)((address,uint64,string,string,string,bytes32[]))",
        &fingerprint,
        "--rpc-url",
        &url,
    ]);
    assert!(name.contains("\"tiny-model\""), "{name}");
    stop(chain);
}
