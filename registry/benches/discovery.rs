//! Discovery at scale: N agents (default 10 000) registered through JSON-RPC, then
//! the cold sync of the discovery cache, an incremental sync after K more agents,
//! cached lookups against on-chain lookups, the cache's size on disk and in memory,
//! and the gas of the registry calls.
//!
//! The embedded devnet always runs; `AGORA_BENCH_ANVIL=1` runs the same measurement
//! against an anvil spawned on loopback (killed at the end, also on a panic), and
//! prints both side by side.
//!
//! Run: `cargo bench -p registry --bench discovery` (`AGORA_BENCH_AGENTS=N` to change
//! N, `AGORA_BENCH_NEW_AGENTS=K` to change K, `AGORA_BENCH_ANVIL=1` to add anvil).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address as EAddress, Bytes, Filter, TransactionReceipt, H256, U256};
use futures::{StreamExt, TryStreamExt};
use registry::chain::{self, service, Addresses, AgentRegistry, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use registry::discovery::Discovery;
use wallets::{Amount, Eip1559Transaction, Wallet};

const SKILLS: [&str; 20] = [
    "weather.forecast",
    "weather.history",
    "travel.plan",
    "travel.book",
    "llm.chat",
    "llm.summarize",
    "translate.en-fr",
    "translate.en-de",
    "image.caption",
    "code.review",
    "data.clean",
    "data.plot",
    "search.web",
    "search.papers",
    "math.solve",
    "audio.transcribe",
    "video.summarize",
    "legal.review",
    "finance.quote",
    "news.digest",
];

/// JSON-RPC requests in flight at once while registering.
const IN_FLIGHT: usize = 64;
/// Transactions sent before mining them (anvil): anvil's cost per mined block grows
/// with its pool (10 000 pending: about 150 ms a block), so the pool is kept small.
const ROUND: usize = 500;
/// Cached lookups and on-chain lookups measured per node.
const CACHED_QUERIES: usize = 2_000;
const ONCHAIN_QUERIES: usize = 40;

/// A deterministic xorshift so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process, bytes (Linux; `None` elsewhere).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Apparent size and allocated size of the files under `dir`, bytes.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What one node measured.
struct Figures {
    setup: Duration,
    sign: Duration,
    register: Duration,
    blocks: u64,
    gas: [u64; 3],
    lookup_gas: U256,
    cold: Duration,
    cold_calls: usize,
    cold_logs: usize,
    log_bytes: usize,
    noop: Duration,
    new_agents: usize,
    incremental: Duration,
    incremental_logs: usize,
    cached: (Duration, Duration),
    onchain: (Duration, Duration),
    onchain_calls: usize,
    disk: (u64, u64),
    memory: Option<u64>,
}

/// Signed `register` transactions of `agents`, numbered from `first` (1 to 3
/// services each, no stake), and the time signing took.
fn sign_registrations(
    agents: &[Wallet],
    first: usize,
    rng: &mut Rng,
    addresses: &Addresses,
    registry: &AgentRegistry<chain::Client>,
) -> (Vec<Bytes>, Duration) {
    let t = Instant::now();
    let raws = agents
        .iter()
        .enumerate()
        .map(|(j, agent)| {
            let i = first + j;
            let mut services: Vec<_> = (0..1 + rng.next() % 3)
                .map(|k| {
                    let skill = SKILLS[((rng.next() + k) % SKILLS.len() as u64) as usize];
                    let price =
                        Amount::from_base_units(u128::from(100_000 + rng.next() % 2_000_000));
                    service(skill, price, "call").unwrap()
                })
                .collect();
            services.sort_by_key(|s| s.skill);
            services.dedup_by_key(|s| s.skill);
            let call = registry.register(
                format!(
                    "ws://10.{}.{}.{}:7400",
                    i / 62_500,
                    i / 250 % 250,
                    i % 250 + 1
                ),
                format!("ipfs://agent-card-{i}"),
                [(i % 7) as u8 + 1; 32],
                services,
                U256::zero(),
            );
            let data = call.calldata().unwrap().to_vec();
            let tx = Eip1559Transaction {
                chain_id: addresses.chain_id,
                nonce: 0,
                max_priority_fee_per_gas: 1_000_000_000,
                max_fee_per_gas: 3_000_000_000,
                gas_limit: 1_500_000,
                to: Some(wallets::Address(addresses.registry.0)),
                value: wallets::U256::zero(),
                data,
            };
            let policy = wallets::TxPolicy::new(u128::MAX).allow_call(
                wallets::Address(addresses.registry.0),
                register_selector(&tx.data),
            );
            let sig = agent.sign_transaction(&tx, &policy).unwrap();
            Bytes::from(tx.encode_signed(&sig))
        })
        .collect();
    (raws, t.elapsed())
}

/// How the node mines the registrations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mining {
    /// It mines each transaction as it arrives (the embedded devnet).
    OnArrival,
    /// Automine off; [`ROUND`] transactions sent, then `evm_mine` until the pool is
    /// empty, and again: full blocks (anvil).
    OnDemand,
}

