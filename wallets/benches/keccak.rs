//! Keccak-256 through `wallets::keccak256` (keccak-asm) against sha3's `Keccak256`,
//! in the same run and on one thread.
//!
//! `cargo bench -p wallets --bench keccak` prints criterion's figures for each input
//! size, then a summary with hashes per second and the ratio wallets / sha3 (above
//! 1.0 means faster). `cargo bench -p wallets --bench keccak -- summary-only` skips
//! criterion (no benchmark has that name). The sizes are what the journal hashes:
//! 64 bytes (a Merkle parent), 66 (an EIP-712 digest), 192 (an entry's struct), and
//! 1,000 to 1,800 bytes (an entry's body).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use sha3::Digest;

const SIZES: [usize; 5] = [32, 64, 192, 1024, 1800];

fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn ours(data: &[u8]) -> [u8; 32] {
    wallets::keccak256(black_box(data)).0
}

fn sha3(data: &[u8]) -> [u8; 32] {
    sha3::Keccak256::digest(black_box(data)).into()
}

fn benches(c: &mut Criterion) {
    for len in SIZES {
        let data = input(len);
        let mut g = c.benchmark_group(format!("keccak256/{len}"));
        g.bench_function("wallets", |b| b.iter(|| ours(&data)));
        g.bench_function("sha3", |b| b.iter(|| sha3(&data)));
        g.finish();
    }
}

/// Times `f` for about `budget`, returning hashes per second.
fn rate(budget: Duration, data: &[u8], f: fn(&[u8]) -> [u8; 32]) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            black_box(f(data));
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn summary() {
    const ROUNDS: usize = 40;
    let budget = Duration::from_millis(20);
    println!("\nsummary (hashes/s, one thread, same run, best of {ROUNDS} interleaved rounds):");
    println!(
        "  {:>6} {:>12} {:>12} {:>13}",
        "bytes", "sha3", "wallets", "wallets/sha3"
    );
    for len in SIZES {
        let data = input(len);
        assert_eq!(ours(&data), sha3(&data), "the two disagree on {len} bytes");
        // Interleaved, so that drift (and whatever else runs on the machine) hits
        // both alike; each one's best round is kept, the one least disturbed.
        let (mut best_sha3, mut best_ours) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            best_sha3 = best_sha3.max(rate(budget, &data, sha3));
            best_ours = best_ours.max(rate(budget, &data, ours));
        }
        println!(
            "  {len:>6} {best_sha3:>12.0} {best_ours:>12.0} {:>13.3}",
            best_ours / best_sha3
        );
    }
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
