//! Recoverable secp256k1 signatures in Ethereum's 65-byte `r || s || v` form.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::primitives::decode_hex;
use crate::{eip191, Address, Error, Result, B256};

/// A recoverable, low-s ECDSA signature over secp256k1.
///
/// Constructing one from bytes rejects high-s values (EIP-2) and invalid recovery
/// ids, so a `Signature` in hand is always in canonical form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    inner: EcdsaSignature,
    recovery: RecoveryId,
}

impl Signature {
    /// Byte length of the serialized form.
    pub const LEN: usize = 65;

    pub(crate) fn from_parts(inner: EcdsaSignature, recovery: RecoveryId) -> Self {
        Self { inner, recovery }
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
        let recovery_byte = match v {
            27 | 28 => v - 27,
            0 | 1 => v,
            other => return Err(Error::InvalidRecoveryId(other)),
        };
        let inner = EcdsaSignature::from_slice(rs)
            .map_err(|_| Error::InvalidSignature("r or s is zero or out of range".into()))?;
        if inner.normalize_s().is_some() {
            return Err(Error::HighS);
        }
        let recovery =
            RecoveryId::from_byte(recovery_byte).ok_or(Error::InvalidRecoveryId(recovery_byte))?;
        Ok(Self { inner, recovery })
    }

    /// Parses `0x`-prefixed hex of 65 bytes.
    ///
    /// # Errors
    /// As [`Signature::from_bytes`], plus [`Error::Hex`].
    pub fn from_hex(s: &str) -> Result<Self> {
        Self::from_bytes(&decode_hex("signature", s)?)
    }

    /// The 65-byte form with `v` in {27, 28}.
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&self.inner.to_bytes());
        out[64] = 27 + self.recovery.to_byte();
        out
    }

    /// `r` as 32 bytes.
    pub fn r(&self) -> B256 {
        B256(self.inner.r().to_bytes().into())
    }

    /// `s` as 32 bytes.
    pub fn s(&self) -> B256 {
        B256(self.inner.s().to_bytes().into())
    }

    /// `v` in {27, 28}.
    pub fn v(&self) -> u8 {
        27 + self.recovery.to_byte()
    }

    /// Recovers the signer's address from a 32-byte prehash.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if no public key recovers from it.
    pub fn recover(&self, prehash: &B256) -> Result<Address> {
        Ok(Address::from_verifying_key(&self.recover_key(prehash)?))
    }

    pub(crate) fn recover_key(&self, prehash: &B256) -> Result<VerifyingKey> {
        VerifyingKey::recover_from_prehash(prehash.as_bytes(), &self.inner, self.recovery)
            .map_err(|_| Error::InvalidSignature("no public key recovers from it".into()))
    }

    /// Recovers the signer's public key, to verify later signatures of the same
    /// signer with [`Signature::verify_with_key`] (about twice as fast as recovery).
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if no public key recovers from it.
    pub fn recover_public_key(&self, prehash: &B256) -> Result<PublicKey> {
        self.recover_key(prehash).map(PublicKey)
    }

    /// Checks this signature over `prehash` against a known public key.
    ///
    /// # Errors
    /// [`Error::InvalidSignature`] if it was not made by that key.
    pub fn verify_with_key(&self, prehash: &B256, key: &PublicKey) -> Result<()> {
        if self.point_matches(prehash, key) {
            Ok(())
        } else {
            Err(Error::InvalidSignature(format!(
                "not made by {}",
                key.address()
            )))
        }
    }

    /// ECDSA verification that also checks the recovery id: the point
    /// `R = z/s·G + r/s·Q` must have x ≡ r and the y parity `v` names, so that a
    /// signature passes here exactly when recovery (`ecrecover`) gives `key`'s address.
    fn point_matches(&self, prehash: &B256, key: &PublicKey) -> bool {
        use k256::elliptic_curve::ops::{LinearCombination, Reduce};
        use k256::elliptic_curve::point::AffineCoordinates;
        use k256::{ProjectivePoint, Scalar, U256};
        if self.recovery.is_x_reduced() {
            // r was reduced from an x beyond the group order: astronomically rare.
            return self.recover_key(prehash).is_ok_and(|k| k == key.0);
        }
        let (r, s) = self.inner.split_scalars();
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&(*prehash.as_bytes()).into());
        let Some(s_inv) = crate::modinv::invert_scalar_vartime(&s) else {
            return false;
        };
        let (u1, u2) = (z * s_inv, *r * s_inv);
        let q = key.0.as_affine();
        let point = match crate::key_table::table_for(key.to_compressed(), q) {
            Some(table) => table.lincomb(&u1, &u2).to_affine(),
            None => {
                let p = ProjectivePoint::lincomb(
                    &ProjectivePoint::GENERATOR,
                    &u1,
                    &ProjectivePoint::from(*q),
                    &u2,
                )
                .to_affine();
                let identity =
                    k256::elliptic_curve::group::prime::PrimeCurveAffine::is_identity(&p);
                (!bool::from(identity)).then(|| (p.x().into(), bool::from(p.y_is_odd())))
            }
        };
        let Some((x, y_odd)) = point else {
            return false;
        };
        let x = <Scalar as Reduce<U256>>::reduce_bytes(&x.into());
        x == *r && y_odd == self.recovery.is_y_odd()
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
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        Address::from_verifying_key(&self.0)
    }

    /// The 33-byte SEC1 compressed form.
    pub fn to_compressed(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.0.to_encoded_point(true).as_bytes());
        out
    }
}

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
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
        // Most of the checks above ran on the key's table of multiples.
        assert!(crate::key_table::has_table(&key.to_compressed()));
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
