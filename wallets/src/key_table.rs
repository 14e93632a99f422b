//! Faster verification against keys seen often: a table of a key's multiples.
//!
//! ECDSA verification computes `u1·G + u2·Q`. k256 does both products in one
//! double-and-add pass (256 doublings and about 128 additions). The generator has
//! precomputed tables in k256; a peer's key `Q` does not. An agent verifies the same
//! few keys (its counterparts) thousands of times, so after a key's
//! [`BUILD_AFTER`]-th verification this module builds `j·16^i·Q` for every 4-bit
//! window `i` and digit `j`: then `u2·Q` is at most 64 additions and no doublings,
//! and `u1·G` is at most 32 additions on a table of the generator with 8-bit
//! windows. That more than halves the cost of a verification.
//!
//! The sum is taken in Jacobian coordinates with the incomplete, variable-time
//! formulas libsecp256k1 verifies with (`gej_add_ge_var`: 8 multiplications and 3
//! squarings per addition, against 11 multiplications for k256's complete
//! formulas), and brought back to affine with one safegcd inversion instead of
//! k256's constant-time one. Everything here is public data (keys, signatures,
//! digests), so variable time is fine.
//!
//! Tables are kept for at most [`MAX_TABLES`] keys (about 85 KiB each), oldest
//! dropped first; keys are counted until [`MAX_COUNTED`] distinct keys have been
//! seen, then the counts start over.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use k256::elliptic_curve::group::Curve;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{AffinePoint, FieldElement, ProjectivePoint, Scalar};

/// Verifications of a key before its table is built.
pub(crate) const BUILD_AFTER: u32 = 8;
/// Keys with a table at once.
pub(crate) const MAX_TABLES: usize = 64;
/// Distinct keys counted at once.
const MAX_COUNTED: usize = 4096;

/// An affine point, coordinates normalized.
#[derive(Clone, Copy, Debug)]
struct Ge {
    x: FieldElement,
    y: FieldElement,
}

impl Ge {
    /// From k256's affine point; `None` for the identity.
    fn from_affine(p: &AffinePoint) -> Option<Self> {
        let encoded = p.to_encoded_point(false);
        let x = Option::from(FieldElement::from_bytes(encoded.x()?))?;
        let y = Option::from(FieldElement::from_bytes(encoded.y()?))?;
        Some(Self { x, y })
    }
}

/// A point in Jacobian coordinates (x = X/Z², y = Y/Z³), coordinates of magnitude 1
/// between operations; `None` in [`Gej::point`] is the identity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gej {
    point: Option<(FieldElement, FieldElement, FieldElement)>,
}

impl Gej {
    const IDENTITY: Self = Self { point: None };

    /// `self + b`, in variable time (libsecp256k1's `gej_add_ge_var`).
    fn add_ge(self, b: &Ge) -> Self {
        let Some((x1, y1, z1)) = self.point else {
            return Self {
                point: Some((b.x, b.y, FieldElement::ONE)),
            };
        };
        let z12 = z1.square();
        let u2 = b.x.mul(&z12);
        let s2 = b.y.mul(&z12).mul(&z1);
        let h = (x1.negate(1) + u2).normalize_weak();
        let i = (s2.negate(1) + y1).normalize_weak();
        if bool::from(h.normalizes_to_zero()) {
            return if bool::from(i.normalizes_to_zero()) {
                self.double()
            } else {
                Self::IDENTITY
            };
        }
        let z3 = z1.mul(&h);
        let h2 = h.square().negate(1);
        let h3 = h2.mul(&h);
        let t = x1.mul(&h2);
        let x3 = (i.square() + h3 + t + t).normalize_weak();
        let y3 = ((t + x3).mul(&i) + h3.mul(&y1)).normalize_weak();
        Self {
            point: Some((x3, y3, z3)),
        }
    }

