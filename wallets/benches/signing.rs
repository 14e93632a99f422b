//! Sign and verify through the wallets crate against raw k256 in the same run.
//!
//! `cargo bench -p wallets --bench signing` prints criterion's figures for each, then
//! a summary with the ratios (ours / raw k256 throughput; 1.0 means no overhead). The
//! last line is verification against a known key, as agents verify their counterparts:
//! k256's `verify_prehash` against ours, which builds a table of a key's multiples once
//! the key has been seen a few times.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use k256::ecdsa::{SigningKey, VerifyingKey};
use wallets::{eip712::Encoder, keccak256, Eip712, Eip712Domain, Wallet, B256};

const SECRET: [u8; 32] = [0x42; 32];

/// A small protocol-like message.
struct Quote {
    dialogue: B256,
    price: u64,
}

impl Eip712 for Quote {
    const NAME: &'static str = "Quote";
    const TYPE: &'static str = "Quote(bytes32 dialogue,uint256 price)";
    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.dialogue)
            .uint(self.price)
            .finish()
    }
}

struct Setup {
    wallet: Wallet,
    raw: SigningKey,
    domain: Eip712Domain,
    quote: Quote,
    digest: B256,
}

fn setup() -> Setup {
    let wallet = Wallet::from_bytes(&SECRET).unwrap();
    let raw = SigningKey::from_slice(&SECRET).unwrap();
    let domain = Eip712Domain::new("Agora", "1", 31337, wallets::Address([1; 20]));
    let quote = Quote {
        dialogue: keccak256("dialogue"),
        price: 1_500_000,
    };
    let digest = quote.signing_hash(&domain);
    Setup {
        wallet,
        raw,
        domain,
        quote,
        digest,
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let sig = s.wallet.sign_typed(&s.domain, &s.quote).unwrap();
    let (raw_sig, raw_rec) = s.raw.sign_prehash_recoverable(s.digest.as_bytes()).unwrap();
    let address = s.wallet.address();

    let mut g = c.benchmark_group("sign");
    g.bench_function("k256 sign_prehash_recoverable", |b| {
        b.iter(|| {
            s.raw
                .sign_prehash_recoverable(black_box(s.digest.as_bytes()))
        })
    });
    g.bench_function("wallets sign_typed (EIP-712 hash + sign)", |b| {
        b.iter(|| s.wallet.sign_typed(&s.domain, black_box(&s.quote)))
    });
    g.finish();

    let mut g = c.benchmark_group("verify");
    g.bench_function("k256 recover_from_prehash", |b| {
        b.iter(|| {
            VerifyingKey::recover_from_prehash(black_box(s.digest.as_bytes()), &raw_sig, raw_rec)
        })
    });
    g.bench_function("wallets Signature::verify (recover + compare)", |b| {
        b.iter(|| sig.verify(black_box(&s.digest), address))
    });
    g.finish();
}

/// Times `f` for about `budget`, returning operations per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn summary() {
    let s = setup();
    let sig = s.wallet.sign_typed(&s.domain, &s.quote).unwrap();
    let (raw_sig, raw_rec) = s.raw.sign_prehash_recoverable(s.digest.as_bytes()).unwrap();
    let address = s.wallet.address();
    let budget = Duration::from_millis(1500);
    // Interleave baseline and ours twice so drift hits both alike.
    let mut sign = (0.0, 0.0);
    let mut verify = (0.0, 0.0);
    let mut known = (0.0, 0.0);
    let raw_key = VerifyingKey::from(&s.raw);
    let key = s.wallet.public_key();
    for _ in 0..2 {
        sign.0 += rate(budget, || {
            black_box(
                s.raw
                    .sign_prehash_recoverable(black_box(s.digest.as_bytes()))
                    .unwrap(),
            );
        });
        sign.1 += rate(budget, || {
            black_box(s.wallet.sign_typed(&s.domain, black_box(&s.quote)).unwrap());
        });
        verify.0 += rate(budget, || {
            black_box(
                VerifyingKey::recover_from_prehash(
                    black_box(s.digest.as_bytes()),
                    &raw_sig,
                    raw_rec,
                )
                .unwrap(),
            );
        });
        verify.1 += rate(budget, || {
            sig.verify(black_box(&s.digest), address).unwrap();
        });
        known.0 += rate(budget, || {
            k256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
                &raw_key,
                black_box(s.digest.as_bytes()),
                &raw_sig,
            )
            .unwrap();
        });
        // A counterpart's key, verified over and over: the table of its multiples.
        known.1 += rate(budget, || {
            sig.verify_with_key(black_box(&s.digest), &key).unwrap();
        });
    }
    println!("\nsummary (ops/s, one thread, same run):");
    println!(
        "  sign:   k256 {:>8.0}/s   wallets {:>8.0}/s   ratio {:.3}",
        sign.0 / 2.0,
        sign.1 / 2.0,
        sign.1 / sign.0
    );
    println!(
        "  verify: k256 {:>8.0}/s   wallets {:>8.0}/s   ratio {:.3}",
        verify.0 / 2.0,
        verify.1 / 2.0,
        verify.1 / verify.0
    );
    println!(
        "  verify with a known key: k256 {:>8.0}/s   wallets {:>8.0}/s   ratio {:.3}",
        known.0 / 2.0,
        known.1 / 2.0,
        known.1 / known.0
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
