//! Signing, verification and recovery through the wallets crate against raw
//! libsecp256k1 and raw k256, in the same run and on one thread.
//!
//! `cargo bench -p wallets --bench signing` prints criterion's figures for each, then a
//! summary with operations per second and the ratios ours / raw libsecp256k1 (1.0
//! means no overhead; the goal is at least 0.95). `cargo bench -p wallets --bench
//! signing -- summary-only` skips criterion (no benchmark has that name):
//!
//! - sign: `Wallet::sign_typed` (EIP-712 hash of a small struct, then libsecp256k1's
//!   RFC 6979 signature) against `sign_ecdsa_recoverable` and k256's
//!   `sign_prehash_recoverable` of the digest;
//! - verify: `Signature::verify_ecdsa` against a known key (agents verify their
//!   counterparts' envelopes so) against libsecp256k1's `verify_ecdsa` and k256's
//!   `verify_prehash`. `Signature::verify_with_key`, which also checks the recovery id
//!   `v` (what a contract will `ecrecover`), costs a recovery: the summary sets it
//!   against raw `recover_ecdsa`;
//! - recover: `Signature::recover` (recovery, then the address's hash) against
//!   `recover_ecdsa` and k256's `recover_from_prehash`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{SigningKey, VerifyingKey};
use secp256k1::ecdsa::{RecoverableSignature, Signature as SecpSignature};
use secp256k1::{All, Message, Secp256k1, SecretKey};
use wallets::{
    eip712::Encoder, keccak256, Eip712, Eip712Domain, PublicKey, Signature, Wallet, B256,
};

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
    domain: Eip712Domain,
    quote: Quote,
    digest: B256,
    /// Ours: the wallet's signature of `quote`, and its key.
    sig: Signature,
    key: PublicKey,
    /// Raw libsecp256k1, same key and digest.
    secp: Secp256k1<All>,
    secp_secret: SecretKey,
    secp_public: secp256k1::PublicKey,
    secp_message: Message,
    secp_sig: SecpSignature,
    secp_recoverable: RecoverableSignature,
    /// Raw k256, same key and digest.
    k256: SigningKey,
    k256_public: VerifyingKey,
    k256_sig: k256::ecdsa::Signature,
    k256_recovery: k256::ecdsa::RecoveryId,
}

fn setup() -> Setup {
    let wallet = Wallet::from_bytes(&SECRET).unwrap();
    let domain = Eip712Domain::new("Agora", "1", 31337, wallets::Address([1; 20]));
    let quote = Quote {
        dialogue: keccak256("dialogue"),
        price: 1_500_000,
    };
    let digest = quote.signing_hash(&domain);
    let sig = wallet.sign_typed(&domain, &quote).unwrap();
    let key = wallet.public_key();

    let mut secp = Secp256k1::new();
    secp.seeded_randomize(&[7; 32]);
    let secp_secret = SecretKey::from_slice(&SECRET).unwrap();
    let secp_public = secp256k1::PublicKey::from_secret_key(&secp, &secp_secret);
    let secp_message = Message::from_digest(digest.0);
    let secp_recoverable = secp.sign_ecdsa_recoverable(&secp_message, &secp_secret);
    let secp_sig = secp_recoverable.to_standard();

    let k256 = SigningKey::from_slice(&SECRET).unwrap();
    let k256_public = *k256.verifying_key();
    let (k256_sig, k256_recovery) = k256.sign_prehash_recoverable(digest.as_bytes()).unwrap();

    // All three made the same signature.
    let (id, rs) = secp_recoverable.serialize_compact();
    assert_eq!(sig.to_bytes()[..64], rs);
    assert_eq!(rs[..], k256_sig.to_bytes()[..]);
    assert_eq!(i32::from(k256_recovery.to_byte()), id.to_i32());
    assert_eq!(sig.v(), 27 + k256_recovery.to_byte());

    Setup {
        wallet,
        domain,
        quote,
        digest,
        sig,
        key,
        secp,
        secp_secret,
        secp_public,
        secp_message,
        secp_sig,
        secp_recoverable,
        k256,
        k256_public,
        k256_sig,
        k256_recovery,
    }
}

/// One operation: its group, its name, and a closure that runs it once.
type Operation<'a> = (&'static str, &'static str, Box<dyn Fn() + 'a>);

