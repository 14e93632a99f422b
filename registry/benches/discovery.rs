//! Discovery at scale: N agents (default 10 000) registered on the embedded devnet,
//! then the cold sync of the discovery cache, cached lookups against on-chain lookups
//! in the same run, and the gas of the registry calls.
//!
//! Run: `cargo bench -p registry --bench discovery` (AGORA_BENCH_AGENTS=N to change N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Bytes, TransactionReceipt, H256, U256};
use registry::chain::{self, service, AgentRegistry, DeployConfig, Deployment};
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

fn report(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "  {name:<34} p50 {:>10.1?}   p99 {:>10.1?}   ({} queries)",
        p50,
        p99,
        samples.len()
    );
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("AGORA_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    let t = Instant::now();
    let agents: Vec<Wallet> = (0..n).map(|_| Wallet::random()).collect();
    let mut config = DevnetConfig::new(dir.path().join("chain"));
    let ether = wallets::U256::exp10(18);
    config
        .genesis
        .extend(agents.iter().map(|w| (w.address(), ether)));
    let node = Devnet::spawn(config).await.unwrap();
    let url = node.http_url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (contracts, addresses) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    println!(
        "setup: {n} funded agents and the contracts in {:.1?}",
        t.elapsed()
    );

    // Register every agent with 1 to 3 services: raw transactions signed by wallets.
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
    chain::allow_contract(
        &deployer,
        addresses.registry,
        &chain::bindings::agent_registry::AGENTREGISTRY_ABI,
    );
    let registry = AgentRegistry::new(addresses.registry, deployer.clone());
    let t = Instant::now();
    let mut hashes = Vec::with_capacity(n);
    for (i, agent) in agents.iter().enumerate() {
        let services: Vec<_> = (0..1 + rng.next() % 3)
            .map(|k| {
                let skill = SKILLS[((rng.next() + k) % SKILLS.len() as u64) as usize];
                let price = Amount::from_base_units(u128::from(100_000 + rng.next() % 2_000_000));
                service(skill, price, "call").unwrap()
            })
            .collect();
        let mut dedup = services.clone();
        dedup.sort_by_key(|s| s.skill);
        dedup.dedup_by_key(|s| s.skill);
        let call = registry.register(
            format!("ws://127.0.{}.{}:7400", i / 250, i % 250 + 1),
            format!("ipfs://agent-card-{i}"),
            [(i % 7) as u8 + 1; 32],
            dedup,
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
        let raw = Bytes::from(tx.encode_signed(&sig));
        let hash: H256 = provider
            .request("eth_sendRawTransaction", [raw])
            .await
            .unwrap();
        hashes.push(hash);
    }
    let elapsed = t.elapsed();
    println!(
        "registered {n} agents in {:.1?} ({:.0} tx/s through the devnet's JSON-RPC)",
        elapsed,
        n as f64 / elapsed.as_secs_f64()
    );

    // Gas of the registry calls, from receipts and estimates.
    let mut gas: Vec<u64> = Vec::new();
    for h in hashes.iter().step_by((n / 200).max(1)) {
        let r: TransactionReceipt = provider.get_transaction_receipt(*h).await.unwrap().unwrap();
        assert_eq!(r.status, Some(1.into()), "register reverted");
        gas.push(r.gas_used.unwrap().as_u64());
    }
    gas.sort_unstable();
    println!(
        "gas: register (1-3 services, no stake) min {} median {} max {}",
        gas[0],
        gas[gas.len() / 2],
        gas[gas.len() - 1]
    );
    let lookup = registry.agents_by_skill(
        chain::skill_tag(SKILLS[0]).unwrap(),
        U256::zero(),
        U256::from(100),
    );
    println!(
        "gas: agentsBySkill(first 100 of ~{}) as a call: {}",
        n * 2 / SKILLS.len(),
        lookup.estimate_gas().await.unwrap()
    );
    drop(contracts);

    // Cold sync.
    let t = Instant::now();
    let discovery = Discovery::open(dir.path().join("discovery"), &url, addresses)
        .await
        .unwrap();
    let logs = discovery.sync().await.unwrap();
    let cold = t.elapsed();
    println!("cold sync: {logs} logs, {n} agents in {cold:.1?}");

    println!("lookups (\"{{skill}} at ≤ 1.00 USDC, active, ranked\"):");
    let max: Amount = "1.00".parse().unwrap();
    let mut cached = Vec::new();
    let mut found = 0;
    for i in 0..2_000 {
        let skill = SKILLS[i % SKILLS.len()];
        let t = Instant::now();
        let offers = discovery.find(skill, max).unwrap();
        cached.push(t.elapsed());
        found += offers.len();
    }
    let (cached_p50, _) = report("cached (discovery cache)", cached);

    // Baseline: the same question asked of the chain (page through agentsBySkill,
    // then read each agent's services to filter by price).
    let mut onchain = Vec::new();
    for i in 0..40 {
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
        onchain.push(t.elapsed());
        assert!(matches > 0);
    }
    let (chain_p50, _) = report("on-chain (agentsBySkill + getServices)", onchain);
    println!(
        "cached lookup is {:.0}x faster at p50 ({} offers found in 2000 cached queries)",
        chain_p50.as_secs_f64() / cached_p50.as_secs_f64(),
        found
    );
    node.shutdown().await;
}

/// The function selector of `data`.
fn register_selector(data: &[u8]) -> [u8; 4] {
    let mut s = [0u8; 4];
    s.copy_from_slice(&data[..4]);
    s
}
