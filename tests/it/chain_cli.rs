//! `agora chain` serves the devnet and deploys the contracts; `agora registry`
//! registers an agent and finds it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use registry::devnet::dev_key;

#[test]
fn chain_register_list_show_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut chain = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["chain", "--listen", "127.0.0.1:0"])
        .env("AGORA_HOME", &home)
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
    assert!(printed.contains("AgentRegistry"), "{printed}");
    assert!(home.join("chain/addresses.json").exists());

    let agora = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(args)
            .args(["--rpc", &url])
            .env("AGORA_HOME", &home)
            .env("AGORA_PASSWORD", "pw")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A keystore for dev account 3 (a public devnet key).
    let keystore = home.join("weather.json");
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
        hex::encode(dev_key(3)).as_bytes(),
    )
    .unwrap();
    let out = import.wait_with_output().unwrap();
    assert!(out.status.success());
    let address = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("address:").map(|a| a.trim().to_owned()))
        .unwrap();

    let (ok, out, err) = agora(&[
        "registry",
        "register",
        "--keystore",
        keystore.to_str().unwrap(),
        "--endpoint",
        "ws://127.0.0.1:7403",
        "--service",
        "weather.forecast=1.20/forecast",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&address), "{out}");

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
        "1",
    ]);
    assert!(out.contains("0 offer(s)"), "{out}");

    let (ok, out, err) = agora(&["registry", "show", &address]);
    assert!(ok, "{err}");
    assert!(
        out.contains("status:    active") && out.contains("ws://127.0.0.1:7403"),
        "{out}"
    );

    // Registering twice is refused with the contract's reason.
    let (ok, _, err) = agora(&[
        "registry",
        "register",
        "--keystore",
        keystore.to_str().unwrap(),
        "--endpoint",
        "ws://127.0.0.1:7403",
        "--service",
        "weather.forecast=1.20/forecast",
    ]);
    assert!(!ok);
    assert!(err.contains("AlreadyRegistered"), "{err}");

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
    let status = Command::new("kill")
        .args(["-INT", &chain.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = chain.wait().unwrap();
    assert!(status.success(), "agora chain exited with {status}");
}