/// The nine operations: per group, raw libsecp256k1, raw k256, then ours.
fn operations(s: &Setup) -> [Operation<'_>; 10] {
    [
        (
            "sign",
            "libsecp256k1 sign_ecdsa_recoverable",
            Box::new(|| {
                black_box(
                    s.secp
                        .sign_ecdsa_recoverable(black_box(&s.secp_message), &s.secp_secret),
                );
            }),
        ),
        (
            "sign",
            "k256 sign_prehash_recoverable",
            Box::new(|| {
                black_box(
                    s.k256
                        .sign_prehash_recoverable(black_box(s.digest.as_bytes()))
                        .unwrap(),
                );
            }),
        ),
        (
            "sign",
            "wallets Wallet::sign_typed (EIP-712 hash + sign)",
            Box::new(|| {
                black_box(s.wallet.sign_typed(&s.domain, black_box(&s.quote)).unwrap());
            }),
        ),
        (
            "verify",
            "libsecp256k1 verify_ecdsa",
            Box::new(|| {
                s.secp
                    .verify_ecdsa(black_box(&s.secp_message), &s.secp_sig, &s.secp_public)
                    .unwrap();
            }),
        ),
        (
            "verify",
            "k256 verify_prehash",
            Box::new(|| {
                s.k256_public
                    .verify_prehash(black_box(s.digest.as_bytes()), &s.k256_sig)
                    .unwrap();
            }),
        ),
        (
            "verify",
            "wallets Signature::verify_ecdsa",
            Box::new(|| {
                s.sig.verify_ecdsa(black_box(&s.digest), &s.key).unwrap();
            }),
        ),
        (
            "recover",
            "libsecp256k1 recover_ecdsa",
            Box::new(|| {
                black_box(
                    s.secp
                        .recover_ecdsa(black_box(&s.secp_message), &s.secp_recoverable)
                        .unwrap(),
                );
            }),
        ),
        (
            "recover",
            "k256 recover_from_prehash",
            Box::new(|| {
                black_box(
                    VerifyingKey::recover_from_prehash(
                        black_box(s.digest.as_bytes()),
                        &s.k256_sig,
                        s.k256_recovery,
                    )
                    .unwrap(),
                );
            }),
        ),
        (
            "recover",
            "wallets Signature::recover (+ address)",
            Box::new(|| {
                black_box(s.sig.recover(black_box(&s.digest)).unwrap());
            }),
        ),
        (
            "verify-strict",
            "wallets Signature::verify_with_key (checks v: a recovery)",
            Box::new(|| {
                s.sig.verify_with_key(black_box(&s.digest), &s.key).unwrap();
            }),
        ),
    ]
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let ops = operations(&s);
    for group in ["sign", "verify", "recover", "verify-strict"] {
        let mut g = c.benchmark_group(group);
        for (_, name, f) in ops.iter().filter(|(g, ..)| *g == group) {
            g.bench_function(*name, |b| b.iter(f));
        }
        g.finish();
    }
}

/// Times `f` for about `budget`, returning operations per second.
fn rate(budget: Duration, f: &dyn Fn()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..20 {
            f();
        }
        n += 20;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn summary() {
    const ROUNDS: usize = 40;
    let s = setup();
    let ops = operations(&s);
    let budget = Duration::from_millis(60);
    for (_, _, f) in &ops {
        rate(budget, f.as_ref());
    }
    // Interleave all ten in short rounds, round after round, so that drift (and
    // whatever else runs on the machine) hits them alike; keep each one's best round,
    // the one least disturbed.
    let mut best = [0.0f64; 10];
    for _ in 0..ROUNDS {
        for (i, (_, _, f)) in ops.iter().enumerate() {
            best[i] = best[i].max(rate(budget, f.as_ref()));
        }
    }
    println!("\nsummary (ops/s, one thread, same run, best of {ROUNDS} interleaved rounds):");
    println!(
        "  {:<8} {:>14} {:>10} {:>10} {:>17} {:>11}",
        "", "libsecp256k1", "k256", "wallets", "wallets/libsecp", "wallets/k256"
    );
    for (row, name) in ["sign", "verify", "recover"].iter().enumerate() {
        let [secp, k256, ours] = [best[3 * row], best[3 * row + 1], best[3 * row + 2]];
        println!(
            "  {:<8} {secp:>14.0} {k256:>10.0} {ours:>10.0} {:>17.3} {:>11.3}",
            name,
            ours / secp,
            ours / k256
        );
    }
    println!(
        "  verify_with_key (checks v: a recovery plus a comparison) / raw recover_ecdsa: {:.3}",
        best[9] / best[6]
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
