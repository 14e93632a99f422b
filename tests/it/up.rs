//! `agora up` as a subprocess: the agents of a test agents.toml on the embedded chain
//! (or a node by URL), each in its own process on loopback. A weather agent killed
//! with SIGKILL mid-run loses the next deal to another seller and is restarted by the
//! supervisor; SIGTERM stops everything and exits 0. Config and usage mistakes are
//! clear errors.
//!
//! Every agent listens on port 0 and `agora up` reports the address it got (its
//! `ready` line, up.json, the registry). The tests wait on what `agora up` says on
//! its standard output and on its exit, each wait bounded by a deadline; no fixed
//! delays.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wallets::{KdfStrength, KeystoreFile, Wallet};

pub(crate) const PASSWORD_ENV: &str = "AGORA_UP_TEST_PASSWORD";

/// The owner's keystore in a [`deployment`]: the travel agent's principal.
pub(crate) const OWNER_KEYSTORE: &str = "keys/owner.json";

/// Writes light keystores for `names` and the owner, and an agents.toml in which the
/// owner is the travel agent's principal; returns the config path.
pub(crate) fn deployment(dir: &Path, network: &str, names: &[(&str, Option<&str>)]) -> PathBuf {
    let mut toml = format!("[network]\n{network}\n");
    let owner = Wallet::random();
    KeystoreFile::encrypt(&owner, b"pw", KdfStrength::Light)
        .unwrap()
        .write_new(&dir.join(OWNER_KEYSTORE))
        .unwrap();
    for (name, price) in names {
        let ks = dir.join(format!("keys/{name}.json"));
        KeystoreFile::encrypt(&Wallet::random(), b"pw", KdfStrength::Light)
            .unwrap()
            .write_new(&ks)
            .unwrap();
        // Port 0: each agent's host takes a free port and reports it.
        toml.push_str(&format!(
            "\n[agents.{name}]\nkeystore = \"keys/{name}.json\"\npassword_env = \"{PASSWORD_ENV}\"\nlisten = \"127.0.0.1:0\"\n"
        ));
        match price {
            Some(price) => toml.push_str(&format!(
                "skills = [\"weather\"]\nservices = [{{ skill = \"weather.forecast\", price = \"{price}\", unit = \"forecast\" }}]\n"
            )),
            None => toml.push_str(&format!(
                "skills = [\"travel\", \"llm\"]\n\n[agents.travel.policy]\nper_deal = \"5 USDC\"\ndaily = \"25 USDC\"\n\n\
                 [agents.travel.principals.owner]\naddress = \"{}\"\nskills = [\"travel.Plan\"]\n\
                 max_per_request = \"2 USDC\"\ndaily = \"10 USDC\"\n",
                owner.address()
            )),
        }
    }
    let path = dir.join("agents.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

#[cfg_attr(not(feature = "llm"), allow(dead_code))] // used by the model test
fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// `GET /health` on an agent's host.
fn healthy(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n")
}

/// A running `agora up`: its stdout lines as they come, its stderr in a file; killed
/// (with its agents) on drop if the test fails midway.
pub(crate) struct Up {
    child: Child,
    /// The lines of its standard output not read yet, in order.
    lines: Mutex<Receiver<String>>,
    /// The lines read so far.
    seen: Mutex<Vec<String>>,
    stderr: PathBuf,
    state: PathBuf,
}

impl Up {
    fn spawn(config: &Path, state: &Path, extra: &[&str]) -> Self {
        Self::spawn_in(None, config, state, extra, &[])
    }

    /// As [`Up::spawn`], in network namespace `netns` when one is given, with `env`
    /// added to its environment (and so its agents').
    pub(crate) fn spawn_in(
        netns: Option<&str>,
        config: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Self {
        let stderr = state.with_extension("stderr");
        let mut command = match netns {
            Some(ns) => {
                // `ip netns exec` execs the program: the pid is agora's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_agora")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_agora")),
        };
        let mut child = command
            .arg("up")
            .arg("--config")
            .arg(config)
            .arg("--dir")
            .arg(state)
            .args(["--chain-listen", "127.0.0.1:0"])
            // Every test's dashboard on a free port of its own.
            .args(["--dashboard", "127.0.0.1:0"])
            .args(extra)
            .env(PASSWORD_ENV, "pw")
            .env("AGORA_MODEL_CACHE", "/var/cache/agora/models")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Appended to: a host started again on the same state keeps what it said.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&stderr)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: Mutex::new(lines),
            seen: Mutex::default(),
            stderr,
            state: state.to_owned(),
        }
    }

    /// Everything it said so far (the lines that already came), and its stderr.
    pub(crate) fn output(&self) -> String {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(self.lines.lock().unwrap().try_iter());
        format!(
            "stdout:\n{}\nstderr:\n{}",
            seen.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for the next line that contains `needle`, and returns it; fails the test
    /// when none came within `limit` (or `agora up` ended first).
    pub(crate) fn wait_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.lines.lock().unwrap().recv_timeout(left);
            match next {
                Ok(line) => {
                    self.seen.lock().unwrap().push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line with {needle:?} within {limit:?}\n{}",
                        self.output()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "agora up ended without saying {needle:?}\n{}",
                        self.output()
                    )
                }
            }
        }
    }

    /// SIGTERM, then the exit status must be success within a minute.
    pub(crate) fn terminate(&mut self) {
        let status = crate::stop_child(&mut self.child, "-TERM", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("agora up did not stop\n{}", self.output()));
        assert!(status.success(), "{status}\n{}", self.output());
    }

    #[cfg_attr(not(feature = "llm"), allow(dead_code))] // used by the model test
    fn pid_of(&self, agent: &str) -> Option<u32> {
        std::fs::read_to_string(self.state.join(format!("agents/{agent}/pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(dir) = std::fs::read_dir(self.state.join("agents")) {
            for entry in dir.flatten() {
                if let Some(pid) = std::fs::read_to_string(entry.path().join("pid"))
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standard output of an `agora plan` that must have succeeded with an itinerary
/// for Lisbon; `context` (the deployment's output) goes into the failure message.
#[cfg(feature = "llm")]
pub(crate) fn lisbon_itinerary(out: &std::process::Output, context: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{context}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Itinerary for Lisbon"), "{stdout}");
    stdout
}

#[cfg_attr(not(feature = "llm"), allow(dead_code))] // used by the model test
pub(crate) fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
        .trim()
}

#[cfg(feature = "llm")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_survives_a_killed_weather_agent_and_stops_cleanly() {
    let _model = crate::MODEL_SUBPROCESS.lock().await;
    use registry::chain::{self, Deployment};
    use registry::discovery::Discovery;
    use wallets::{Address, Amount};

    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "kind = \"embedded\"",
        &[
            ("travel", None),
            ("weather-a", Some("1.20 USDC")),
            ("weather-b", Some("0.95 USDC")),
            ("weather-c", Some("1.50 USDC")),
        ],
    );
    let state = dir.path().join("state");
    let up = Up::spawn(&config, &state, &["--restart-delay", "1s"]);
    let dashboard = up
        .wait_line("dashboard: ", Duration::from_secs(180))
        .trim_start_matches("dashboard: ")
        .to_owned();
    up.wait_line("all 4 agents are up", Duration::from_secs(180));
    let started: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("up.json")).unwrap()).unwrap();
    let endpoint = |name: &str| {
        started["agents"][name]["endpoint"]
            .as_str()
            .unwrap()
            .trim_start_matches("ws://")
            .to_owned()
    };
    for name in ["travel", "weather-a", "weather-b", "weather-c"] {
        assert!(healthy(&endpoint(name)), "{name}\n{}", up.output());
    }

    let plan_as = |keystore: &Path, request: &str| {
        Command::new(env!("CARGO_BIN_EXE_agora"))
            .arg("plan")
            .arg(request)
            .arg("--config")
            .arg(&config)
            .arg("--dir")
            .arg(&state)
            .arg("--keystore")
            .arg(keystore)
            .args(["--password-env", PASSWORD_ENV])
            .env(PASSWORD_ENV, "pw")
            // A bound, not a wait: a trip is minutes of inference on two busy cores
            // (one took over five on a loaded 2-core machine).
            .args(["--timeout", "900s"])
            .output()
            .unwrap()
    };
    let plan = |request: &str| {
        let out = plan_as(&dir.path().join(OWNER_KEYSTORE), request);
        let stdout = lisbon_itinerary(&out, &up.output());
        let seller = field(&stdout, "seller:").to_owned();
        let price: Amount = field(&stdout, "price:").parse().unwrap();
        let tx = field(&stdout, "tx:").to_owned();
        (seller, price, tx)
    };

    // The dashboard, in headless Chromium, shows the four agents ready, and no deal.
    let browser = crate::browser::Browser::start().await;
    browser.goto(&dashboard).await.unwrap();
    crate::browser::wait_for_js(
        &browser,
        "return document.querySelectorAll('#agents tbody tr .status-ready').length === 4",
    )
    .await;
    for name in ["travel", "weather-a", "weather-b", "weather-c"] {
        let row = browser
            .find(fantoccini::Locator::Css(&format!(
                "#agents tr[data-agent='{name}']"
            )))
            .await
            .unwrap();
        assert!(row.text().await.unwrap().contains("ready"), "{name}");
    }
    // The travel agent's funds, read from the chain.
    crate::browser::wait_for_js(
        &browser,
        "return document.querySelector(\"#money tr[data-agent='travel']\").textContent.includes('100.00 USDC')",
    )
    .await;
    assert_eq!(
        browser
            .execute("return document.querySelectorAll('.deal').length", vec![])
            .await
            .unwrap(),
        0
    );
    crate::browser::full_page_screenshot(&browser, "dashboard-agents").await;
    // A mark on this document: it is still there after the trip only if the page was
    // not reloaded.
    browser
        .execute("window.agoraSamePage = true; return true", vec![])
        .await
        .unwrap();

    // A first trip: the cheapest weather agent wins it (and the travel agent now
    // holds a connection to it).
    let (first_seller, first_price, first_tx) =
        plan("One day in Lisbon in July, please. I like the sea.");
    assert!(first_seller.starts_with("weather-b "), "{first_seller}");

    // The deal appears on the open page by itself (Server-Sent Events): its
    // transaction hash in its timeline, and the deal through to the receipt.
    let deal_shown = format!(
        "return window.agoraSamePage === true && [...document.querySelectorAll('.deal[data-stage=\"receipt\"] .tx')].some(e => e.textContent === '{first_tx}')"
    );
    crate::browser::wait_for_js(&browser, &deal_shown).await;
    let deal = browser
        .find(fantoccini::Locator::Css(".deal[data-stage='receipt']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [
        "travel → weather-b",
        &first_price.to_string(),
        "payment",
        "delivery",
        "receipt",
    ] {
        assert!(deal.contains(shown), "{shown:?} not in the deal:\n{deal}");
    }
    // The journals' audit against the chain catches up and is clean.
    crate::browser::wait_for_js(
        &browser,
        "return document.getElementById('audit-line').textContent.includes(': clean')",
    )
    .await;
    crate::browser::full_page_screenshot(&browser, "dashboard-deal").await;
    browser.close().await;

    // Regression: anyone who reached the travel agent's port could spend its budget.
    // A fresh identity (`agora wallet new`) is no principal: refused with the reason,
    // and nothing is spent.
    let rpc = started["rpcUrl"].as_str().unwrap();
    let addresses: registry::chain::Addresses = serde_json::from_str(
        &std::fs::read_to_string(started["addresses"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let client = chain::connect(rpc, Arc::new(Wallet::random()))
        .await
        .unwrap();
    let contracts = Deployment::at(client, &addresses);
    let travel_address: Address = started["agents"]["travel"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let before = contracts.balance_of(travel_address).await.unwrap();
    let stranger = dir.path().join("stranger.json");
    let made = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "wallet",
            "new",
            "--light",
            "--password-env",
            PASSWORD_ENV,
            "--keystore",
        ])
        .arg(&stranger)
        .env(PASSWORD_ENV, "pw")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let refused = plan_as(&stranger, "One day in Porto in July, please.");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a stranger got a trip planned");
    assert!(
        stderr.contains("is not a principal of this agent"),
        "{stderr}"
    );
    assert_eq!(contracts.balance_of(travel_address).await.unwrap(), before);

    // kill -9 the cheapest weather agent mid-run. Its keystore is moved away first,
    // so the supervisor's restarts fail (and back off) until the test puts it back
    // after the next trip is bought: the agent is down during the call however slow
    // the machine is.
    let keystore = dir.path().join("keys/weather-b.json");
    let moved = keystore.with_extension("json.away");
    std::fs::rename(&keystore, &moved).unwrap();
    let victim = up.pid_of("weather-b").unwrap();
    signal(victim, "-9");
    up.wait_line(
        "weather-b  exited (killed by SIGKILL)",
        Duration::from_secs(60),
    );
    // The supervisor reaped it before it said so.
    assert!(!alive(victim));
    // A restart without its keystore fails.
    up.wait_line("weather-b  exited (exit code", Duration::from_secs(60));

    // The next trip goes to another seller.
    let (seller_line, price, _) =
        plan("Two days in Lisbon in July, please. I like food and museums.");
    let seller_name = seller_line.split_whitespace().next().unwrap();
    assert!(
        ["weather-a", "weather-c"].contains(&seller_name),
        "the deal went to {seller_line}\n{}",
        up.output()
    );
    let seller: Address = seller_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();

    // Paid on chain: the seller holds exactly the price, the killed agent only the
    // first trip's.
    assert_eq!(contracts.balance_of(seller).await.unwrap(), price);
    let victim_address: Address = started["agents"]["weather-b"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        contracts.balance_of(victim_address).await.unwrap(),
        first_price
    );

    // `agora audit` of the journals of both deals, against the running chain, is clean.
    let journal = |name: &str| state.join(format!("agents/{name}/journal"));
    let audit = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("audit")
        .args([
            journal("travel"),
            journal("weather-b"),
            journal(seller_name),
        ])
        .args(["--rpc", rpc, "--addresses"])
        .arg(started["addresses"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    // The supervisor brings the killed agent back once it has its keystore again
    // (after at most the longest restart delay, 30 s): a new process, on the port it
    // got now, healthy, and registered at that endpoint.
    std::fs::rename(&moved, &keystore).unwrap();
    let ready = up.wait_line("weather-b  ready", Duration::from_secs(180));
    let mut words = ready.split_whitespace().skip(3);
    assert_eq!(words.next(), Some("pid"), "{ready}");
    let restarted: u32 = words.next().unwrap().parse().unwrap();
    let url = words.next().unwrap().to_owned();
    assert_ne!(restarted, victim);
    assert_eq!(up.pid_of("weather-b"), Some(restarted));
    assert!(
        healthy(url.trim_start_matches("ws://")),
        "{url}\n{}",
        up.output()
    );
    let registry = Discovery::open(dir.path().join("discovery"), rpc, addresses)
        .await
        .unwrap();
    registry.sync().await.unwrap();
    assert_eq!(
        registry.agent_at(victim_address).unwrap().unwrap().endpoint,
        url,
        "the restarted agent's endpoint is not the registered one"
    );

    // SIGTERM: every agent stops, the supervisor exits 0.
    let pids: Vec<u32> = ["travel", "weather-a", "weather-c"]
        .iter()
        .filter_map(|n| up.pid_of(n))
        .chain([restarted])
        .collect();
    assert_eq!(pids.len(), 4);
    let mut up = up;
    up.terminate();
    // `agora up` exits 0 only after it reaped every agent (stopped, or killed after
    // its grace time).
    for pid in pids {
        assert!(!alive(pid), "agent process {pid} outlived agora up");
    }
    up.wait_line("stopped; state kept in", Duration::from_secs(10));
    assert!(!state.join("up.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_an_rpc_node_runs_and_registers_agents_of_an_existing_deployment() {
    use registry::chain::{self, DeployConfig, Deployment};
    use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
    use registry::discovery::Discovery;

    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("node")))
        .await
        .unwrap();
    let url = node.http_url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (_, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
        .await
        .unwrap();
    let addresses_path = dir.path().join("addresses.json");
    std::fs::write(&addresses_path, serde_json::to_string(&addresses).unwrap()).unwrap();
    let config = deployment(
        dir.path(),
        &format!(
            "kind = \"rpc\"\nurl = \"{url}\"\nchain_id = {}",
            node.chain_id()
        ),
        &[("weather-a", Some("1 USDC")), ("weather-b", Some("2 USDC"))],
    );
    // On a real node the agents bring their own gas.
    for name in ["weather-a", "weather-b"] {
        let ks = dir.path().join(format!("keys/{name}.json"));
        let address = KeystoreFile::read(&ks)
            .unwrap()
            .address(&ks)
            .unwrap()
            .unwrap();
        node.set_balance(address, wallets::U256::exp10(18))
            .await
            .unwrap();
    }
    let state = dir.path().join("state");
    let mut up = Up::spawn(
        &config,
        &state,
        &[
            "--addresses",
            addresses_path.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    up.wait_line("all 2 agents are up", Duration::from_secs(120));
    let discovery = Discovery::open(dir.path().join("discovery"), &url, addresses)
        .await
        .unwrap();
    discovery.sync().await.unwrap();
    let offers = discovery
        .find("weather.forecast", "10 USDC".parse().unwrap())
        .unwrap();
    assert_eq!(offers.len(), 2, "{}", up.output());
    for o in &offers {
        assert!(healthy(o.agent.endpoint.trim_start_matches("ws://")));
    }
    up.terminate();
    // JSON logs, from the supervisor and from the agents it started.
    let stderr = std::fs::read_to_string(&up.stderr).unwrap();
    let targets: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["target"].as_str().unwrap().to_owned()
        })
        .collect();
    for target in ["agora::up", "agora::agent", "agent::host"] {
        assert!(targets.iter().any(|t| t == target), "{target}\n{stderr}");
    }
    // The node is not ours: it still serves.
    assert!(node.block_number().await > 0);
    node.shutdown().await;
}

#[test]
fn up_names_the_agent_and_variable_of_a_missing_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "kind = \"embedded\"",
        &[("weather-a", Some("1 USDC"))],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--dir")
        .arg(dir.path().join("state"))
        .args(["--chain-listen", "127.0.0.1:0"])
        .env_remove(PASSWORD_ENV)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("agent weather-a") && err.contains(PASSWORD_ENV) && err.contains("not set"),
        "{err}"
    );
    // Nothing was started: no chain data.
    assert!(!dir.path().join("state/chain").exists());
}

#[test]
fn up_on_an_rpc_network_needs_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(
        dir.path(),
        "kind = \"rpc\"\nurl = \"http://127.0.0.1:9\"\nchain_id = 31337",
        &[("weather-a", Some("1 USDC"))],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("up")
        .arg("--config")
        .arg(&config)
        .arg("--dir")
        .arg(dir.path().join("state"))
        .env(PASSWORD_ENV, "pw")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no deployment addresses") && err.contains("agora registry deploy"),
        "{err}"
    );
}

#[test]
fn plan_after_its_up_died_says_so_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    // The pid of a process that has ended.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let up = serde_json::json!({
        "rpcUrl": "http://127.0.0.1:1",
        "chainId": 1337,
        "addresses": dir.path().join("addresses.json"),
        "pid": pid,
        "agents": {
            "travel": {
                "address": Wallet::random().address(),
                "endpoint": endpoint,
                "skills": ["travel"],
            }
        }
    });
    std::fs::write(dir.path().join("up.json"), up.to_string()).unwrap();
    let err = plan_fails(dir.path(), &["--timeout", "600s"]);
    assert!(
        err.contains(&format!("(pid {pid}) is not running any more")),
        "{err}"
    );
}

/// The standard error of an `agora plan` with state directory `dir`, which must
/// have failed.
fn plan_fails(dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["plan", "A day in Paris"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    err
}

#[test]
fn plan_without_a_running_up_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = plan_fails(dir.path(), &[]);
    assert!(err.contains("is `agora up` running"), "{err}");
}
