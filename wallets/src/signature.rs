//! Recoverable secp256k1 signatures in Ethereum's 65-byte `r || s || v` form.
//!
//! Signing ([`crate::Wallet`]), recovery and verification go through libsecp256k1 (the
//! `secp256k1` crate); k256 parses and checks signatures and remains the key type at
//! the API ([`k256::ecdsa::VerifyingKey`], [`k256::ecdsa::SigningKey`]).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use k256::ecdsa::{Signature as EcdsaSignature, VerifyingKey};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{All, Message, Secp256k1};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::primitives::{decode_fixed, deserialize_str};
use crate::{eip191, Address, Error, Result, B256};

/// The one libsecp256k1 context of the process, randomized once from the operating
/// system's random number generator (libsecp256k1 blinds its signing with it, a
/// defence against side channels).
static CONTEXT: LazyLock<Secp256k1<All>> = LazyLock::new(|| {
    let mut context = Secp256k1::new();
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
    context.seeded_randomize(&seed);
    context
});

/// The libsecp256k1 context for signing, verification and recovery.
pub(crate) fn context() -> &'static Secp256k1<All> {
    &CONTEXT
}

/// A recoverable, low-s ECDSA signature over secp256k1.
///
/// Constructing one from bytes rejects high-s values (EIP-2) and invalid recovery
/// ids, so a `Signature` in hand is always in canonical form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// `r || s`, big-endian, both nonzero and below the group order, `s` in the lower half.
    rs: [u8; 64],
    /// The recovery id, 0 or 1: the parity of the y coordinate of the point `R`.
    recovery: u8,
}

impl Signature {
    /// Byte length of the serialized form.
    pub const LEN: usize = 65;

