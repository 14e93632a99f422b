//! Envelope checks against raw k256 verification in the same run.
//!
//! `cargo bench -p agent-core --bench envelope` prints criterion's figures and a
//! summary: checking an envelope from a known sender (EIP-712 hashing of the
//! envelope, canonical JSON of the payload, signature verified against the
//! remembered key, duplicate and replay bookkeeping) beside k256's `verify_prehash`
//! of one digest with a known key. The goal is a ratio of at least 0.9.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_core::envelope::{Draft, Envelope, Inbox, InboxLimits};
use criterion::{criterion_group, Criterion};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature as RawSig, SigningKey};
use wallets::{Wallet, B256};

const NOW: u64 = 1_800_000_000_000;

fn envelopes(n: u64) -> (Wallet, Wallet, Vec<Envelope>) {
    let alice = Wallet::from_bytes(&[5; 32]).unwrap();
    let bob = Wallet::from_bytes(&[6; 32]).unwrap();
    let envs = (1..=n)
        .map(|seq| {
            Envelope::seal(
                &alice,
                Draft {
                    recipient: bob.address(),
                    dialogue: B256([9; 32]),
                    sequence: seq,
                    expiry: NOW + 60_000,
                    chain_id: 1337,
                    kind: "negotiation.Propose".into(),
                    payload: serde_json::json!({"price": "950000", "terms": "forecast, 3 days", "expiry": 1800000060000u64}),
                },
            )
            .unwrap()
        })
        .collect();
    (alice, bob, envs)
}

/// Our side: a fresh inbox that already knows alice's key checks `envs` in order.
fn check_all(bob: &Wallet, first: &Envelope, envs: &[Envelope]) -> u64 {
    let mut inbox = Inbox::new(bob.address(), 1337, InboxLimits::default());
    inbox.check(first, NOW).unwrap();
    for e in envs {
        inbox.check(black_box(e), NOW).unwrap();
    }
    inbox.accepted()
}

fn benches(c: &mut Criterion) {
    let (_, bob, envs) = envelopes(201);
    let (first, rest) = envs.split_first().unwrap();
    let raw = SigningKey::from_slice(&[5; 32]).unwrap();
    let digest = [0x42u8; 32];
    let (sig, _): (RawSig, _) = raw.sign_prehash_recoverable(&digest).unwrap();
    let vk = *raw.verifying_key();
    c.bench_function("k256 verify_prehash (known key)", |b| {
        b.iter(|| vk.verify_prehash(black_box(&digest), &sig).unwrap())
    });
    c.bench_function("Inbox::check x200 (known sender)", |b| {
        b.iter(|| check_all(&bob, first, rest))
    });
}

fn summary() {
    let (_, bob, envs) = envelopes(2_001);
    let (first, rest) = envs.split_first().unwrap();
    let raw = SigningKey::from_slice(&[5; 32]).unwrap();
    let digest = [0x42u8; 32];
    let (sig, _): (RawSig, _) = raw.sign_prehash_recoverable(&digest).unwrap();
    let vk = *raw.verifying_key();
    let mut ours = 0.0;
    let mut base = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < Duration::from_millis(800) {
            for _ in 0..100 {
                vk.verify_prehash(black_box(&digest), &sig).unwrap();
            }
            n += 100;
        }
        base += n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let checked = check_all(&bob, first, rest) - 1;
        ours += checked as f64 / t.elapsed().as_secs_f64();
    }
    println!("\nsummary (one thread, same run):");
    println!(
        "  k256 verify_prehash {:>8.0}/s   envelope check {:>8.0}/s   ratio {:.3}",
        base / 3.0,
        ours / 3.0,
        ours / base
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    summary();
}
