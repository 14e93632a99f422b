//! `agora demo` as a subprocess on the embedded chain and the real small model: the
//! itinerary names the destination, the agreed price moved on chain (checked by
//! reopening the demo's chain data), and `agora audit` of both journals against the
//! chain is clean. With `--serve`, the dashboard of the run shows the paid deal and
//! the clean audit until SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use registry::chain::{self, Addresses, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use wallets::{Address, Amount};

fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
        .trim()
}

/// Kills the process with this id if the test fails before it ended.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_hires_pays_and_plans() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // With --serve, the dashboard of the run stays up after the story until SIGINT.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_agora"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "Three days in Lisbon in July, please. I like food and museums.",
            "--serve",
            "127.0.0.1:0",
        ])
        .arg("--dir")
        .arg(dir.path())
        .env("AGORA_MODEL_CACHE", "/var/cache/agora/models")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(demo.id());
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let dashboard = loop {
        let Some(line) = lines.next().map(Result::unwrap) else {
            panic!(
                "the demo ended without serving its dashboard:\n{stdout}\n{}",
                std::fs::read_to_string(dir.path().join("stderr")).unwrap()
            );
        };
        stdout += &line;
        stdout.push('\n');
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let tx = field(&stdout, "tx:").to_owned();
    // The dashboard shows the deal, paid by the plan's transaction, and the clean
    // audit of the journals against the reopened chain.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let state = loop {
        let state: serde_json::Value = reqwest::get(format!("{dashboard}api/state"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paid = state["deals"].as_object().unwrap().values().any(|d| {
            d["stage"] == "receipt"
                && d["transactions"]
                    .as_array()
                    .unwrap()
                    .contains(&tx.as_str().into())
        });
        if paid && state["journals"]["clean"] == true {
            break state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard never showed the paid deal: {state:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(state["agents"]["travel"]["status"], "finished");
    assert!(state["chain"]["block"].as_u64().unwrap() > 0);
    let ended = crate::stop_child(&mut demo, "-INT", std::time::Duration::from_secs(60))
        .expect("agora demo did not stop within a minute of Ctrl-C");
    std::mem::forget(guard);
    assert!(
        ended.success(),
        "{ended}\n{stdout}\n{}",
        std::fs::read_to_string(dir.path().join("stderr")).unwrap()
    );
    assert!(stdout.contains("Itinerary for Lisbon"), "{stdout}");
    let seller: Address = field(&stdout, "seller:")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let price: Amount = field(&stdout, "price:").parse().unwrap();
    assert!(price <= "2 USDC".parse().unwrap(), "{price}");
    assert_eq!(stdout.matches("verified)").count(), 2, "{stdout}");

    // The payment is on chain: reopen the demo's chain and read the seller's balance.
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let addresses: Addresses = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("chain/addresses.json")).unwrap(),
    )
    .unwrap();
    let client = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
        .await
        .unwrap();
    let contracts = Deployment::at(client, &addresses);
    assert_eq!(contracts.balance_of(seller).await.unwrap(), price);

    // `agora audit` of both journals, against the chain, is clean.
    let journals: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with("verified)"))
        .map(|l| l.trim().split(" (").next().unwrap())
        .collect();
    let audit = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("audit")
        .args(&journals)
        .arg("--rpc")
        .arg(node.http_url())
        .arg("--addresses")
        .arg(dir.path().join("chain/addresses.json"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    node.shutdown().await;
}