/// Sends `raws` with [`IN_FLIGHT`] requests in flight and waits until every one is
/// mined and succeeded; their receipts, in order.
async fn send_all(
    provider: &Provider<Http>,
    raws: Vec<Bytes>,
    mining: Mining,
) -> Vec<TransactionReceipt> {
    if mining == Mining::OnDemand {
        let () = provider.request("evm_setAutomine", [false]).await.unwrap();
    }
    let mut hashes: Vec<H256> = Vec::with_capacity(raws.len());
    for round in raws.chunks(ROUND) {
        let sent: Vec<H256> = futures::stream::iter(round.iter().cloned())
            .map(|raw| provider.request::<_, H256>("eth_sendRawTransaction", [raw]))
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
            .unwrap();
        hashes.extend(sent);
        if mining == Mining::OnDemand {
            loop {
                let pool: serde_json::Value = provider.request("txpool_status", ()).await.unwrap();
                if pool["pending"].as_str() == Some("0x0") && pool["queued"].as_str() == Some("0x0")
                {
                    break;
                }
                let _: serde_json::Value = provider.request("evm_mine", ()).await.unwrap();
            }
        }
    }
    if mining == Mining::OnDemand {
        let () = provider.request("evm_setAutomine", [true]).await.unwrap();
    }
    let receipts: Vec<TransactionReceipt> = futures::stream::iter(hashes)
        .map(|h| async move {
            let started = Instant::now();
            loop {
                if let Some(r) = provider.get_transaction_receipt(h).await? {
                    return Ok::<_, ethers::providers::ProviderError>(r);
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{h:?} not mined"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
        .unwrap();
    for r in &receipts {
        assert_eq!(r.status, Some(1.into()), "register reverted");
    }
    receipts
}

/// Registers `n` of `agents` (funded already), syncs, registers the rest, syncs
/// again, and asks the cache and the chain the same questions.
async fn measure(
    label: &str,
    url: &str,
    mining: Mining,
    agents: &[Wallet],
    n: usize,
    dir: &Path,
) -> Figures {
    println!("== {label} ({url})");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let t = Instant::now();
    let deployer = chain::connect(url, Arc::new(dev_wallet(0))).await.unwrap();
    let (contracts, addresses) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    let setup = t.elapsed();
    let provider = Provider::<Http>::try_from(url).unwrap();
    chain::allow_contract(
        &deployer,
        addresses.registry,
        &chain::bindings::agent_registry::AGENTREGISTRY_ABI,
    );
    let registry = AgentRegistry::new(addresses.registry, deployer.clone());

    // Register: sign everything first (the agents' work), then pipeline the sends.
    let (raws, sign) = sign_registrations(&agents[..n], 0, &mut rng, &addresses, &registry);
    let t = Instant::now();
    let receipts = send_all(&provider, raws, mining).await;
    let register = t.elapsed();
    let block = |r: &TransactionReceipt| r.block_number.unwrap().as_u64();
    let blocks =
        receipts.iter().map(block).max().unwrap() - receipts.iter().map(block).min().unwrap() + 1;
    let mut gas: Vec<u64> = receipts
        .iter()
        .map(|r| r.gas_used.unwrap().as_u64())
        .collect();
    gas.sort_unstable();
    let gas = [gas[0], gas[gas.len() / 2], gas[gas.len() - 1]];
    println!(
        "  registered {n} agents in {register:.1?} ({:.0} tx/s, {IN_FLIGHT} in flight, {blocks} blocks; signing took {sign:.1?})",
        n as f64 / register.as_secs_f64()
    );
    let lookup_gas = registry
        .agents_by_skill(
            chain::skill_tag(SKILLS[0]).unwrap(),
            U256::zero(),
            U256::from(100),
        )
        .estimate_gas()
        .await
        .unwrap();
    drop(contracts);

    // Cold sync.
    let cache = dir.join("discovery");
    let before = rss();
    let t = Instant::now();
    let discovery = Discovery::open(&cache, url, addresses).await.unwrap();
    let mut chunks = 0usize;
    let cold_logs = discovery
        .sync_with_progress(|_, _| chunks += 1)
        .await
        .unwrap();
    let cold = t.elapsed();
    let cold_calls = chunks - 1;
    let head = discovery.synced_to().unwrap().unwrap();
    let synced = discovery.agents().unwrap().len();
    assert_eq!(synced, n, "the cache holds every registered agent");
    println!(
        "  cold sync: {cold_logs} logs in {cold_calls} eth_getLogs calls, {synced} agents, in {cold:.1?}"
    );

    // Incremental: nothing new, then K new agents.
    let t = Instant::now();
    assert_eq!(discovery.sync().await.unwrap(), 0);
    let noop = t.elapsed();
    let new_agents = agents.len() - n;
    let (raws, _) = sign_registrations(&agents[n..], n, &mut rng, &addresses, &registry);
    send_all(&provider, raws, mining).await;
    let t = Instant::now();
    let incremental_logs = discovery.sync().await.unwrap();
    let incremental = t.elapsed();
    assert_eq!(discovery.agents().unwrap().len(), agents.len());
    println!(
        "  incremental sync: nothing new {noop:.1?}; {new_agents} new agents ({incremental_logs} logs) {incremental:.1?}"
    );

    // Lookups: "{skill} at ≤ 1.00 USDC, active, ranked".
    let max: Amount = "1.00".parse().unwrap();
    let mut samples = Vec::new();
    for i in 0..CACHED_QUERIES {
        let skill = SKILLS[i % SKILLS.len()];
        let t = Instant::now();
        let offers = discovery.find(skill, max).unwrap();
        samples.push(t.elapsed());
        assert!(!offers.is_empty());
    }
    let cached = p50_p99(samples);

    // Baseline: the same question asked of the chain (page through agentsBySkill,
    // then read each agent's services to filter by price).
    let mut samples = Vec::new();
    let mut onchain_calls = 0;
    for i in 0..ONCHAIN_QUERIES {
        let skill = chain::skill_tag(SKILLS[i % SKILLS.len()]).unwrap();
        let t = Instant::now();
        let mut offset = U256::zero();
        let mut matches = 0;
        loop {
            let (page, next) = registry
                .agents_by_skill(skill, offset, U256::from(500))
                .call()
                .await
                .unwrap();
            onchain_calls += 1 + page.len();
            for a in page {
                let services = registry.get_services(a).call().await.unwrap();
                matches += services
                    .iter()
                    .filter(|s| s.skill == skill && s.price <= U256::from(max.base_units()))
                    .count();
            }
            if next.is_zero() {
                break;
            }
            offset = next;
        }
        samples.push(t.elapsed());
        assert!(matches > 0);
    }
    let onchain = p50_p99(samples);

    // The cache's cost: this process's growth over the sync and the lookups (on the
    // embedded devnet that includes the node serving them), and its files.
    let memory = rss().zip(before).map(|(a, b)| a.saturating_sub(b));
    drop(discovery);
    let disk = dir_size(&cache);
    // What the cold sync's logs weigh as JSON (one query over the same range and
    // contracts).
    let mut contracts = vec![addresses.registry, addresses.reputation];
    if addresses.has_erc8004() {
        contracts.extend([addresses.reputation_registry, addresses.settled_feedback]);
    }
    let logs = provider
        .get_logs(
            &Filter::new()
                .address(contracts)
                .from_block(addresses.deployed_at)
                .to_block(head),
        )
        .await
        .unwrap();
    let log_bytes = serde_json::to_vec(&logs).unwrap().len();

    Figures {
        setup,
        sign,
        register,
        blocks,
        gas,
        lookup_gas,
        cold,
        cold_calls,
        cold_logs,
        log_bytes,
        noop,
        new_agents,
        incremental,
        incremental_logs,
        cached,
        onchain,
        onchain_calls: onchain_calls / ONCHAIN_QUERIES,
        disk,
        memory,
    }
}

/// Funds `agents` with 1 ether each on anvil, [`IN_FLIGHT`] requests at once.
async fn fund_on_anvil(url: &str, agents: &[Wallet]) {
    let provider = Provider::<Http>::try_from(url).unwrap();
    let ether = U256::exp10(18);
    futures::stream::iter(agents)
        .map(|w| {
            let addr = EAddress::from(w.address().0);
            provider.request::<_, ()>("anvil_setBalance", (addr, ether))
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_usize("AGORA_BENCH_AGENTS", 10_000);
    let k = env_usize("AGORA_BENCH_NEW_AGENTS", 100).max(1);
    let anvil = std::env::var("AGORA_BENCH_ANVIL").as_deref() == Ok("1");
    let dir = tempfile::tempdir().unwrap();
    let agents: Vec<Wallet> = (0..n + k).map(|_| Wallet::random()).collect();

    let t = Instant::now();
    let mut config = DevnetConfig::new(dir.path().join("chain"));
    let ether = wallets::U256::exp10(18);
    config
        .genesis
        .extend(agents.iter().map(|w| (w.address(), ether)));
    let node = Devnet::spawn(config).await.unwrap();
    let funded = t.elapsed();
    let embedded_dir = dir.path().join("embedded");
    std::fs::create_dir_all(&embedded_dir).unwrap();
    let mut embedded = measure(
        "embedded devnet",
        &node.http_url(),
        Mining::OnArrival,
        &agents,
        n,
        &embedded_dir,
    )
    .await;
    embedded.setup += funded;
    node.shutdown().await;

    let on_anvil = if anvil {
        let t = Instant::now();
        // Killed on drop, so also when a measurement panics. Base fee 0: the full
        // blocks of the registration would otherwise raise it by 12.5 % a block
        // (EIP-1559) past the transactions' fee cap, and anvil drops them.
        let node = registry::anvil::Anvil::spawn_with_args(&["--block-base-fee-per-gas", "0"])
            .await
            .unwrap();
        fund_on_anvil(&node.http_url(), &agents).await;
        let funded = t.elapsed();
        let anvil_dir = dir.path().join("anvil");
        std::fs::create_dir_all(&anvil_dir).unwrap();
        let mut f = measure(
            "anvil",
            &node.http_url(),
            Mining::OnDemand,
            &agents,
            n,
            &anvil_dir,
        )
        .await;
        f.setup += funded;
        Some(f)
    } else {
        None
    };

    println!();
    println!("{n} agents registered, then {k} more; lookups are \"{{skill}} at ≤ 1.00 USDC, active, ranked\"");
    let mut header = format!("{:<44}{:>22}", "", "embedded");
    if on_anvil.is_some() {
        header.push_str(&format!("{:>22}", "anvil"));
    }
    println!("{header}");
    let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
        let mut line = format!("{name:<44}{:>22}", f(&embedded));
        if let Some(a) = &on_anvil {
            line.push_str(&format!("{:>22}", f(a)));
        }
        println!("{line}");
    };
    let d = |v: Duration| format!("{v:.1?}");
    row("setup (spawn, fund, deploy)", &|f| d(f.setup));
    row("signing the registrations", &|f| d(f.sign));
    row("registration (send until mined)", &|f| d(f.register));
    row("registration throughput (tx/s)", &|f| {
        format!("{:.0}", n as f64 / f.register.as_secs_f64())
    });
    row("blocks the registrations took", &|f| f.blocks.to_string());
    row("gas per register min/median/max", &|f| {
        format!("{}/{}/{}", f.gas[0], f.gas[1], f.gas[2])
    });
    row("gas of agentsBySkill(first 100) as a call", &|f| {
        f.lookup_gas.to_string()
    });
    row("cold sync", &|f| d(f.cold));
    row("  eth_getLogs calls", &|f| f.cold_calls.to_string());
    row("  logs", &|f| f.cold_logs.to_string());
    row("  logs as JSON", &|f| mib(f.log_bytes as u64));
    row("  per agent", &|f| d(f.cold / n as u32));
    row("sync with nothing new", &|f| d(f.noop));
    row(&format!("sync after {k} new agents"), &|f| d(f.incremental));
    row("  logs", &|f| f.incremental_logs.to_string());
    row("  per new agent", &|f| {
        d(f.incremental.saturating_sub(f.noop) / f.new_agents as u32)
    });
    row("cached lookup p50", &|f| d(f.cached.0));
    row("cached lookup p99", &|f| d(f.cached.1));
    row("on-chain lookup p50", &|f| d(f.onchain.0));
    row("on-chain lookup p99", &|f| d(f.onchain.1));
    row("  eth_calls per on-chain lookup", &|f| {
        f.onchain_calls.to_string()
    });
    row("cache on disk (apparent)", &|f| mib(f.disk.0));
    row("cache on disk (allocated)", &|f| mib(f.disk.1));
    row("RSS growth over sync + lookups", &|f| {
        f.memory.map_or("n/a".into(), mib)
    });
    println!(
        "({CACHED_QUERIES} cached and {ONCHAIN_QUERIES} on-chain lookups per node; the embedded \
         devnet runs in this process, so its RSS growth includes the node's; anvil runs in its own)"
    );
}

/// The function selector of `data`.
fn register_selector(data: &[u8]) -> [u8; 4] {
    let mut s = [0u8; 4];
    s.copy_from_slice(&data[..4]);
    s
}
