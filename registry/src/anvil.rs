//! A local [anvil](https://book.getfoundry.sh/anvil/) node for tests and development:
//! the binary comes from the pinned npm package `@foundry-rs/anvil` of
//! `registry/contracts` (installed with `npm ci` on first use), listens on a free
//! loopback port, and has the devnet's dev accounts funded with ether, so code run on
//! the embedded devnet runs unchanged against a real node.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address as EAddress, U256 as EU256};

use crate::devnet::{dev_wallet, DEV_ACCOUNTS};

/// Installs the pinned npm packages of registry/contracts once per process.
static NPM: Mutex<bool> = Mutex::new(false);

/// A foundry binary (`anvil`, `cast`) from `registry/contracts/node_modules`, installed
/// with `npm ci` (the npm registry) if it is not there yet.
///
/// This is the native executable of the platform package
/// (`@foundry-rs/<name>-<os>-<arch>/bin/<name>`), not the node script that
/// `node_modules/.bin/<name>` links to: that script runs the executable as its child
/// and does not pass SIGKILL on, so killing it would leave the node running.
///
/// # Errors
/// When npm is missing or fails, when this platform has no foundry package, or the
/// binary is still missing after npm.
pub fn foundry_bin(name: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts");
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        arch => return Err(format!("foundry ships no {name} for {os} on {arch}")),
    };
    let bin = dir
        .join("node_modules/@foundry-rs")
        .join(format!("{name}-{os}-{arch}"))
        .join("bin")
        .join(name);
    let mut installed = NPM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !bin.exists() && !*installed {
        let status = Command::new("npm")
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                format!(
                    "running npm ci in {} (is npm installed?): {e}",
                    dir.display()
                )
            })?;
        if !status.success() {
            return Err(format!("npm ci in {} failed: {status}", dir.display()));
        }
        *installed = true;
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} is missing after npm ci", bin.display()))
    }
}

/// Runs the foundry binary `name` (see [`foundry_bin`]) with `args`; its stdout,
/// trimmed.
///
/// # Errors
/// When the binary is missing or cannot run, or exits unsuccessfully (the error
/// names the command and carries its stderr).
pub fn run_foundry(name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(foundry_bin(name)?)
        .args(args)
        .output()
        .map_err(|e| format!("running {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Approves `spender` for `amount` of `token` from dev account `account`
/// ([`crate::devnet::dev_key`]: public keys, for dev chains only) with foundry's
/// `cast send`, as an operator's own wallet tool would: Agora wallets sign no ERC-20
/// approval outside their spending policy, and the contracts that pull fees, bonds and
/// stake need one.
///
/// # Errors
/// When cast is missing or fails, or the transaction reverts.
pub fn cast_approve_from_dev(
    url: &str,
    account: u32,
    token: wallets::Address,
    spender: wallets::Address,
    amount: wallets::Amount,
) -> Result<(), String> {
    let key = format!("0x{}", hex::encode(crate::devnet::dev_key(account)));
    let out = run_foundry(
        "cast",
        &[
            "send",
            "--json",
            "--private-key",
            &key,
            &token.to_string(),
            "approve(address,uint256)",
            &spender.to_string(),
            &amount.base_units().to_string(),
            "--rpc-url",
            url,
        ],
    )?;
    let receipt: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("cast send printed {out:?}: {e}"))?;
    if receipt.get("status").and_then(|s| s.as_str()) != Some("0x1") {
        return Err(format!("the approval reverted: {out}"));
    }
    Ok(())
}

/// A running anvil, killed and reaped on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    /// Starts anvil on a free loopback port and funds the dev accounts with 10 000
    /// ether each.
    ///
    /// # Errors
    /// When the binary cannot be installed or started, or does not come up.
    pub async fn spawn() -> Result<Self, String> {
        Self::spawn_with_args(&[]).await
    }

    /// [`Anvil::spawn`] with extra command-line arguments for anvil (such as
    /// `--no-mining` or `--gas-limit`).
    ///
    /// # Errors
    /// As [`Anvil::spawn`].
    pub async fn spawn_with_args(args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(foundry_bin("anvil")?)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting anvil: {e}"))?;
        // anvil prints "Listening on 127.0.0.1:PORT" once it serves; keep draining its
        // output afterwards so it never blocks on a full pipe.
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("anvil has no standard output".into());
        };
        let mut lines = BufReader::new(stdout).lines();
        let url = lines.by_ref().map_while(Result::ok).find_map(|l| {
            l.strip_prefix("Listening on ")
                .map(|a| format!("http://{}", a.trim()))
        });
        std::thread::spawn(move || lines.for_each(drop));
        let mut anvil = Self {
            child,
            url: url.unwrap_or_default(),
        };
        if anvil.url.is_empty() {
            let status = anvil.child.try_wait().ok().flatten();
            return Err(format!("anvil exited before listening ({status:?})"));
        }
        anvil.fund_dev_accounts().await?;
        Ok(anvil)
    }

    /// Its JSON-RPC URL.
    pub fn http_url(&self) -> String {
        self.url.clone()
    }

    async fn fund_dev_accounts(&mut self) -> Result<(), String> {
        let provider = Provider::<Http>::try_from(self.url.as_str()).map_err(|e| e.to_string())?;
        let ether = EU256::exp10(18) * 10_000;
        for i in 0..DEV_ACCOUNTS as u32 {
            let addr = EAddress::from(dev_wallet(i).address().0);
            let () = provider
                .request("anvil_setBalance", (addr, ether))
                .await
                .map_err(|e| format!("anvil_setBalance: {e}"))?;
        }
        provider
            .get_chainid()
            .await
            .map(drop)
            .map_err(|e| format!("anvil chain id: {e}"))
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