    /// A signature from libsecp256k1's compact form, checked as [`Signature::from_bytes`]
    /// checks (libsecp256k1 makes only low-s signatures; this does not rely on it).
    pub(crate) fn from_compact(rs: [u8; 64], recovery: RecoveryId) -> Result<Self> {
        let recovery = u8::try_from(recovery.to_i32())
            .ok()
            .filter(|v| *v <= 1)
            // 2 or 3: R's x was at least the group order, which v cannot express.
            .ok_or_else(|| Error::InvalidSignature("r overflowed the group order".into()))?;
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&rs);
        bytes[64] = recovery;
        Self::from_bytes(&bytes)
    }

    /// Parses 65 bytes `r || s || v` with `v` in {27, 28} or {0, 1}.
    ///
    /// # Errors
    /// [`Error::Length`] unless exactly 65 bytes, [`Error::InvalidRecoveryId`],
    /// [`Error::HighS`] for malleable signatures, [`Error::InvalidSignature`] when
    /// `r` or `s` is zero or not below the curve order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: &[u8; 65] = bytes.try_into().map_err(|_| Error::Length {
            what: "signature",
            expected: Self::LEN,
            actual: bytes.len(),
        })?;
        let (rs, v) = raw.split_at(64);
        let v = v.first().copied().unwrap_or_default();
        let recovery = match v {
            27 | 28 => v - 27,
            0 | 1 => v,
            other => return Err(Error::InvalidRecoveryId(other)),
        };
        let inner = EcdsaSignature::from_slice(rs)
            .map_err(|_| Error::InvalidSignature("r or s is zero or out of range".into()))?;
        if inner.normalize_s().is_some() {
            return Err(Error::HighS);
        }
        let mut out = [0u8; 64];
        out.copy_from_slice(rs);
        Ok(Self { rs: out, recovery })
    }

    /// Parses `0x`-prefixed hex of 65 bytes.
    ///
    /// # Errors
    /// As [`Signature::from_bytes`], plus [`Error::Hex`].
    pub fn from_hex(s: &str) -> Result<Self> {
        Self::from_bytes(&decode_fixed::<{ Self::LEN }>("signature", s)?)
    }

    /// The 65-byte form with `v` in {27, 28}.
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&self.rs);
        out[64] = self.v();
        out
    }

    /// `r` as 32 bytes.
    pub fn r(&self) -> B256 {
        let mut r = [0u8; 32];
        r.copy_from_slice(&self.rs[..32]);
        B256(r)
    }

    /// `s` as 32 bytes.
    pub fn s(&self) -> B256 {
        let mut s = [0u8; 32];
        s.copy_from_slice(&self.rs[32..]);
        B256(s)
    }

    /// `v` in {27, 28}.
    pub fn v(&self) -> u8 {
        27 + self.recovery
    }

    /// Recovers the signer's address from a 32-byte prehash.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if no public key recovers from it.
    pub fn recover(&self, prehash: &B256) -> Result<Address> {
        Ok(Address::from_uncompressed(
            &self.recover_key(prehash)?.serialize_uncompressed(),
        ))
    }

    /// libsecp256k1's recovery (`ecrecover`): the key whose signature over `prehash`
    /// this is, with the recovery id taken into account.
    fn recover_key(&self, prehash: &B256) -> Result<secp256k1::PublicKey> {
        let no_key = || Error::InvalidSignature("no public key recovers from it".into());
        let id = RecoveryId::from_i32(i32::from(self.recovery)).map_err(|_| no_key())?;
        let sig = RecoverableSignature::from_compact(&self.rs, id).map_err(|_| no_key())?;
        context()
            .recover_ecdsa(&Message::from_digest(prehash.0), &sig)
            .map_err(|_| no_key())
    }

    /// Recovers the signer's public key, to check later signatures of the same
    /// signer with [`Signature::verify_with_key`] (which saves the key's conversions
    /// and its address's hash, not the elliptic curve work: see there).
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if no public key recovers from it.
    pub fn recover_public_key(&self, prehash: &B256) -> Result<PublicKey> {
        PublicKey::from_secp(self.recover_key(prehash)?)
    }

    /// Checks this signature over `prehash` against a known public key: it passes
    /// exactly when recovery (`ecrecover`, and so a contract) gives `key`'s address.
    ///
    /// That includes the recovery id `v`: the same `r` and `s` with the other `v` pass
    /// plain ECDSA verification (libsecp256k1's `verify_ecdsa`) against the same key,
    /// but recover another address on chain, so a signature checked here and later
    /// redeemed must carry the right `v`. Plain verification cannot tell (it never
    /// learns the parity of `R`), so this recovers with libsecp256k1's `recover_ecdsa`
    /// and compares the key: the cost of a recovery, about 1.2 times a plain
    /// verification's (`cargo bench -p wallets --bench signing`).
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if it was not made by that key.
    pub fn verify_with_key(&self, prehash: &B256, key: &PublicKey) -> Result<()> {
        if self.recover_key(prehash).is_ok_and(|k| k == key.secp) {
            Ok(())
        } else {
            Err(Error::InvalidSignature(format!(
                "not made by {}",
                key.address()
            )))
        }
    }

    /// Plain ECDSA verification of `r` and `s` over `prehash` against a known key
    /// (libsecp256k1's `verify_ecdsa`); the recovery id `v` is not checked.
    ///
    /// For messages whose signature is checked here and never redeemed elsewhere, and
    /// whose identity does not depend on the signature's bytes: agent envelopes (their
    /// message id is the signing hash, so the same `r` and `s` with the other `v` is
    /// the same message, dropped as a duplicate). Anything that a contract or an
    /// auditor will `ecrecover` must pass [`Signature::verify_with_key`] instead, which
    /// checks `v` at the cost of a recovery. `s` must be low (as every signature made
    /// here is): a high `s` is refused, so no second `(r, s)` verifies.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if `r` and `s` were not made by that key over
    /// `prehash`.
    pub fn verify_ecdsa(&self, prehash: &B256, key: &PublicKey) -> Result<()> {
        let sig = secp256k1::ecdsa::Signature::from_compact(&self.rs)
            .map_err(|_| Error::InvalidSignature("r or s out of range".into()))?;
        context()
            .verify_ecdsa(&Message::from_digest(prehash.0), &sig, &key.secp)
            .map_err(|_| Error::InvalidSignature(format!("not made by {}", key.address())))
    }

    /// Checks that this signature over `prehash` was made by `expected`.
    ///
    /// # Errors
    /// [`Error::WrongSigner`] when it was made by another key, or as [`Signature::recover`].
    pub fn verify(&self, prehash: &B256, expected: Address) -> Result<()> {
        let actual = self.recover(prehash)?;
        if actual == expected {
            Ok(())
        } else {
            Err(Error::WrongSigner { expected, actual })
        }
    }

    /// Recovers the signer of an EIP-191 personal message.
    ///
    /// # Errors
    /// As [`Signature::recover`].
    pub fn recover_message(&self, message: &[u8]) -> Result<Address> {
        self.recover(&eip191::hash_message(message))
    }
}

/// A secp256k1 public key, with the address it belongs to.
///
/// It holds the key in both forms, k256's (the API's) and libsecp256k1's (the one
/// verification uses), and its address, so that none of them is converted or hashed
/// when a signature is checked against it.
#[derive(Clone, Copy)]
pub struct PublicKey {
    key: VerifyingKey,
    secp: secp256k1::PublicKey,
    address: Address,
}

