//! Negotiation benchmarks, each beside a baseline measured in the same run.
//!
//! `cargo bench -p negotiation --bench negotiation` prints:
//! - **channel deals per second** between a buyer and a seller on two hosts over
//!   loopback WebSocket on the embedded devnet: each deal is an order carrying its
//!   voucher → the signed delivery → the signed receipt, every message in a signed
//!   envelope, every step saved to the agents' stores and journaled (signed, fsynced)
//!   on both sides. One deal at a time and 32 in flight (goal ≥ 1,000/s on 2 cores),
//!   against the signature work of a deal alone on all cores;
//! - **audit replay**: journal entries per second audited (hash links, signatures,
//!   counterpart matching) over the two journals the deals wrote, against raw
//!   libsecp256k1 public key recovery of as many signatures on all cores, measured
//!   (goal ≥ 0.8×); one thread's rate × cores is printed beside it;
//! - **gas per deal** in `channel` mode (the funding and the settlement spread over
//!   the deals), printed from the chain's receipts.
//!
//! Set `AGORA_BENCH_QUICK=1` for a short run.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss
)]

use std::sync::Arc;
use std::time::Instant;

/// The allocator the `agora` binary runs agents with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use agent_sdk::prelude::*;
use futures::StreamExt;
use negotiation::audit::audit;
use negotiation::test_utils::{usdc, Market, KIND, TOKEN};
use negotiation::{Buyer, PaymentMode, ReceiptNote};
use wallets::{Eip712, Journal, Limits, SpendingPolicy};

/// Signatures one channel deal makes in messages: the voucher, the order's envelope,
/// the delivery, its reply envelope and the receipt. The journals' signatures come
/// on top: entries written together share one (a Merkle root), so their number per
/// deal is counted in the journals after the run. The envelopes of a batch of
/// receipts, shared by many deals, are left out.
const MESSAGE_SIGNS: f64 = 5.0;
/// Verifications, all against known keys: the order's envelope, the voucher, the
/// reply's envelope, the delivery, the receipt. Keys are recovered from the first
/// message of each counterpart only.
const VERIFIES: usize = 5;

/// Deals per second if a deal were only its signature work (`signs` per deal, on
/// average) and its verifications, on all cores.
fn signature_work_per_sec(deals: usize, signs: f64) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = deals / threads;
    let signs_total = (signs * per_thread as f64).round() as usize;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let w = Wallet::random();
                let domain = negotiation::negotiation_domain(1);
                let key = w.public_key();
                let note = |i: usize| {
                    let n = wallets::keccak256(((t * deals + i) as u64).to_be_bytes());
                    ReceiptNote {
                        agreement: n,
                        result_hash: n,
                    }
                };
                let mut last = w.sign_typed(&domain, &note(0)).unwrap();
                for i in 1..signs_total {
                    last = w.sign_typed(&domain, &note(i)).unwrap();
                }
                let h = note(signs_total.saturating_sub(1)).signing_hash(&domain);
                for _ in 0..per_thread * VERIFIES {
                    last.verify_with_key(&h, &key).unwrap();
                }
            });
        }
    });
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

