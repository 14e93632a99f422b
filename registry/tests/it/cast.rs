//! foundry's `cast` (from the npm registry) talks to the embedded devnet as to any node.

use registry::devnet::{dev_key, dev_wallet};

use crate::support;

fn cast(args: &[&str]) -> String {
    registry::anvil::run_foundry("cast", args).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn cast_chain_id_balance_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let node = support::embedded(dir.path()).await;
    let url = node.url();
    let rpc = ["--rpc-url", url.as_str()];

    assert_eq!(cast(&[&["chain-id"][..], &rpc].concat()), "1337");
    let alice = dev_wallet(1).address().to_string();
    let bob = dev_wallet(3).address().to_string();
    assert_eq!(
        cast(&[&["balance", &bob][..], &rpc].concat()),
        "10000000000000000000000"
    );

    // cast signs with its own code; the devnet only sees a raw EIP-1559 transaction.
    let key = format!("0x{}", hex::encode(dev_key(1)));
    let sent = cast(
        &[
            &[
                "send",
                "--json",
                "--private-key",
                &key,
                &bob,
                "--value",
                "1ether",
            ][..],
            &rpc,
        ]
        .concat(),
    );
    let receipt: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(receipt["status"], "0x1", "{sent}");
    assert_eq!(
        cast(&[&["balance", &bob][..], &rpc].concat()),
        "10001000000000000000000"
    );
    // Alice paid the value and the gas.
    let alice_balance: u128 = cast(&[&["balance", &alice][..], &rpc].concat())
        .parse()
        .unwrap();
    assert!(alice_balance < 9_999_000_000_000_000_000_000);
    assert_eq!(cast(&[&["nonce", &alice][..], &rpc].concat()), "1");
    let number = cast(&[&["block-number"][..], &rpc].concat());
    assert_eq!(number, "1");
    let block = cast(&[&["block", "latest", "--json"][..], &rpc].concat());
    let block: serde_json::Value = serde_json::from_str(&block).unwrap();
    assert_eq!(block["transactions"][0], receipt["transactionHash"]);
    let tx = cast(
        &[
            &["tx", receipt["transactionHash"].as_str().unwrap(), "--json"][..],
            &rpc,
        ]
        .concat(),
    );
    let tx: serde_json::Value = serde_json::from_str(&tx).unwrap();
    assert_eq!(
        tx["to"].as_str().unwrap().to_lowercase(),
        bob.to_lowercase()
    );
}