impl PublicKey {
    /// Both forms of `key`.
    ///
    /// # Errors
    /// [`Error::InvalidSecretKey`] if libsecp256k1 refuses the point, which it does not
    /// for a point k256 holds (both check that it is on the curve).
    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Result<Self> {
        let point = key.to_encoded_point(false);
        let secp = secp256k1::PublicKey::from_slice(point.as_bytes())
            .map_err(|_| Error::InvalidSecretKey)?;
        Ok(Self {
            key,
            secp,
            address: Address::from_verifying_key(&key),
        })
    }

    /// Both forms of a key libsecp256k1 recovered.
    fn from_secp(secp: secp256k1::PublicKey) -> Result<Self> {
        let uncompressed = secp.serialize_uncompressed();
        let key = VerifyingKey::from_sec1_bytes(&uncompressed)
            .map_err(|_| Error::InvalidSignature("recovered an invalid public key".into()))?;
        Ok(Self {
            key,
            secp,
            address: Address::from_uncompressed(&uncompressed),
        })
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The 33-byte SEC1 compressed form.
    pub fn to_compressed(&self) -> [u8; 33] {
        self.secp.serialize()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        // The other fields follow from the point.
        self.key == other.key
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.address())
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::primitives::with_hex(&self.to_bytes(), |h| f.write_str(h))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Signature {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_hex(s)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        crate::primitives::with_hex(&self.to_bytes(), |h| s.serialize_str(h))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_str(d, Self::from_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_verification_agrees_with_recovery_including_the_recovery_id() {
        let wallet = crate::Wallet::random();
        let other = crate::Wallet::random();
        let key = wallet.public_key();
        for i in 0u32..64 {
            let message = i.to_be_bytes();
            let sig = wallet.sign_message(message).unwrap();
            let digest = eip191::hash_message(message);
            sig.verify_with_key(&digest, &key).unwrap();
            assert_eq!(sig.recover(&digest).unwrap(), wallet.address());
            // The same r and s with the other recovery id recovers another address,
            // and must not pass against the key either.
            let mut flipped = sig.to_bytes();
            flipped[64] = if flipped[64] == 27 { 28 } else { 27 };
            let flipped = Signature::from_bytes(&flipped).unwrap();
            assert_ne!(flipped.recover(&digest).ok(), Some(wallet.address()));
            assert!(flipped.verify_with_key(&digest, &key).is_err(), "v flipped");
            assert!(sig.verify_with_key(&digest, &other.public_key()).is_err());
            let wrong = eip191::hash_message(b"something else");
            assert!(sig.verify_with_key(&wrong, &key).is_err());
        }
    }

    #[test]
    fn plain_verification_checks_r_and_s_against_the_key_and_ignores_only_v() {
        let wallet = crate::Wallet::random();
        let other = crate::Wallet::random();
        let key = wallet.public_key();
        for i in 0u32..64 {
            let message = i.to_be_bytes();
            let sig = wallet.sign_message(message).unwrap();
            let digest = eip191::hash_message(message);
            sig.verify_ecdsa(&digest, &key).unwrap();
            // The other v is the same (r, s): plain ECDSA cannot tell, by design.
            let mut flipped = sig.to_bytes();
            flipped[64] = if flipped[64] == 27 { 28 } else { 27 };
            Signature::from_bytes(&flipped)
                .unwrap()
                .verify_ecdsa(&digest, &key)
                .unwrap();
            // Another key, another digest, or any changed byte of r or s fails.
            assert!(sig.verify_ecdsa(&digest, &other.public_key()).is_err());
            let wrong = eip191::hash_message(b"something else");
            assert!(sig.verify_ecdsa(&wrong, &key).is_err());
            for byte in [0, 31, 32, 63] {
                let mut tampered = sig.to_bytes();
                tampered[byte] ^= 1;
                if let Ok(t) = Signature::from_bytes(&tampered) {
                    assert!(t.verify_ecdsa(&digest, &key).is_err(), "byte {byte}");
                }
            }
        }
    }

    #[test]
    fn round_trips_over_random_keys() {
        for i in 0u32..200 {
            let wallet = crate::Wallet::random();
            let digest = crate::keccak256(i.to_be_bytes());
            let sig = wallet.sign_hash(&digest).unwrap();
            assert_eq!(Signature::from_bytes(&sig.to_bytes()).unwrap(), sig);
            assert_eq!(sig.recover(&digest).unwrap(), wallet.address());
            sig.verify(&digest, wallet.address()).unwrap();
            let key = sig.recover_public_key(&digest).unwrap();
            assert_eq!(key, wallet.public_key());
            assert_eq!(key.address(), wallet.address());
            // Both forms the key holds are the same point.
            let k256_compressed = wallet.verifying_key().to_encoded_point(true);
            assert_eq!(key.to_compressed().as_slice(), k256_compressed.as_bytes());
            sig.verify_with_key(&digest, &key).unwrap();
            // A flipped v recovers another address and fails both checks.
            let mut bytes = sig.to_bytes();
            bytes[64] = 55 - bytes[64]; // 27 <-> 28
            let flipped = Signature::from_bytes(&bytes).unwrap();
            assert_ne!(flipped.recover(&digest).ok(), Some(wallet.address()));
            assert!(matches!(
                flipped.verify(&digest, wallet.address()),
                Err(Error::WrongSigner { .. } | Error::InvalidSignature(_))
            ));
            assert!(flipped.verify_with_key(&digest, &key).is_err());
            // Another digest, a changed r or s: no longer this key's.
            let other = crate::keccak256(digest.as_bytes());
            assert!(sig.verify_with_key(&other, &key).is_err());
            assert!(sig.verify(&other, wallet.address()).is_err());
            for at in [0usize, 31, 32, 63] {
                let mut bytes = sig.to_bytes();
                bytes[at] ^= 0x01;
                if let Ok(tampered) = Signature::from_bytes(&bytes) {
                    assert!(
                        tampered.verify_with_key(&digest, &key).is_err(),
                        "byte {at}"
                    );
                    assert_ne!(tampered.recover(&digest).ok(), Some(wallet.address()));
                }
            }
        }
    }

    #[test]
    fn high_s_is_rejected_and_the_low_twin_verifies() {
        // s = n - 1 is high; n / 2 (rounded down) is the highest low s.
        let n_minus_1 = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";
        let half_n = "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0";
        let mut bytes = [0u8; 65];
        bytes[31] = 1;
        bytes[64] = 27;
        bytes[32..64].copy_from_slice(&hex::decode(n_minus_1).unwrap());
        assert!(matches!(Signature::from_bytes(&bytes), Err(Error::HighS)));
        bytes[32..64].copy_from_slice(&hex::decode(half_n).unwrap());
        assert!(Signature::from_bytes(&bytes).is_ok());
        let above_half = "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a1";
        bytes[32..64].copy_from_slice(&hex::decode(above_half).unwrap());
        assert!(matches!(Signature::from_bytes(&bytes), Err(Error::HighS)));
    }

    #[test]
    fn signatures_from_libsecp256k1_are_checked_like_parsed_ones() {
        let rs = [0u8; 64];
        let zero = RecoveryId::from_i32(0).unwrap();
        assert!(matches!(
            Signature::from_compact(rs, zero),
            Err(Error::InvalidSignature(_))
        ));
        let mut rs = [0u8; 64];
        rs[31] = 1;
        rs[32..].copy_from_slice(
            &hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140")
                .unwrap(),
        );
        assert!(matches!(
            Signature::from_compact(rs, zero),
            Err(Error::HighS)
        ));
        rs[63] = 1;
        rs[32] = 0;
        let two = RecoveryId::from_i32(2).unwrap();
        assert!(matches!(
            Signature::from_compact(rs, two),
            Err(Error::InvalidSignature(_))
        ));
        let sig = Signature::from_compact(rs, RecoveryId::from_i32(1).unwrap()).unwrap();
        assert_eq!(sig.v(), 28);
    }

    #[test]
    fn rejects_wrong_lengths() {
        for len in [0usize, 64, 66, 130] {
            let err = Signature::from_bytes(&vec![1u8; len]).unwrap_err();
            assert!(
                matches!(err, Error::Length { expected: 65, actual, .. } if actual == len),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn rejects_bad_recovery_id() {
        let mut bytes = [1u8; 65];
        bytes[64] = 29;
        assert!(matches!(
            Signature::from_bytes(&bytes),
            Err(Error::InvalidRecoveryId(29))
        ));
    }

    #[test]
    fn verify_with_a_known_key() {
        let wallet = crate::Wallet::random();
        let digest = crate::keccak256("envelope");
        let sig = wallet.sign_message("envelope").unwrap();
        let hash = crate::eip191::hash_message("envelope");
        let key = sig.recover_public_key(&hash).unwrap();
        assert_eq!(key.address(), wallet.address());
        assert!(sig.verify_with_key(&hash, &key).is_ok());
        assert!(sig.verify_with_key(&digest, &key).is_err());
        let other = crate::Wallet::random().sign_message("envelope").unwrap();
        let other_key = other.recover_public_key(&hash).unwrap();
        assert!(sig.verify_with_key(&hash, &other_key).is_err());
    }

    #[test]
    fn rejects_zero_r() {
        let mut bytes = [0u8; 65];
        bytes[63] = 1;
        bytes[64] = 27;
        assert!(matches!(
            Signature::from_bytes(&bytes),
            Err(Error::InvalidSignature(_))
        ));
    }
}
