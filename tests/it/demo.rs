//! `agora demo` as a subprocess on the embedded chain and the real small model: the
//! itinerary names the destination, the agreed price moved on chain (checked by
//! reopening the demo's chain data), and `agora audit` of both journals against the
//! chain is clean.

use std::process::Command;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_hires_pays_and_plans() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "Three days in Lisbon in July, please. I like food and museums.",
        ])
        .arg("--dir")
        .arg(dir.path())
        .env("AGORA_MODEL_CACHE", "/var/cache/agora/models")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
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
