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
//! Faults: the node is stopped while a trip is under way (anvil writes its state on
//! the way out) and started again from that state; the deal must complete once it is
//! back, nothing paid twice, no account waiting behind a nonce gap, and the audit
//! clean.
//!
//! Needs root (network namespaces) and iproute2; where namespaces cannot be made,
//! the test says why and does nothing else.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wallets::{Address, Amount, KdfStrength, KeystoreFile, Wallet};

use crate::up::{deployment, field, lisbon_itinerary, Up, OWNER_KEYSTORE, PASSWORD_ENV};

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

/// anvil serving on host 0's address, port 8545, keeping its state in a file when
/// given one; killed on drop.
struct Node(Child);

impl Node {
    const HOST: usize = 0;

    fn url() -> String {
        format!("http://{}:8545", Hosts::ip(Self::HOST))
    }

    fn start(hosts: &Hosts, state: Option<&Path>) -> Self {
        let mut command = hosts.command(Self::HOST, registry::anvil::foundry_bin("anvil").unwrap());
        command.args(["--host", &Hosts::ip(Self::HOST), "--port", "8545"]);
        if let Some(state) = state {
            // Loaded at start when it exists, written on the way out.
            command.arg("--state").arg(state);
        }
        let mut child = command
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
        assert!(listening, "anvil did not start");
        Self(child)
    }

    /// SIGTERM, and wait for it to write its state and exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.0.wait();
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

/// One host's deployment.
struct Site {
    name: &'static str,
    dir: PathBuf,
    config: PathBuf,
    address: Address,
}

impl Site {
    fn journal(&self) -> PathBuf {
        self.dir.join(format!("state/agents/{}/journal", self.name))
    }
}

/// The tests' deployment: anvil on host 0; the operator's contracts; `agora up` on
/// hosts 1 (travel), 2 (weather-a at 1.20 USDC) and 3 (weather-b at 0.95 USDC).
/// Fields drop in order: the agents, the node, the files, then the hosts.
struct Cluster {
    ups: Vec<Up>,
    node: Node,
    dir: tempfile::TempDir,
    hosts: Hosts,
    addresses: PathBuf,
    stablecoin: String,
    sites: Vec<Site>,
    /// What the travel agent was given.
    funds: Amount,
}

impl Cluster {
    /// The deployment, running, with anvil keeping its state in a file when `keep_state`;
    /// `None` where network namespaces cannot be made.
    fn start(keep_state: bool) -> Option<Self> {
        let hosts = Hosts::up(4)?;
        let dir = tempfile::tempdir().unwrap();
        let state = keep_state.then(|| dir.path().join("chain-state.json"));
        let node = Node::start(&hosts, state.as_deref());
        let url = Node::url();
        let network = format!("kind = \"rpc\"\nurl = \"{url}\"\nchain_id = 31337");

        // The operator: its own key, with ether on the chain (as a testnet's faucet or
        // an exchange would give it); it deploys and pays everyone else's gas.
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
        let operator_ks = operator.to_str().unwrap();
        let send_as_operator = |args: &[&str]| {
            let mut all = vec![
                "send",
                "--keystore",
                operator_ks,
                "--password-file",
                password_file,
            ];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--rpc-url", &url]);
            hosts.cast(1, &all);
        };
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

        // One deployment per host, each with its own keystores, listening on its
        // host's address.
        let plans: [(usize, &'static str, Option<&str>); 3] = [
            (1, "travel", None),
            (2, "weather-a", Some("1.20 USDC")),
            (3, "weather-b", Some("0.95 USDC")),
        ];
        let mut sites = Vec::new();
        let mut ups = Vec::new();
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
            send_as_operator(&["--value", "1ether", &address.to_string()]);
            sites.push(Site {
                name,
                dir: site,
                config,
                address,
            });
        }
        let funds = Amount::from_base_units(20_000_000);
        send_as_operator(&[
            &stablecoin,
            "mint(address,uint256)",
            &sites[0].address.to_string(),
            &funds.base_units().to_string(),
        ]);
        for (host, site) in (1..).zip(&sites) {
            ups.push(Up::spawn_in(
                Some(&hosts.ns(host)),
                &site.config,
                &site.dir.join("state"),
                &["--addresses", addresses.to_str().unwrap()],
            ));
        }
        for up in &ups {
            up.wait_line("all 1 agents are up", Duration::from_secs(180));
        }
        Some(Self {
            ups,
            node,
            dir,
            hosts,
            addresses,
            stablecoin,
            sites,
            funds,
        })
    }

    fn travel(&self) -> &Site {
        &self.sites[0]
    }

    /// `agora plan` on host 1, asked by the travel agent's owner.
    fn plan_command(&self, request: &str) -> Command {
        let travel = self.travel();
        let mut c = self.hosts.command(1, env!("CARGO_BIN_EXE_agora"));
        c.arg("plan")
            .arg(request)
            .arg("--config")
            .arg(&travel.config)
            .arg("--dir")
            .arg(travel.dir.join("state"))
            .arg("--keystore")
            .arg(travel.dir.join(OWNER_KEYSTORE))
            .args(["--password-env", PASSWORD_ENV, "--timeout", "900s"])
            .env(PASSWORD_ENV, "pw");
        c
    }

