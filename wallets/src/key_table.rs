//! Faster verification against keys seen often: a table of a key's multiples.
//!
//! ECDSA verification computes `u1·G + u2·Q`. k256 does both products in one
//! double-and-add pass (256 doublings and about 128 additions). The generator has
//! precomputed tables in k256; a peer's key `Q` does not. An agent verifies the same
//! few keys (its counterparts) thousands of times, so after a key's
//! [`BUILD_AFTER`]-th verification this module builds `j·16^i·Q` for every 4-bit
//! window `i` and digit `j`: then `u2·Q` is at most 64 additions and no doublings,
//! and `u1·G` is at most 32 additions on a table of the generator with 8-bit
//! windows. That more than halves the cost of a verification. Everything here is
//! public data (keys, signatures, digests), so variable time is fine.
//!
//! Tables are kept for at most [`MAX_TABLES`] keys (about 85 KiB each), oldest
//! dropped first; keys are counted until [`MAX_COUNTED`] distinct keys have been
//! seen, then the counts start over.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use k256::elliptic_curve::group::Curve;
use k256::{AffinePoint, ProjectivePoint, Scalar};

/// Verifications of a key before its table is built.
pub(crate) const BUILD_AFTER: u32 = 8;
/// Keys with a table at once.
pub(crate) const MAX_TABLES: usize = 64;
/// Distinct keys counted at once.
const MAX_COUNTED: usize = 4096;

/// `j·2^(w·i)·P` for every window `i` of `w` bits (least significant first) and every
/// digit `j` in 1..2^w, as affine points: `k·P` is then one addition per non-zero
/// window of `k`, and no doublings.
pub(crate) struct KeyTable {
    bits: usize,
    points: Vec<AffinePoint>,
}

impl KeyTable {
    /// The table of `p` with windows of 4 bits (64 windows of 15 points, about
    /// 85 KiB).
    pub(crate) fn new(p: &AffinePoint) -> Self {
        Self::with_window(p, 4)
    }

    /// `bits` is 4 or 8 (the window must divide a byte).
    fn with_window(p: &AffinePoint, bits: usize) -> Self {
        let digits = (1usize << bits) - 1;
        let windows = 256 / bits;
        let mut projective = Vec::with_capacity(windows * digits);
        let mut base = ProjectivePoint::from(*p);
        for _ in 0..windows {
            let mut multiple = base;
            for _ in 0..digits {
                projective.push(multiple);
                multiple += base;
            }
            // 2^bits·base: the next window's unit.
            base = multiple;
        }
        let mut points = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut points);
        Self { bits, points }
    }

    /// `k·P`.
    pub(crate) fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes = k.to_bytes();
        let digits = (1usize << self.bits) - 1;
        let per_byte = 8 / self.bits;
        let mask = u8::try_from(digits).unwrap_or(u8::MAX);
        let mut acc = ProjectivePoint::IDENTITY;
        // Big-endian bytes: the last byte holds the lowest window(s).
        for (i, byte) in bytes.iter().rev().enumerate() {
            for part in 0..per_byte {
                let digit = usize::from((byte >> (part * self.bits)) & mask);
                if digit != 0 {
                    let window = i * per_byte + part;
                    if let Some(p) = self.points.get(window * digits + digit - 1) {
                        acc += p;
                    }
                }
            }
        }
        acc
    }

    /// `u1·G + u2·P`.
    pub(crate) fn lincomb(&self, u1: &Scalar, u2: &Scalar) -> ProjectivePoint {
        generator_table().mul(u1) + self.mul(u2)
    }
}

/// The generator's table, with windows of 8 bits (32 windows of 255 points, about
/// 700 KiB, built on first use in a few milliseconds): `u1·G` in at most 32
/// additions, against k256's 65 (with its 4-bit generator tables).
fn generator_table() -> &'static KeyTable {
    static TABLE: OnceLock<KeyTable> = OnceLock::new();
    TABLE.get_or_init(|| KeyTable::with_window(&AffinePoint::GENERATOR, 8))
}