    /// `2·self` (dbl-2009-l for a = 0); only reached when an addition meets its own
    /// point.
    fn double(self) -> Self {
        let Some((x1, y1, z1)) = self.point else {
            return self;
        };
        let a = x1.square();
        let b = y1.square();
        let c = b.square();
        let d = ((x1 + b).square() + a.negate(1) + c.negate(1))
            .normalize_weak()
            .double();
        let e = a.mul_single(3);
        let f = e.square();
        let x3 = (f + d.double().negate(4)).normalize_weak();
        let y3 = (e.mul(&(d + x3.negate(1))) + c.mul_single(8).negate(8)).normalize_weak();
        let z3 = y1.mul(&z1).double().normalize_weak();
        if bool::from(z3.normalizes_to_zero()) {
            return Self::IDENTITY;
        }
        Self {
            point: Some((x3, y3, z3)),
        }
    }

    /// The affine x (big-endian bytes) and whether y is odd; `None` for the
    /// identity.
    pub(crate) fn to_affine(self) -> Option<([u8; 32], bool)> {
        let (x, y, z) = self.point?;
        let zinv = crate::modinv::invert_field_vartime(&z)?;
        let zinv2 = zinv.square();
        let ax = x.mul(&zinv2).normalize();
        let ay = y.mul(&zinv2).mul(&zinv).normalize();
        Some((ax.to_bytes().into(), bool::from(ay.is_odd())))
    }
}

/// `j·2^(w·i)·P` for every window `i` of `w` bits (least significant first) and every
/// digit `j` in 1..2^w, as affine points: `k·P` is then one addition per non-zero
/// window of `k`, and no doublings.
pub(crate) struct KeyTable {
    bits: usize,
    points: Vec<Ge>,
}

impl KeyTable {
    /// The table of `p` with windows of 4 bits (64 windows of 15 points, about
    /// 85 KiB); `None` for the identity.
    pub(crate) fn new(p: &AffinePoint) -> Option<Self> {
        Self::with_window(p, 4)
    }

    /// `bits` is 4 or 8 (the window must divide a byte).
    fn with_window(p: &AffinePoint, bits: usize) -> Option<Self> {
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
        let mut affine = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut affine);
        // No multiple in the table is the identity for a point of prime order.
        let points = affine
            .iter()
            .map(Ge::from_affine)
            .collect::<Option<Vec<_>>>()?;
        Some(Self { bits, points })
    }

    /// `acc + k·P`.
    fn add_mul(&self, mut acc: Gej, k: &Scalar) -> Gej {
        let bytes = k.to_bytes();
        let digits = (1usize << self.bits) - 1;
        let per_byte = 8 / self.bits;
        let mask = u8::try_from(digits).unwrap_or(u8::MAX);
        // Big-endian bytes: the last byte holds the lowest window(s).
        for (i, byte) in bytes.iter().rev().enumerate() {
            for part in 0..per_byte {
                let digit = usize::from((byte >> (part * self.bits)) & mask);
                if digit != 0 {
                    let window = i * per_byte + part;
                    if let Some(p) = self.points.get(window * digits + digit - 1) {
                        acc = acc.add_ge(p);
                    }
                }
            }
        }
        acc
    }

    /// `k·P`.
    #[cfg(test)]
    fn mul(&self, k: &Scalar) -> Gej {
        self.add_mul(Gej::IDENTITY, k)
    }

    /// `u1·G + u2·P`.
    pub(crate) fn lincomb(&self, u1: &Scalar, u2: &Scalar) -> Gej {
        match generator_table() {
            Some(g) => self.add_mul(g.add_mul(Gej::IDENTITY, u1), u2),
            None => self.add_mul(Gej::IDENTITY, u2),
        }
    }
}

