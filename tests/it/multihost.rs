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

/// The trips the tests ask for.
const ONE_DAY: &str = "One day in Lisbon in July, please. I like the sea.";
const TWO_DAYS: &str = "Two days in Lisbon in July, please. I like food.";

/// Every agent's port, on its host's address.
const AGENT_PORT: u16 = 7411;

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

    /// `hosts.sh COMMAND PREFIX ARGS...`, which must succeed.
    fn script(&self, command: &str, args: &[&str]) {
        let out = Command::new("bash")
            .args([HOSTS_SH, command, &self.prefix])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hosts.sh {command} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Plugs `host`'s cable into the switch, or pulls it out.
    fn link(&self, host: usize, up: bool) {
        self.script("link", &[&host.to_string(), if up { "up" } else { "down" }]);
    }

    /// `host`'s link drops `loss` % of the packets each way and carries at most
    /// `rate` (tc's notation) each way.
    fn impair(&self, host: usize, loss: u8, rate: &str) {
        self.script("impair", &[&host.to_string(), &loss.to_string(), rate]);
    }

    /// A clean link for `host` again.
    fn heal(&self, host: usize) {
        self.script("impair", &[&host.to_string(), "off"]);
    }

    /// SIGKILL to every process on `host`: the machine dies.
    fn kill(&self, host: usize) {
        self.script("kill", &[&host.to_string()]);
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

/// How a test's deployment differs from the plain one.
#[derive(Default)]
struct Setup {
    /// anvil keeps its state in a file, so that it can start again from it.
    keep_state: bool,
    /// Environment added to everything run on a host (1, 2 or 3): `agora up`, its
    /// agents, and on host 1 `agora plan`.
    env: Vec<(usize, &'static str, String)>,
    /// weather-b's agent directory (its store and journal) on a tmpfs of this many
    /// bytes.
    seller_tmpfs: Option<u64>,
    /// The travel agent gets 1,000 USDC, and its policy and its owner a daily budget
    /// as large (for a soak), instead of 20 USDC and daily budgets of 25 and 10.
    rich: bool,
}

impl Setup {
    /// A host's clock `offset` seconds off (libfaketime; monotonic clocks, and so
    /// timers, are left alone), or `None` where libfaketime is not installed.
    fn clock_off(mut self, host: usize, offset: i64) -> Option<Self> {
        let lib = Path::new(FAKETIME_LIB);
        if !lib.exists() {
            eprintln!("skipped: {FAKETIME_LIB} is missing (Debian package faketime)");
            return None;
        }
        self.env.push((host, "LD_PRELOAD", FAKETIME_LIB.to_owned()));
        self.env.push((host, "FAKETIME", format!("{offset:+}s")));
        self.env
            .push((host, "FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()));
        Some(self)
    }
}

/// libfaketime for multi-threaded programs, as Debian installs it.
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A tmpfs of its own at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "agora-test"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Self(dir.to_owned())
    }

    /// Fills it with a file of its own until the disk is full; returns the file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The tests' deployment: anvil on host 0; the operator's contracts; `agora up` on
/// hosts 1 (travel), 2 (weather-a at 1.20 USDC) and 3 (weather-b at 0.95 USDC).
/// Fields drop in order: the agents, the node, the tmpfs, the files, then the hosts.
struct Cluster {
    /// `agora up` on hosts 1, 2 and 3; `None` while a host is down.
    ups: Vec<Option<Up>>,
    node: Node,
    tmpfs: Option<Tmpfs>,
    dir: tempfile::TempDir,
    hosts: Hosts,
    addresses: PathBuf,
    stablecoin: String,
    sites: Vec<Site>,
    /// What the travel agent was given.
    funds: Amount,
    env: Vec<(usize, &'static str, String)>,
}

impl Cluster {
    /// The deployment as `setup` says, running; `None` where network namespaces
    /// cannot be made.
    fn start(setup: Setup) -> Option<Self> {
        let hosts = Hosts::up(4)?;
        let dir = tempfile::tempdir().unwrap();
        let state = setup
            .keep_state
            .then(|| dir.path().join("chain-state.json"));
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
        // host's address, on the same port each time it starts.
        let plans: [(usize, &'static str, Option<&str>); 3] = [
            (1, "travel", None),
            (2, "weather-a", Some("1.20 USDC")),
            (3, "weather-b", Some("0.95 USDC")),
        ];
        let mut sites = Vec::new();
        for (host, name, price) in plans {
            let site = dir.path().join(format!("host{host}"));
            std::fs::create_dir_all(&site).unwrap();
            let config = deployment(&site, &network, &[(name, price)]);
            let mut text = std::fs::read_to_string(&config)
                .unwrap()
                .replace("127.0.0.1:0", &format!("{}:{AGENT_PORT}", Hosts::ip(host)));
            if setup.rich {
                text = text
                    .replace("daily = \"25 USDC\"", "daily = \"1000 USDC\"")
                    .replace("daily = \"10 USDC\"", "daily = \"1000 USDC\"");
            }
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
        let funds = Amount::from_base_units(if setup.rich {
            1_000_000_000
        } else {
            20_000_000
        });
        send_as_operator(&[
            &stablecoin,
            "mint(address,uint256)",
            &sites[0].address.to_string(),
            &funds.base_units().to_string(),
        ]);
        let tmpfs = setup
            .seller_tmpfs
            .map(|bytes| Tmpfs::mount(&sites[2].dir.join("state/agents/weather-b"), bytes));
        let mut cluster = Self {
            ups: Vec::new(),
            node,
            tmpfs,
            dir,
            hosts,
            addresses,
            stablecoin,
            sites,
            funds,
            env: setup.env,
        };
        for host in 1..=3 {
            cluster.ups.push(Some(cluster.spawn_up(host)));
        }
        for up in cluster.ups.iter().flatten() {
            up.wait_line("all 1 agents are up", Duration::from_secs(180));
        }
        Some(cluster)
    }

    /// The site of `host` (1 travel, 2 weather-a, 3 weather-b).
    fn site(&self, host: usize) -> &Site {
        &self.sites[host - 1]
    }

    /// The environment `setup` gave `host`.
    fn env_of(&self, host: usize) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter(|(h, _, _)| *h == host)
            .map(|(_, k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// `agora up` on `host`, on its site's state.
    fn spawn_up(&self, host: usize) -> Up {
        let site = self.site(host);
        Up::spawn_in(
            Some(&self.hosts.ns(host)),
            &site.config,
            &site.dir.join("state"),
            &["--addresses", self.addresses.to_str().unwrap()],
            &self.env_of(host),
        )
    }

    /// SIGKILL to every process on `host`, as if the machine died.
    fn kill_host(&mut self, host: usize) {
        self.hosts.kill(host);
        // Reaps it; the pids it would kill are already dead.
        drop(self.ups[host - 1].take());
    }

    /// `agora up` on `host` again, on the state it left, without the environment
    /// `setup` gave it (a crash point, say); returns once its agent is up.
    fn restart_host(&mut self, host: usize) {
        assert!(self.ups[host - 1].is_none(), "host {host} is still up");
        self.env.retain(|(h, _, _)| *h != host);
        let up = self.spawn_up(host);
        up.wait_line("all 1 agents are up", Duration::from_secs(180));
        self.ups[host - 1] = Some(up);
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
            .env(PASSWORD_ENV, "pw")
            .envs(self.env_of(1));
        c
    }

    /// `agora plan` of `request`, run to its end: its deal's seller and price (it
    /// must have succeeded).
    fn trip(&self, request: &str) -> (Address, Amount) {
        self.deal_of(&self.plan_command(request).output().unwrap())
    }

    /// `agora plan` of `request`, started, its output piped; see [`Cluster::finish_trip`].
    fn start_trip(&self, request: &str) -> Child {
        self.plan_command(request)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The seller and price of a started trip, once it has ended (successfully).
    fn finish_trip(&self, plan: Child) -> (Address, Amount) {
        self.deal_of(&plan.wait_with_output().unwrap())
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
            .flatten()
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

    /// `agora audit --json` of every host's journal against anvil: whether it found
    /// nothing wrong, the report, and its output for messages.
    fn audit(&self) -> (bool, serde_json::Value, String) {
        let audit = self
            .hosts
            .command(2, env!("CARGO_BIN_EXE_agora"))
            .arg("audit")
            .args(self.sites.iter().map(Site::journal))
            .args(["--rpc", &Node::url(), "--json", "--addresses"])
            .arg(&self.addresses)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&audit.stdout);
        let text = format!("{stdout}\n{}", String::from_utf8_lossy(&audit.stderr));
        let report = serde_json::from_str(&stdout).unwrap_or_default();
        (audit.status.success(), report, text)
    }

    /// The audit must be clean, and every deal in the journals finished (received
    /// by the buyer, matched on both sides): none left hanging. Returns the report.
    fn audit_is_clean(&self) -> serde_json::Value {
        let (clean, report, text) = self.audit();
        assert!(clean, "{text}");
        assert!(all_received(&report), "{text}");
        report
    }

    /// SIGTERM to every `agora up`; each must exit 0.
    fn stop(mut self) {
        for up in self.ups.iter_mut().flatten() {
            up.terminate();
        }
    }
}

impl Cluster {
    /// Polls `done` every 2 ms until it holds; fails the test with everyone's logs
    /// after ten minutes.
    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited in vain for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The deals' `prices` went from the travel agent to `seller`, each once, and
    /// nothing to anyone else; no account waits behind a nonce gap; the audit is
    /// clean.
    fn paid_once(&self, seller: Address, prices: &[Amount]) {
        let total = prices.iter().map(|p| p.base_units()).sum();
        self.paid_exactly(&[(seller, total)]);
    }

    /// Each seller of `paid` holds exactly its base units and every other seller
    /// none, the travel agent the rest of its funds; no account waits behind a nonce
    /// gap; the audit is clean.
    fn paid_exactly(&self, paid: &[(Address, u128)]) {
        let total: u128 = paid.iter().map(|(_, units)| units).sum();
        assert_eq!(
            self.balance(self.travel().address),
            self.funds.base_units() - total
        );
        for site in &self.sites[1..] {
            let units = paid
                .iter()
                .find(|(a, _)| *a == site.address)
                .map_or(0, |(_, units)| *units);
            assert_eq!(self.balance(site.address), units, "{}", site.name);
        }
        for site in &self.sites {
            assert_eq!(
                self.nonce(site.address, "pending"),
                self.nonce(site.address, "latest"),
                "{}",
                site.name
            );
        }
        self.audit_is_clean();
    }
}

/// Whether an audit report has deals, each received by its buyer and matched.
fn all_received(report: &serde_json::Value) -> bool {
    report["deals"].as_array().is_some_and(|deals| {
        !deals.is_empty()
            && deals
                .iter()
                .all(|d| d["stage"] == "received" && d["matched"] == true)
    })
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
    let Some(cluster) = Cluster::start(Setup::default()) else {
        return;
    };
    // The trip, asked on host 1: the cheaper seller, on host 3, wins it, found
    // through the registry.
    let (seller, price) = cluster.trip(ONE_DAY);
    let weather_b = cluster.sites[2].address;
    assert_eq!(seller, weather_b);
    // Balances on anvil, to the base unit.
    cluster.paid_once(weather_b, &[price]);
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
    let Some(mut cluster) = Cluster::start(Setup {
        keep_state: true,
        ..Setup::default()
    }) else {
        return;
    };
    let weather_b = &cluster.sites[2];
    let (seller_address, seller_journal) = (weather_b.address, weather_b.journal());
    let (seller, first_price) = cluster.trip(ONE_DAY);
    assert_eq!(seller, seller_address);
    assert_eq!(entries_of(&seller_journal, "acceptance"), 1);

    // A second trip; the node goes down as soon as the seller hears the call for
    // proposals (after the travel agent's registry lookup, before the deal is paid),
    // writes its state on the way out, and comes back from it.
    let second = cluster.start_trip(TWO_DAYS);
    cluster.wait_for("a second call for proposals", || {
        entries_of(&seller_journal, "cfp") >= 2
    });
    cluster.node.stop();
    let state = cluster.dir.path().join("chain-state.json");
    assert!(state.exists(), "anvil wrote no state");
    std::thread::sleep(Duration::from_secs(2));
    cluster.node = Node::start(&cluster.hosts, Some(&state));
    let (seller, second_price) = cluster.finish_trip(second);
    assert_eq!(seller, seller_address);

    // Paid once each, to the base unit; the first deal survived the restart.
    assert_eq!(entries_of(&seller_journal, "delivery"), 2);
    cluster.paid_once(seller_address, &[first_price, second_price]);
    cluster.stop();
}

/// The seller's host dies while it works on a paid deal: every process on it gets
/// SIGKILL after the seller settled the buyer's payment on chain and journaled it,
/// before it delivered (the seller itself dies at that step, at the test build's
/// crash point `seller.journaled`; the test kills the rest of the host). The host
/// starts again on the same disk, at the same address; the buyer, whose ask failed
/// with its connection, sends the same payment again (on the connection it dials
/// anew), and the seller, finding it settled, delivers: one payment, one delivery, a
/// clean audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sellers_host_dies_during_delivery_and_the_deal_completes_after() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(mut cluster) = Cluster::start(Setup {
        env: vec![(3, "AGORA_CRASH_AT", "seller.journaled".to_owned())],
        ..Setup::default()
    }) else {
        return;
    };
    let weather_b = &cluster.sites[2];
    let (seller_address, seller_journal) = (weather_b.address, weather_b.journal());
    let trip = cluster.start_trip(ONE_DAY);
    cluster.wait_for("the seller's payment entry", || {
        entries_of(&seller_journal, "payment") >= 1
    });
    cluster.kill_host(3);
    assert_eq!(entries_of(&seller_journal, "delivery"), 0);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart_host(3);
    let (seller, price) = cluster.finish_trip(trip);
    assert_eq!(seller, seller_address);
    assert_eq!(entries_of(&seller_journal, "delivery"), 1);
    cluster.paid_once(seller_address, &[price]);
    cluster.stop();
}

/// The seller's host loses its cable mid-deal (once the agreement is made, before
/// the payment is settled) for five seconds, and gets it back lossy and slow: 10 %
/// of the packets dropped each way and 256 kbit/s each way (the kernel here has no
/// netem; TCP's retransmissions make the delay). The deal completes once the link
/// is back, a second one over the bad link too, each paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_mid_deal_heals_into_a_lossy_slow_link() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(cluster) = Cluster::start(Setup::default()) else {
        return;
    };
    let weather_b = &cluster.sites[2];
    let (seller_address, seller_journal) = (weather_b.address, weather_b.journal());
    let first = cluster.start_trip(ONE_DAY);
    cluster.wait_for("the agreement", || {
        entries_of(&seller_journal, "acceptance") >= 1
    });
    cluster.hosts.link(3, false);
    std::thread::sleep(Duration::from_secs(5));
    cluster.hosts.impair(3, 10, "256kbit");
    cluster.hosts.link(3, true);
    let (seller, first_price) = cluster.finish_trip(first);
    assert_eq!(seller, seller_address);

    let (seller, second_price) = cluster.trip(TWO_DAYS);
    assert_eq!(seller, seller_address);
    cluster.hosts.heal(3);
    assert_eq!(entries_of(&seller_journal, "delivery"), 2);
    cluster.paid_once(seller_address, &[first_price, second_price]);
    cluster.stop();
}

/// The hosts' clocks disagree (libfaketime): the buyer's runs 25 s behind, weather-a's
/// 25 s ahead (50 s apart, inside the 60 s a message lives), and weather-b's, the
/// cheaper seller, 90 s ahead (the buyer's messages reach it already expired). The
/// trip is bought from weather-a and paid once; weather-b, which could not hear the
/// call, is paid nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_apart_within_a_messages_life_still_trade() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(setup) = Setup::default()
        .clock_off(1, -25)
        .and_then(|s| s.clock_off(2, 25))
        .and_then(|s| s.clock_off(3, 90))
    else {
        return;
    };
    let Some(cluster) = Cluster::start(setup) else {
        return;
    };
    let (seller, price) = cluster.trip(ONE_DAY);
    let weather_a = cluster.sites[1].address;
    assert_eq!(seller, weather_a);
    let logs = cluster.logs();
    assert!(logs.contains("expired at"), "{logs}");
    cluster.paid_once(weather_a, &[price]);
    cluster.stop();
}

/// weather-b's disk (a 16 MiB tmpfs holding its store and journal) is full when a
/// trip calls for proposals: it cannot take the deal, says why, and the trip is
/// bought from weather-a. With room again, it sells the next trip; started again,
/// its store opens, and its journal audits clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_costs_the_seller_the_deal_and_nothing_else() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let Some(mut cluster) = Cluster::start(Setup {
        seller_tmpfs: Some(16 << 20),
        ..Setup::default()
    }) else {
        return;
    };
    let (weather_a, weather_b) = (cluster.sites[1].address, cluster.sites[2].address);
    let filler = cluster.tmpfs.as_ref().unwrap().fill();
    let (seller, first_price) = cluster.trip(ONE_DAY);
    assert_eq!(seller, weather_a);
    // The seller said why, as a full disk; nobody called the journal corrupt.
    let seller_log = cluster.ups[2].as_ref().unwrap().output();
    assert!(
        seller_log.contains("journal append failed")
            && seller_log.contains("No space left on device"),
        "{seller_log}"
    );
    let logs = cluster.logs();
    assert!(!logs.contains("corrupt"), "{logs}");

    std::fs::remove_file(filler).unwrap();
    let (seller, second_price) = cluster.trip(TWO_DAYS);
    assert_eq!(seller, weather_b);
    // Its store opens again.
    cluster.ups[2].take().unwrap().terminate();
    cluster.restart_host(3);
    cluster.paid_exactly(&[
        (weather_a, first_price.base_units()),
        (weather_b, second_price.base_units()),
    ]);
    cluster.stop();
}

/// A deterministic xorshift: a soak's kills can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A soak: trips one after another for `AGORA_SOAK_SECS` seconds (120 unless set),
/// and during about half of them one agent process (travel, weather-a or weather-b,
/// drawn at random) is killed with SIGKILL at a random moment of the trip's first
/// 6 s; `agora up` starts it again. A trip whose travel agent was killed is
/// abandoned: its `agora plan` must end by itself, saying the connection was lost
/// (or succeed, when the answer came just before the kill); the restarted travel
/// agent finishes the deal it had under way. Afterwards every deal in the
/// journals has been received (none lost), each seller holds exactly the prices of
/// its deals and the travel agent the rest (none paid twice), no account has a nonce
/// gap, the audit is clean, and no trip failed but the abandoned ones.
/// `AGORA_SOAK_SEED` replays a run; the seed is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_trips_with_agents_killed_at_random() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    let secs: u64 = std::env::var("AGORA_SOAK_SECS")
        .ok()
        .map_or(120, |s| s.parse().expect("AGORA_SOAK_SECS: seconds"));
    let seed: u64 = std::env::var("AGORA_SOAK_SEED").ok().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        },
        |s| s.parse().expect("AGORA_SOAK_SEED: a number"),
    );
    eprintln!("soak: {secs} s, AGORA_SOAK_SEED={seed}");
    let Some(cluster) = Cluster::start(Setup {
        rich: true,
        ..Setup::default()
    }) else {
        return;
    };
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    let (mut trips, mut planned, mut abandoned) = (0u32, 0u32, 0u32);
    let mut kills = [0u32; 3];
    while started.elapsed() < Duration::from_secs(secs) {
        trips += 1;
        let request = format!(
            "{} days in Lisbon in July, please. I like {}.",
            1 + rng.next() % 3,
            ["the sea", "food", "museums", "walking"][(rng.next() % 4) as usize]
        );
        let mut plan = cluster.start_trip(&request);
        let mut killed = None;
        if rng.next() % 2 == 0 {
            let victim = (rng.next() % 3) as usize;
            // A trip here takes 5–15 s, its deal done in the first 3 or so.
            let at = std::time::Instant::now() + Duration::from_millis(rng.next() % 6_000);
            while std::time::Instant::now() < at && plan.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let site = &cluster.sites[victim];
            let pid =
                std::fs::read_to_string(site.dir.join(format!("state/agents/{}/pid", site.name)))
                    .unwrap();
            if plan.try_wait().unwrap().is_none()
                && Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status()
                    .unwrap()
                    .success()
            {
                kills[victim] += 1;
                killed = Some(victim);
            }
        }
        let out = plan.wait_with_output().unwrap();
        if killed == Some(0) && !out.status.success() {
            // The plan's connection died with its travel agent: `agora plan` says so
            // and ends (its answer can no longer come), instead of waiting out its
            // 900 s. (A plan answered just before the kill succeeds.)
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("connection lost before the answer came"),
                "trip {trips}: the plan whose travel agent was killed failed otherwise:\n{stderr}"
            );
            abandoned += 1;
        } else {
            assert!(
                out.status.success(),
                "trip {trips} failed (killed: {killed:?}):\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                cluster.logs()
            );
            lisbon_itinerary(&out, "");
            planned += 1;
        }
        if let Some(victim) = killed {
            // Back before the next trip.
            let name = cluster.sites[victim].name;
            cluster.ups[victim]
                .as_ref()
                .unwrap()
                .wait_line(&format!("agent {name:<10} ready"), Duration::from_secs(180));
        }
    }
    let elapsed = started.elapsed();
    assert!(
        kills.iter().sum::<u32>() > 0,
        "no agent was killed in {trips} trips"
    );

    // The deals under way when their buyer or seller was killed finish on their own:
    // a restarted buyer resumes them, a buyer whose seller died pays again once its
    // wait runs out, and the restarted seller delivers.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let report = loop {
        let (clean, report, text) = cluster.audit();
        if clean && all_received(&report) {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deals left unfinished:\n{text}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_secs(5));
    };
    // What the journals say each seller earned is what it holds on chain.
    let deals = report["deals"].as_array().unwrap();
    let earned = |seller: Address| -> u128 {
        deals
            .iter()
            .filter(|d| d["seller"].as_str().unwrap().parse::<Address>().unwrap() == seller)
            .map(|d| d["price"].as_str().unwrap().parse::<u128>().unwrap())
            .sum()
    };
    let sellers = [cluster.sites[1].address, cluster.sites[2].address];
    let earned = sellers.map(|s| (s, earned(s)));
    cluster.paid_exactly(&earned);
    let usdc = |units: u128| Amount::from_base_units(units);
    eprintln!(
        "soak: {trips} trips in {:.0} s ({planned} planned, {abandoned} abandoned with their \
         travel agent); {} kills (travel {}, weather-a {}, weather-b {}); {} deals, each \
         received and paid once (weather-a {}, weather-b {}); AGORA_SOAK_SEED={seed}",
        elapsed.as_secs_f64(),
        kills.iter().sum::<u32>(),
        kills[0],
        kills[1],
        kills[2],
        deals.len(),
        usdc(earned[0].1),
        usdc(earned[1].1),
    );
    cluster.stop();
}
