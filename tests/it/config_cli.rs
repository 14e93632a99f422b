//! `agora config check` on the repository's agents.toml and on a broken copy.

use std::process::Command;

#[test]
fn config_check_accepts_the_example_and_names_file_line_key_of_a_mistake() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/agents.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["config", "check", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        stdout.contains("sells llm.complete at 0.02 USDC per completion")
            && stdout.contains("serves the inference oracle"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("agents.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let text = text.replacen("price = \"0.95 USDC\"", "price = \"0,95 USDC\"", 1);
    std::fs::write(&broken, &text).unwrap();
    let line = text.lines().position(|l| l.contains("0,95")).unwrap() + 1;
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["config", "check", broken.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:{line}:", broken.display()))
            && err.contains("agents.weather-b.services.price"),
        "{err}"
    );
}

#[test]
fn init_writes_a_valid_config_and_keystores_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let init = || {
        Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["init", "--light", "--dir", dir.path().to_str().unwrap()])
            .env("AGORA_PASSWORD", "pw")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = init();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("agents.toml");
    let check = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["config", "check", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for name in ["travel", "weather-a", "weather-b", "weather-c", "scribe"] {
        let ks = dir.path().join(format!(".agora/keystores/{name}.json"));
        let wallet = wallets::keystore::load(&ks, b"pw").unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&wallet.address().to_string()));
    }
    let again = init();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}