/// The keys counted and the tables built, by compressed key.
#[derive(Default)]
struct Registry {
    uses: HashMap<[u8; 33], u32>,
    tables: HashMap<[u8; 33], Arc<KeyTable>>,
    /// Keys with a table, oldest first.
    order: VecDeque<[u8; 33]>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// The table of `key` (its compressed form `id`), counting this use and building the
/// table on the [`BUILD_AFTER`]-th; `None` while the key is not used often enough.
pub(crate) fn table_for(id: [u8; 33], key: &AffinePoint) -> Option<Arc<KeyTable>> {
    {
        let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = r.tables.get(&id) {
            return Some(t.clone());
        }
        if r.uses.len() >= MAX_COUNTED && !r.uses.contains_key(&id) {
            r.uses.clear();
        }
        let uses = r.uses.entry(id).or_default();
        *uses += 1;
        if *uses < BUILD_AFTER {
            return None;
        }
        r.uses.remove(&id);
    }
    // Built outside the lock (about a millisecond); two threads may both build the
    // same table, and the second simply replaces the first.
    let table = Arc::new(KeyTable::new(key));
    let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if r.tables.insert(id, table.clone()).is_none() {
        r.order.push_back(id);
    }
    while r.order.len() > MAX_TABLES {
        if let Some(old) = r.order.pop_front() {
            r.tables.remove(&old);
        }
    }
    Some(table)
}

/// Whether `id` has a table now.
#[cfg(test)]
pub(crate) fn has_table(id: &[u8; 33]) -> bool {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .tables
        .contains_key(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::ops::LinearCombination;
    use k256::elliptic_curve::Field;

    #[test]
    fn table_products_match_k256() {
        let mut rng = rand::rngs::OsRng;
        let q = (ProjectivePoint::GENERATOR * Scalar::random(&mut rng)).to_affine();
        let table = KeyTable::new(&q);
        let edge = [
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(15u64),
            Scalar::from(16u64),
            -Scalar::ONE,
        ];
        let random: Vec<Scalar> = (0..200).map(|_| Scalar::random(&mut rng)).collect();
        for k in edge.into_iter().chain(random) {
            assert_eq!(table.mul(&k), ProjectivePoint::from(q) * k);
            assert_eq!(generator_table().mul(&k), ProjectivePoint::GENERATOR * k);
            let u1 = Scalar::random(&mut rng);
            assert_eq!(
                table.lincomb(&u1, &k),
                ProjectivePoint::lincomb(
                    &ProjectivePoint::GENERATOR,
                    &u1,
                    &ProjectivePoint::from(q),
                    &k
                )
            );
        }
    }

    #[test]
    fn a_table_is_built_after_enough_uses_and_the_oldest_go_first() {
        let mut rng = rand::rngs::OsRng;
        let keys: Vec<AffinePoint> = (0..=MAX_TABLES)
            .map(|_| (ProjectivePoint::GENERATOR * Scalar::random(&mut rng)).to_affine())
            .collect();
        let id = |p: &AffinePoint| -> [u8; 33] {
            let e = k256::EncodedPoint::from(*p).compress();
            e.as_bytes().try_into().unwrap()
        };
        for _ in 1..BUILD_AFTER {
            assert!(table_for(id(&keys[0]), &keys[0]).is_none());
        }
        assert!(table_for(id(&keys[0]), &keys[0]).is_some());
        for k in &keys[1..] {
            for _ in 0..BUILD_AFTER {
                table_for(id(k), k);
            }
        }
        let r = registry().lock().unwrap();
        assert!(r.tables.len() <= MAX_TABLES);
        assert!(
            !r.tables.contains_key(&id(&keys[0])),
            "the oldest table stays"
        );
        assert!(r.tables.contains_key(&id(&keys[MAX_TABLES])));
    }
}
