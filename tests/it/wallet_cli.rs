//! `agora wallet ...` and `agora journal verify` as a user runs them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use wallets::{keccak256, Journal, Wallet};

const PASSWORD: &str = "correct horse battery staple";

fn agora(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(args)
        .current_dir(dir)
        .env("AGORA_PASSWORD", PASSWORD)
        .env_remove("AGORA_HOME")
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str], dir: &Path) -> Output {
    agora(args, dir).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn new_address_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["wallet", "new", "--light"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let address = text
        .lines()
        .find_map(|l| l.strip_prefix("address:"))
        .unwrap()
        .trim()
        .to_owned();
    let keystore = dir
        .path()
        .join(".agora/keystores")
        .join(format!("{address}.json"));
    assert!(keystore.exists(), "{text}");
    let file = std::fs::read_to_string(&keystore).unwrap();
    assert!(!file.contains(PASSWORD));

    let ks = keystore.to_str().unwrap();
    let out = run(&["wallet", "address", ks], dir.path());
    assert_eq!(stdout(&out).trim(), address);

    let out = run(&["wallet", "sign", ks, "--message", "hire me"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let sig = stdout(&out).trim().to_owned();
    assert_eq!(sig.len(), 132, "{sig}");

    let out = run(
        &[
            "wallet",
            "verify",
            "--address",
            &address,
            "--signature",
            &sig,
            "--message",
            "hire me",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("valid"));

    // A different message moves the signer: exit code 1 and a clear verdict.
    let out = run(
        &[
            "wallet",
            "verify",
            "--address",
            &address,
            "--signature",
            &sig,
            "--message",
            "hire you",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("INVALID"), "{}", stdout(&out));

    // A wrong password is a clear error naming the file.
    let out = agora(&["wallet", "sign", ks, "--message", "x"], dir.path())
        .env("AGORA_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    assert!(stderr(&out).contains(ks), "{}", stderr(&out));
}

#[test]
fn import_then_sign_eip712_mail_vector() {
    let dir = tempfile::tempdir().unwrap();
    let ks = dir.path().join("cow.json");
    let mut child = agora(
        &[
            "wallet",
            "import",
            "--light",
            "--keystore",
            ks.to_str().unwrap(),
        ],
        dir.path(),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let secret = keccak256("cow").to_string();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), secret.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"));
    assert!(!stdout(&out).contains(&secret[2..]) && !stderr(&out).contains(&secret[2..]));

    let mail = dir.path().join("mail.json");
    std::fs::write(&mail, MAIL).unwrap();
    let out = run(
        &[
            "wallet",
            "sign",
            ks.to_str().unwrap(),
            "--typed-data",
            mail.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // r, s and v of EIP-712's Example.js.
    assert_eq!(
        stdout(&out).trim(),
        "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c"
    );

    // The same key refuses to sign a payment outside the spending policy.
    let payment = MAIL.replace("\"Mail\"", "\"TransferWithAuthorization\"");
    std::fs::write(&mail, payment).unwrap();
    let out = run(
        &[
            "wallet",
            "sign",
            ks.to_str().unwrap(),
            "--typed-data",
            mail.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("spending policy"), "{}", stderr(&out));
}

#[test]
fn missing_password_without_terminal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = agora(&["wallet", "new", "--light"], dir.path())
        .env_remove("AGORA_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AGORA_PASSWORD"), "{}", stderr(&out));
    assert!(!dir.path().join(".agora").exists());
}

#[test]
fn journal_verify_reports_the_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let wallet = Arc::new(Wallet::random());
    let mut j = Journal::open(&path, wallet.clone()).unwrap();
    for i in 0..3 {
        j.append(
            "payment",
            serde_json::json!({ "amount": (i * 5).to_string() }),
        )
        .unwrap();
    }
    drop(j);
    let p = path.to_str().unwrap();
    let out = run(
        &[
            "journal",
            "verify",
            p,
            "--signer",
            &wallet.address().to_string(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("entries:  3"));

    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"amount\":\"5\"", "\"amount\":\"6\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(&path, tampered).unwrap();
    let out = run(&["journal", "verify", p], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("entry 1"), "{}", stderr(&out));
}

const MAIL: &str = r#"{
  "types": {
    "EIP712Domain": [
      {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
      {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}
    ],
    "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
    "Mail": [
      {"name": "from", "type": "Person"}, {"name": "to", "type": "Person"},
      {"name": "contents", "type": "string"}
    ]
  },
  "primaryType": "Mail",
  "domain": {"name": "Ether Mail", "version": "1", "chainId": 1,
             "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
  "message": {
    "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
    "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
    "contents": "Hello, Bob!"
  }
}"#;
