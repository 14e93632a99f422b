//! Agora across hosts on a real node: Linux network namespaces on one switch
//! (`tests/netns/hosts.sh`), anvil as the chain on one of them, and `agora up` with
//! `kind = "rpc"` on three others, each with its own keystores: the travel agent on
//! one, a weather agent on each of the others. An operator account deploys the
//! contracts (`agora registry deploy`) and pays the agents' gas and the travel
//! agent's stablecoin with real transactions (foundry's `cast`); no dev faucet.
//!
//! The trip goes over the hosts' network: the travel agent finds the sellers on the
//! other hosts through the `AgentRegistry`, hires the cheaper one and pays it on
//! anvil; balances are checked to the base unit and `agora audit` of every journal
//! against anvil is clean.
//!
//! Needs root (network namespaces) and iproute2; where namespaces cannot be made,
//! the test says why and does nothing else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wallets::{Address, Amount, KdfStrength, KeystoreFile, Wallet};

use crate::up::{deployment, field, Up, OWNER_KEYSTORE, PASSWORD_ENV};

const HOSTS_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns/hosts.sh");

/// Hosts made with `hosts.sh up`, deleted (with whatever still runs in them) on drop.
struct Hosts {
    prefix: String,
}

impl Hosts {
    /// `n` hosts, or `None` (said on stderr) where this machine cannot make network
    /// namespaces.
    fn up(n: usize) -> Option<Self> {
        let check = Command::new("bash")
            .args([HOSTS_SH, "check"])
            .output()
            .unwrap();
        if !check.status.success() {
            eprintln!(
                "skipped: network namespaces are unavailable here ({}); the multi-host \
                 test needs root and iproute2",
                String::from_utf8_lossy(&check.stderr).trim()
            );
            return None;
        }
        let hosts = Self {
            prefix: format!("agora{}", std::process::id()),
        };
        let made = Command::new("bash")
            .args([HOSTS_SH, "up", &hosts.prefix, &n.to_string()])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "hosts.sh up: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        Some(hosts)
    }

    fn ns(&self, host: usize) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Host `host`'s address on the switch.
    fn ip(host: usize) -> String {
        format!("10.77.0.{}", host + 1)
    }

    /// `program` run on host `host`.
    fn command(&self, host: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }

    /// Runs `program args` on `host`; its stdout, or the test fails with its stderr.
    fn run(&self, host: usize, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
        let program = program.as_ref().to_owned();
        let out = self
            .command(host, &program)
            .args(args)
            .env(PASSWORD_ENV, "pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {}: {}\n{}",
            program.to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn cast(&self, host: usize, args: &[&str]) -> String {
        self.run(host, registry::anvil::foundry_bin("cast").unwrap(), args)
    }

    fn agora(&self, host: usize, args: &[&str]) -> String {
        self.run(host, env!("CARGO_BIN_EXE_agora"), args)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([HOSTS_SH, "down", &self.prefix])
            .status();
    }
}

/// anvil serving on host `host`'s address, port 8545; killed on drop.
struct Node(Child);

impl Node {
    fn start(hosts: &Hosts, host: usize) -> (Self, String) {
        let mut child = hosts
            .command(host, registry::anvil::foundry_bin("anvil").unwrap())
            .args(["--host", &Hosts::ip(host), "--port", "8545"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("Listening on "));
        std::thread::spawn(move || lines.for_each(drop));
        assert!(listening, "anvil did not start on host {host}");
        (Self(child), format!("http://{}:8545", Hosts::ip(host)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keystore_address(path: &Path) -> Address {
    KeystoreFile::read(path)
        .unwrap()
        .address(path)
        .unwrap()
        .unwrap()
}

/// A balance from `cast call ... (uint256)`, which prints `807500 [8.075e5]`.
fn base_units(printed: &str) -> u128 {
    printed.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_crosses_hosts_over_a_real_node() {
    let Some(hosts) = Hosts::up(4) else {
        return;
    };
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_node, url) = Node::start(&hosts, 0);
    let network = format!("kind = \"rpc\"\nurl = \"{url}\"\nchain_id = 31337");

    // The operator: its own key, with ether on the chain (as a testnet's faucet or an
    // exchange would give it); it deploys and pays everyone else's gas.
    let operator = dir.path().join("operator.json");
    KeystoreFile::encrypt(&Wallet::random(), b"pw", KdfStrength::Light)
        .unwrap()
        .write_new(&operator)
        .unwrap();
    let operator_address = keystore_address(&operator).to_string();
    // cast reads a keystore's password from a file.
    let password_file = dir.path().join("operator.password");
    std::fs::write(&password_file, "pw").unwrap();
    let password_file = password_file.to_str().unwrap();
    hosts.cast(
        1,
        &[
            "rpc",
            "anvil_setBalance",
            &operator_address,
            "0x56bc75e2d63100000",
            "--rpc-url",
            &url,
        ],
    );
    let addresses = dir.path().join("addresses.json");
    let operator_ks = operator.to_str().unwrap();
    hosts.agora(
        1,
        &[
            "registry",
            "deploy",
            "--rpc",
            &url,
            "--keystore",
            operator_ks,
            "--password-env",
            PASSWORD_ENV,
            "--out",
            addresses.to_str().unwrap(),
            "--dev-faucet",
        ],
    );
    let deployed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&addresses).unwrap()).unwrap();
    let stablecoin = deployed["stablecoin"].as_str().unwrap().to_owned();

    // One deployment per host, each with its own keystores, listening on its host's
    // address: the travel agent on host 1, weather agents on hosts 2 and 3.
    let plans: [(usize, &str, Option<&str>); 3] = [
        (1, "travel", None),
        (2, "weather-a", Some("1.20 USDC")),
        (3, "weather-b", Some("0.95 USDC")),
    ];
    let mut sites = Vec::new();
    for (host, name, price) in plans {
        let site = dir.path().join(format!("host{host}"));
        std::fs::create_dir_all(&site).unwrap();
        let config = deployment(&site, &network, &[(name, price)]);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("127.0.0.1:0", &format!("{}:0", Hosts::ip(host)));
        std::fs::write(&config, text).unwrap();
        let address = keystore_address(&site.join(format!("keys/{name}.json")));
        // Gas from the operator, a real transfer.
        hosts.cast(
            1,
            &[
                "send",
                "--keystore",
                operator_ks,
                "--password-file",
                password_file,
                "--value",
                "1ether",
                &address.to_string(),
                "--rpc-url",
                &url,
            ],
        );
        sites.push((host, name, site, config, address));
    }
    let travel = sites[0].4;
    let funds = Amount::from_base_units(20_000_000);
    hosts.cast(
        1,
        &[
            "send",
            "--keystore",
            operator_ks,
            "--password-file",
            password_file,
            &stablecoin,
            "mint(address,uint256)",
            &travel.to_string(),
            &funds.base_units().to_string(),
            "--rpc-url",
            &url,
        ],
    );

    let ups: Vec<Up> = sites
        .iter()
        .map(|(host, _, site, config, _)| {
            Up::spawn_in(
                Some(&hosts.ns(*host)),
                config,
                &site.join("state"),
                &["--addresses", addresses.to_str().unwrap()],
            )
        })
        .collect();
    for up in &ups {
        up.wait_line("all 1 agents are up", Duration::from_secs(180));
    }

    // The trip, asked on host 1 by the travel agent's owner: the cheaper seller, on
    // host 3, wins it, found through the registry.
    let travel_site = &sites[0].2;
    let plan = hosts
        .command(1, env!("CARGO_BIN_EXE_agora"))
        .arg("plan")
        .arg("One day in Lisbon in July, please. I like the sea.")
        .arg("--config")
        .arg(&sites[0].3)
        .arg("--dir")
        .arg(travel_site.join("state"))
        .arg("--keystore")
        .arg(travel_site.join(OWNER_KEYSTORE))
        .args(["--password-env", PASSWORD_ENV, "--timeout", "900s"])
        .env(PASSWORD_ENV, "pw")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&plan.stdout).into_owned();
    let logs = || ups.iter().map(Up::output).collect::<Vec<_>>().join("\n");
    assert!(
        plan.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&plan.stderr),
        logs()
    );
    assert!(stdout.contains("Itinerary for Lisbon"), "{stdout}");
    let seller: Address = field(&stdout, "seller:")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let price: Amount = field(&stdout, "price:").parse().unwrap();
    let weather_b = sites[2].4;
    assert_eq!(seller, weather_b, "{stdout}");

    // Balances on anvil, to the base unit.
    let balance = |who: Address| {
        base_units(&hosts.cast(
            2,
            &[
                "call",
                &stablecoin,
                "balanceOf(address)(uint256)",
                &who.to_string(),
                "--rpc-url",
                &url,
            ],
        ))
    };
    assert_eq!(balance(weather_b), price.base_units());
    assert_eq!(balance(travel), funds.base_units() - price.base_units());
    assert_eq!(balance(sites[1].4), 0);

    // `agora audit` of every host's journal, against anvil: clean.
    let journals: Vec<PathBuf> = sites
        .iter()
        .map(|(_, name, site, ..)| site.join(format!("state/agents/{name}/journal")))
        .collect();
    let audit = hosts
        .command(2, env!("CARGO_BIN_EXE_agora"))
        .arg("audit")
        .args(&journals)
        .args(["--rpc", &url, "--addresses"])
        .arg(&addresses)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    for mut up in ups {
        up.terminate();
    }
}