/// The generator's table, with windows of 8 bits (32 windows of 255 points, about
/// 700 KiB, built on first use in a few milliseconds): `u1·G` in at most 32
/// additions, against k256's 65 (with its 4-bit generator tables).
fn generator_table() -> Option<&'static KeyTable> {
    static TABLE: OnceLock<Option<KeyTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| KeyTable::with_window(&AffinePoint::GENERATOR, 8))
        .as_ref()
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
    let table = Arc::new(KeyTable::new(key)?);
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
    use k256::elliptic_curve::point::AffineCoordinates;
    use k256::elliptic_curve::Field;

    /// k256's affine x and y parity of `p`, as [`Gej::to_affine`] gives them.
    fn affine_of(p: ProjectivePoint) -> Option<([u8; 32], bool)> {
        let a = p.to_affine();
        if a == AffinePoint::IDENTITY {
            return None;
        }
        Some((a.x().into(), bool::from(a.y_is_odd())))
    }

    fn gej_of(p: &AffinePoint) -> Gej {
        Gej::IDENTITY.add_ge(&Ge::from_affine(p).unwrap())
    }

    #[test]
    fn table_products_match_k256() {
        let mut rng = rand::rngs::OsRng;
        let q = (ProjectivePoint::GENERATOR * Scalar::random(&mut rng)).to_affine();
        let table = KeyTable::new(&q).unwrap();
        let g = generator_table().unwrap();
        let edge = [
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(15u64),
            Scalar::from(16u64),
            -Scalar::ONE,
        ];
        let random: Vec<Scalar> = (0..200).map(|_| Scalar::random(&mut rng)).collect();
        for k in edge.into_iter().chain(random) {
            assert_eq!(
                table.mul(&k).to_affine(),
                affine_of(ProjectivePoint::from(q) * k)
            );
            assert_eq!(
                g.mul(&k).to_affine(),
                affine_of(ProjectivePoint::GENERATOR * k)
            );
            let u1 = Scalar::random(&mut rng);
            let expected = ProjectivePoint::lincomb(
                &ProjectivePoint::GENERATOR,
                &u1,
                &ProjectivePoint::from(q),
                &k,
            );
            assert_eq!(table.lincomb(&u1, &k).to_affine(), affine_of(expected));
        }
        // u1·G = -u2·Q: the sum is the identity.
        let u2 = Scalar::random(&mut rng);
        let d = Scalar::random(&mut rng);
        let q = (ProjectivePoint::GENERATOR * d).to_affine();
        let table = KeyTable::new(&q).unwrap();
        assert_eq!(table.lincomb(&-(d * u2), &u2).to_affine(), None);
    }

    #[test]
    fn additions_that_meet_their_own_point_double_or_cancel() {
        let mut rng = rand::rngs::OsRng;
        for _ in 0..50 {
            let p = (ProjectivePoint::GENERATOR * Scalar::random(&mut rng)).to_affine();
            let ge = Ge::from_affine(&p).unwrap();
            // P + P goes through the doubling; so do further doublings of the result.
            let two = gej_of(&p).add_ge(&ge);
            assert_eq!(
                two.to_affine(),
                affine_of(ProjectivePoint::from(p).double())
            );
            let four = two.double();
            assert_eq!(
                four.to_affine(),
                affine_of(ProjectivePoint::from(p) * Scalar::from(4u64))
            );
            // 2P + P after a non-trivial Z.
            let three = two.add_ge(&ge);
            assert_eq!(
                three.to_affine(),
                affine_of(ProjectivePoint::from(p) * Scalar::from(3u64))
            );
            // P + (-P) is the identity, and identity + P is P.
            let minus = Ge::from_affine(&(-ProjectivePoint::from(p)).to_affine()).unwrap();
            assert_eq!(gej_of(&p).add_ge(&minus).to_affine(), None);
            assert_eq!(Gej::IDENTITY.double().to_affine(), None);
            assert_eq!(gej_of(&p).to_affine(), affine_of(ProjectivePoint::from(p)));
            // 3P - P (Z ≠ 1) meets 2P's x with the other y: still a plain addition.
            assert_eq!(three.add_ge(&minus).to_affine(), two.to_affine());
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