    /// The seller and price of a finished `agora plan`, which must have succeeded.
    fn deal_of(&self, plan: &std::process::Output) -> (Address, Amount) {
        let stdout = lisbon_itinerary(plan, &self.logs());
        let seller = field(&stdout, "seller:")
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        (seller, field(&stdout, "price:").parse().unwrap())
    }

    fn logs(&self) -> String {
        self.ups
            .iter()
            .map(Up::output)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stablecoin held by `who` on anvil, in base units.
    fn balance(&self, who: Address) -> u128 {
        base_units(&self.hosts.cast(
            2,
            &[
                "call",
                &self.stablecoin,
                "balanceOf(address)(uint256)",
                &who.to_string(),
                "--rpc-url",
                &Node::url(),
            ],
        ))
    }

    /// `who`'s nonce at `block` (`latest` or `pending`).
    fn nonce(&self, who: Address, block: &str) -> u64 {
        self.hosts
            .cast(
                2,
                &[
                    "nonce",
                    &who.to_string(),
                    "--block",
                    block,
                    "--rpc-url",
                    &Node::url(),
                ],
            )
            .parse()
            .unwrap()
    }

    /// `agora audit` of every host's journal against anvil must be clean.
    fn audit_is_clean(&self) {
        let audit = self
            .hosts
            .command(2, env!("CARGO_BIN_EXE_agora"))
            .arg("audit")
            .args(self.sites.iter().map(Site::journal))
            .args(["--rpc", &Node::url(), "--addresses"])
            .arg(&self.addresses)
            .output()
            .unwrap();
        assert!(
            audit.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        );
    }

    /// SIGTERM to every `agora up`; each must exit 0.
    fn stop(mut self) {
        for up in &mut self.ups {
            up.terminate();
        }
    }
}

/// How many entries of `kind` a journal has.
fn entries_of(journal: &Path, kind: &str) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_crosses_hosts_over_a_real_node() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(cluster) = Cluster::start(false) else {
        return;
    };
    // The trip, asked on host 1: the cheaper seller, on host 3, wins it, found
    // through the registry.
    let plan = cluster
        .plan_command("One day in Lisbon in July, please. I like the sea.")
        .output()
        .unwrap();
    let (seller, price) = cluster.deal_of(&plan);
    let weather_b = cluster.sites[2].address;
    assert_eq!(seller, weather_b);

    // Balances on anvil, to the base unit.
    assert_eq!(cluster.balance(weather_b), price.base_units());
    let travel = cluster.travel().address;
    assert_eq!(
        cluster.balance(travel),
        cluster.funds.base_units() - price.base_units()
    );
    assert_eq!(cluster.balance(cluster.sites[1].address), 0);
    cluster.audit_is_clean();
    cluster.stop();
}

/// The node stops while a deal is under way (its state written on the way out) and
/// comes back from that state two seconds later: the deal completes once it is back,
/// nothing is paid twice, no account is left with a nonce gap, and the audit is clean.
///
/// It found that the seller's settlement read `Stablecoin.authorizationState` once,
/// and a refused connection failed the deal at once; the agents' chain reads are now
/// retried while the node is unreachable, as their transactions are resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_goes_down_mid_trip_and_comes_back_with_its_state() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(mut cluster) = Cluster::start(true) else {
        return;
    };
    let weather_b = &cluster.sites[2];
    let (seller_address, seller_journal) = (weather_b.address, weather_b.journal());
    let first = cluster
        .plan_command("One day in Lisbon in July, please. I like the sea.")
        .output()
        .unwrap();
    let (seller, first_price) = cluster.deal_of(&first);
    assert_eq!(seller, seller_address);
    assert_eq!(entries_of(&seller_journal, "acceptance"), 1);

    // A second trip; the node goes down as soon as the seller hears the call for
    // proposals (after the travel agent's registry lookup, before the deal is paid),
    // writes its state on the way out, and comes back from it.
    let second = cluster
        .plan_command("Two days in Lisbon in July, please. I like food.")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while entries_of(&seller_journal, "cfp") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no second call for proposals\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    cluster.node.stop();
    let state = cluster.dir.path().join("chain-state.json");
    assert!(state.exists(), "anvil wrote no state");
    std::thread::sleep(Duration::from_secs(2));
    cluster.node = Node::start(&cluster.hosts, Some(&state));
    let second = second.wait_with_output().unwrap();
    let (seller, second_price) = cluster.deal_of(&second);
    assert_eq!(seller, seller_address);

    // Paid once each, to the base unit; the first deal survived the restart.
    assert_eq!(
        cluster.balance(seller_address),
        first_price.base_units() + second_price.base_units()
    );
    let travel = cluster.travel().address;
    assert_eq!(
        cluster.balance(travel),
        cluster.funds.base_units() - first_price.base_units() - second_price.base_units()
    );
    assert_eq!(entries_of(&seller_journal, "delivery"), 2);
    // Nothing waits behind a nonce gap.
    for site in &cluster.sites {
        assert_eq!(
            cluster.nonce(site.address, "pending"),
            cluster.nonce(site.address, "latest"),
            "{}",
            site.name
        );
    }
    cluster.audit_is_clean();
    cluster.stop();
}