/// Distinct signatures in a journal (entries written together share one).
fn journal_signatures(path: &std::path::Path) -> usize {
    let entries = wallets::journal::read_entries(path).unwrap();
    entries
        .iter()
        .map(|e| e.signature.to_bytes())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// CPU seconds this process has used so far (user and system, all threads), from
/// `/proc/self/stat`; `None` where that is not available.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Raw libsecp256k1 public key recoveries per second, `n` of them split over
/// `threads` threads: the audit's baseline (recovery is what checking a signature of
/// unknown signer costs).
fn recover_per_sec(n: usize, threads: usize) -> f64 {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    let secp = secp256k1::Secp256k1::new();
    let w = Wallet::random();
    let sig = w.sign_message(b"bench").unwrap();
    let h = wallets::eip191::hash_message(b"bench");
    let bytes = sig.to_bytes();
    let id = RecoveryId::from_i32(i32::from(bytes[64]) - 27).unwrap();
    let rs = RecoverableSignature::from_compact(&bytes[..64], id).unwrap();
    let msg = secp256k1::Message::from_digest(h.0);
    let per_thread = n / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    std::hint::black_box(secp.recover_ecdsa(&msg, &rs).unwrap());
                }
            });
        }
    });
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::var_os("AGORA_BENCH_QUICK").is_some();
    let (one, many) = if quick { (100, 1_000) } else { (500, 5_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let m = Market::start(dir.path(), "seller", 4, usdc("0.001")).await;
        let (chain, s) = (&m.chain, &m.seller);
        let wallet = Arc::new(Wallet::random());
        let policy = SpendingPolicy::open(
            dir.path().join("buyer.policy"),
            wallet.clone(),
            // The channel's deposit pays for every order of the run (5.501 USDC in a
            // full run) and counts against the per-deal limit.
            Limits {
                per_deal: Some(usdc("6")),
                ..Limits::default()
            },
        )
        .unwrap();
        let policy = chain.addresses.pin(policy, negotiation::test_utils::TOKEN);
        let handle = AgentBuilder::new("buyer")
            .wallet(wallet.clone())
            .policy(Arc::new(policy))
            .directory(m.directory())
            .spawn(&m.hosts.0)
            .unwrap();
        let journal_path = dir.path().join("buyer.journal");
        let settlement = chain.settlement(wallet.clone()).await;
        let total = 1 + one + many;
        let buyer = Buyer::new(
            wallet.clone(),
            negotiation::token_domain(&chain.addresses, TOKEN),
            Journal::open(&journal_path, wallet.clone()).unwrap(),
        )
        .with_settlement(settlement)
        .with_channel_orders(u32::try_from(total).unwrap());
        chain
            .minter
            .mint(handle.address(), usdc("100"))
            .await
            .unwrap();
        let ctx = handle.context();
        let hire = |i: usize| {
            let (buyer, ctx) = (buyer.clone(), ctx.clone());
            async move {
                buyer
                    .hire(
                        &ctx,
                        &format!("forecast {i}"),
                        KIND,
                        usdc("0.01"),
                        PaymentMode::Channel,
                    )
                    .await
                    .unwrap()
            }
        };
        // The first deal negotiates and funds the channel.
        let first = hire(0).await;
        let funded = first.agreement.agreement.hash();

        let start = Instant::now();
        for i in 0..one {
            hire(1 + i).await;
        }
        let sequential = one as f64 / start.elapsed().as_secs_f64();
        let in_flight: usize = std::env::var("AGORA_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32);
        let start = Instant::now();
        let cpu_before = cpu_seconds();
        futures::stream::iter(0..many)
            .for_each_concurrent(in_flight, |i| async move {
                let deal = hire(1 + one + i).await;
                assert_eq!(deal.agreement.agreement.hash(), funded);
            })
            .await;
        let pipelined = many as f64 / start.elapsed().as_secs_f64();
        let cpu_per_deal = cpu_before
            .zip(cpu_seconds())
            .map_or_else(String::new, |(a, b)| {
                format!(", {:.0} us of CPU per deal (both agents, all threads)", (b - a) * 1e6 / many as f64)
            });
        if std::env::var_os("AGORA_BENCH_DEALS_ONLY").is_some() {
            println!("channel deals: {sequential:.0}/s one at a time, {pipelined:.0}/s with {in_flight} in flight{cpu_per_deal}");
            return;
        }
        // The journals' signatures per deal, over the whole run.
        let journal_signs = (journal_signatures(&journal_path)
            + journal_signatures(&s.journal)) as f64
            / total as f64;
        let signs = MESSAGE_SIGNS + journal_signs;
        let baseline = signature_work_per_sec(if quick { 500 } else { 2_000 }, signs);
        println!(
            "channel deals over loopback WebSocket: {sequential:.0}/s one at a time, \
             {pipelined:.0}/s with {in_flight} in flight{cpu_per_deal} (goal >= 1000/s); signature work alone \
             ({signs:.2} signs, of which {journal_signs:.2} for the journals, and {VERIFIES} verifies per deal, all cores): \
             {baseline:.0}/s; ratio {:.2}",
            pipelined / baseline
        );

        // Gas: the funding (paid by the seller) and the settlement, over the deals.
        // (The seller saves each voucher before it delivers: the last one is in.)
        let settled = s
            .seller
            .settle_channels(&s.handle.context(), true)
            .await
            .unwrap();
        let funding_gas = {
            let e = wallets::journal::read_entries(&s.journal).unwrap();
            e.iter()
                .find(|e| e.kind == "funding")
                .and_then(|e| e.body["settlement"]["gasUsed"].as_u64())
                .unwrap_or_default()
        };
        let close_gas = settled.first().map_or(0, |(_, tx)| tx.gas_used);
        println!(
            "channel gas: funding {funding_gas}, settle+close {close_gas}; \
             {:.0} gas per deal over {total} deals",
            (funding_gas + close_gas) as f64 / total as f64
        );

        // Audit replay over both journals, against raw recovery of as many
        // signatures on all cores, measured in the same run (not one thread's rate
        // times the cores, which a loaded machine does not give either). Each is run
        // three times, interleaved, and the best of each is kept.
        let paths = vec![journal_path.clone(), s.journal.clone()];
        let entries: usize = paths
            .iter()
            .map(|p| wallets::journal::read_entries(p).unwrap().len())
            .sum();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (mut audit_rate, mut all_cores, mut one_core) = (0f64, 0f64, 0f64);
        for _ in 0..3 {
            let start = Instant::now();
            let report = audit(&paths, None).await.unwrap();
            audit_rate = audit_rate.max(entries as f64 / start.elapsed().as_secs_f64());
            assert!(report.is_clean(), "{}", report.to_table());
            all_cores = all_cores.max(recover_per_sec(entries, cores));
            one_core = one_core.max(recover_per_sec(entries / cores, 1));
        }
        println!(
            "audit replay: {entries} entries at {audit_rate:.0}/s; raw libsecp256k1 recover of \
             {entries} signatures on {cores} cores {all_cores:.0}/s; ratio {:.2} (goal >= 0.8); \
             (one thread {one_core:.0}/s x {cores} cores = {:.0}/s; ratio {:.2})",
            audit_rate / all_cores,
            one_core * cores as f64,
            audit_rate / (one_core * cores as f64)
        );
    });
}
