//! The agent's key: generation, import, signing.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use k256::ecdsa::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::eip712::{Eip712, Eip712Domain, TypedData, PAYMENT_TYPES};
use crate::primitives::decode_hex;
use crate::{eip191, Address, Error, Result, Signature, B256};

/// A secp256k1 key pair with its Ethereum address.
///
/// The secret is zeroized when the wallet is dropped and never printed: `Debug`
/// shows only the address. Plain signing covers EIP-191 messages and EIP-712 typed
/// data; payment types are refused here and signed only by
/// [`crate::SpendingPolicy::authorize`]. A type counts as a payment by its type hash,
/// whatever it calls itself, and so does any typed data in the domain of a contract
/// that holds money for the wallet ([`Wallet::guard_contract`]).
pub struct Wallet {
    /// The secret, held by k256 (zeroized on drop). libsecp256k1 gets a copy for
    /// each signature only, erased right after (see [`Wallet::sign_hash`]).
    key: SigningKey,
    /// The public key in both forms, and the address.
    public: crate::PublicKey,
    /// Contracts whose EIP-712 domain plain typed signing refuses (the token, escrow
    /// and channel contracts of the policies that use this wallet). Only ever grows.
    guarded: RwLock<BTreeSet<Address>>,
}

impl Wallet {
    /// A new key from the operating system's random number generator.
    pub fn random() -> Self {
        loop {
            // k256 makes only valid keys, which libsecp256k1 takes: one round.
            if let Ok(wallet) = Self::from_signing_key(SigningKey::random(&mut rand::rngs::OsRng)) {
                return wallet;
            }
        }
    }

    /// Imports a 32-byte secret key.
    ///
    /// # Errors
    /// [`Error::Length`] or [`Error::InvalidSecretKey`] (zero or not below the curve order).
    pub fn from_bytes(secret: &[u8]) -> Result<Self> {
        if secret.len() != 32 {
            return Err(Error::Length {
                what: "secret key",
                expected: 32,
                actual: secret.len(),
            });
        }
        let key = SigningKey::from_slice(secret).map_err(|_| Error::InvalidSecretKey)?;
        Self::from_signing_key(key)
    }

    /// Imports a secret key written as hex (with or without `0x`).
    ///
    /// # Errors
    /// As [`Wallet::from_bytes`], plus [`Error::Hex`]; the error never echoes the input.
    pub fn from_hex(secret: &str) -> Result<Self> {
        // Map the decoder's error to a generic one: it would quote a character of the secret.
        let bytes =
            Zeroizing::new(
                decode_hex("secret key", secret.trim()).map_err(|_| Error::Hex {
                    what: "secret key",
                    reason: "not valid hex".into(),
                })?,
            );
        Self::from_bytes(&bytes)
    }

    fn from_signing_key(key: SigningKey) -> Result<Self> {
        let public = crate::PublicKey::from_verifying_key(*key.verifying_key())?;
        Ok(Self {
            key,
            public,
            guarded: RwLock::new(BTreeSet::new()),
        })
    }

    /// From now on refuses to sign any typed data in the EIP-712 domain of `contract`
    /// outside the spending policy, whatever its type: a token, escrow or channel
    /// contract may accept signatures of types beyond the ones this crate knows.
    /// [`crate::SpendingPolicy`] guards the contracts it is pinned to; there is no way
    /// to lift a guard.
    pub fn guard_contract(&self, contract: Address) {
        self.guarded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(contract);
    }

    /// Whether plain typed signing refuses the domain of `contract`.
    pub fn is_guarded(&self, contract: Address) -> bool {
        self.guarded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&contract)
    }

    /// Refuses typed data that could move money: a payment type (by its type hash, or
    /// by its name) or any type in a guarded contract's domain.
    fn refuse_payment(&self, name: &str, type_hash: B256, contract: Option<Address>) -> Result<()> {
        if PAYMENT_TYPES.contains(&name) || crate::payment::is_payment_type_hash(&type_hash) {
            return Err(Error::PaymentOutsidePolicy(name.to_owned()));
        }
        match contract {
            Some(c) if self.is_guarded(c) => Err(Error::PaymentOutsidePolicy(format!(
                "{name} in the domain of {c}, a contract that holds this wallet's money"
            ))),
            _ => Ok(()),
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.public.address()
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key.
    pub fn public_key(&self) -> crate::PublicKey {
        self.public
    }

    /// The secret key bytes, for writing a keystore. Zeroized when dropped.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes().into())
    }

    /// Signs a 32-byte digest with libsecp256k1: deterministic (RFC 6979, the very
    /// bytes k256 makes for the same key and digest: a test checks), low-s, recoverable.
    ///
    /// libsecp256k1 takes the secret as its own `SecretKey`, a plain copyable array
    /// that is not erased on drop; so one is made here for this signature only, from
    /// k256's key (which keeps the secret, zeroized on drop), and erased with
    /// `non_secure_erase` before returning. Making it costs well under 1% of a signature.
    ///
    /// Crate-private on purpose: outside this crate a digest could be a payment in
    /// disguise, so callers go through the typed functions below.
    pub(crate) fn sign_hash(&self, digest: &B256) -> Result<Signature> {
        let bytes = Zeroizing::new(<[u8; 32]>::from(self.key.to_bytes()));
        let mut secret = secp256k1::SecretKey::from_slice(bytes.as_ref())
            .map_err(|_| Error::InvalidSecretKey)?;
        drop(bytes);
        let sig = crate::signature::context()
            .sign_ecdsa_recoverable(&secp256k1::Message::from_digest(digest.0), &secret);
        secret.non_secure_erase();
        let (recovery, rs) = sig.serialize_compact();
        Signature::from_compact(rs, recovery)
    }

    /// Signs an EIP-191 personal message.
    ///
    /// # Errors
    /// Only if the underlying signer fails, which it does not for valid keys.
    pub fn sign_message(&self, message: impl AsRef<[u8]>) -> Result<Signature> {
        self.sign_hash(&eip191::hash_message(message))
    }

    /// Signs a Rust EIP-712 struct in `domain`.
    ///
    /// # Errors
    /// [`Error::PaymentOutsidePolicy`] for payment types (by type hash, whatever
    /// `T::NAME` says) and for any type in a guarded contract's domain.
    pub fn sign_typed<T: Eip712>(&self, domain: &Eip712Domain, value: &T) -> Result<Signature> {
        self.refuse_payment(T::NAME, T::type_hash(), domain.verifying_contract)?;
        self.sign_hash(&value.signing_hash(domain))
    }

    /// Signs JSON typed data (`eth_signTypedData_v4`).
    ///
    /// # Errors
    /// [`Error::PaymentOutsidePolicy`] for payment types and for any type in a guarded
    /// contract's domain, [`Error::TypedData`] for data that does not encode.
    pub fn sign_typed_data(&self, data: &TypedData) -> Result<Signature> {
        let type_hash = crate::keccak256(data.encode_type(&data.primary_type)?);
        self.refuse_payment(&data.primary_type, type_hash, data.verifying_contract()?)?;
        self.sign_hash(&data.signing_hash()?)
    }
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keccak256;

    fn cow() -> Wallet {
        Wallet::from_bytes(keccak256("cow").as_bytes()).unwrap()
    }

    #[test]
    fn signatures_are_the_bytes_k256_makes() {
        // RFC 6979 nonces are deterministic, so libsecp256k1 and k256 must agree on
        // every byte of every signature.
        for i in 0u32..300 {
            let w = Wallet::random();
            let digest = crate::keccak256(i.to_be_bytes());
            let ours = w.sign_hash(&digest).unwrap();
            let (sig, recovery) = w.key.sign_prehash_recoverable(digest.as_bytes()).unwrap();
            let mut theirs = [0u8; 65];
            theirs[..64].copy_from_slice(&sig.to_bytes());
            theirs[64] = 27 + recovery.to_byte();
            assert_eq!(ours.to_bytes(), theirs, "key {i}");
            assert_eq!(ours.recover(&digest).unwrap(), w.address());
        }
    }

    #[test]
    fn eip712_mail_signature_vector() {
        // EIP-712's Example.js signs Mail with keccak256("cow") and prints v, r, s.
        let td = TypedData::from_json(crate::eip712::tests_support::MAIL_JSON).unwrap();
        let wallet = cow();
        assert_eq!(
            wallet.address().to_string(),
            "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
        );
        let sig = wallet.sign_typed_data(&td).unwrap();
        assert_eq!(sig.v(), 28);
        assert_eq!(
            sig.r().to_string(),
            "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d"
        );
        assert_eq!(
            sig.s().to_string(),
            "0x07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562"
        );
        assert_eq!(
            sig.recover(&td.signing_hash().unwrap()).unwrap(),
            wallet.address()
        );
    }

    #[test]
    fn personal_message_vector() {
        // The private key 0x4c0883a6...362318 is web3.js's documentation key; its
        // signature of "Some data" is published in web3.eth.accounts.sign's docs.
        let wallet =
            Wallet::from_hex("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
                .unwrap();
        assert_eq!(
            wallet.address().to_string(),
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
        let sig = wallet.sign_message("Some data").unwrap();
        assert_eq!(
            sig.to_string(),
            "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c"
        );
        assert_eq!(sig.recover_message(b"Some data").unwrap(), wallet.address());
    }

    #[test]
    fn high_s_is_rejected() {
        let wallet = cow();
        let sig = wallet.sign_message("x").unwrap();
        // Build the malleable twin (r, n - s, v ^ 1), with k256's scalar negation:
        // valid for raw ECDSA, not for us.
        let low = k256::ecdsa::Signature::from_slice(&sig.to_bytes()[..64]).unwrap();
        let (r, s) = low.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(high.normalize_s().is_some());
        let mut bytes = sig.to_bytes();
        bytes[..64].copy_from_slice(&high.to_bytes());
        bytes[64] = 55 - bytes[64]; // 27 <-> 28
        let res = Signature::from_bytes(&bytes);
        assert!(matches!(res, Err(Error::HighS)), "{res:?}");
    }

    #[test]
    fn payment_types_are_refused() {
        let mut td = TypedData::from_json(crate::eip712::tests_support::MAIL_JSON).unwrap();
        let mail = td.types.remove("Mail").unwrap();
        td.types.insert("TransferWithAuthorization".into(), mail);
        td.primary_type = "TransferWithAuthorization".into();
        assert!(matches!(
            cow().sign_typed_data(&td),
            Err(Error::PaymentOutsidePolicy(t)) if t == "TransferWithAuthorization"
        ));
    }

    /// Regression: the refusal went by `T::NAME` while the signature covers
    /// `T::TYPE`, so a type that called itself "Note" got an EIP-3009 authorization
    /// signed outside the policy.
    #[test]
    fn a_payment_type_under_another_name_is_refused() {
        struct Note(crate::TransferWithAuthorization);
        impl Eip712 for Note {
            const NAME: &'static str = "Note";
            const TYPE: &'static str = <crate::TransferWithAuthorization as Eip712>::TYPE;
            fn struct_hash(&self) -> B256 {
                self.0.struct_hash()
            }
        }
        let wallet = cow();
        let transfer = crate::TransferWithAuthorization {
            from: wallet.address(),
            to: Address([9; 20]),
            value: "100 USDC".parse().unwrap(),
            valid_after: 0,
            valid_before: u64::MAX,
            nonce: B256([1; 32]),
        };
        let domain = Eip712Domain::new("USD Coin", "2", 1337, Address([7; 20]));
        assert!(matches!(
            wallet.sign_typed(&domain, &Note(transfer)),
            Err(Error::PaymentOutsidePolicy(t)) if t == "Note"
        ));
    }

    #[test]
    fn typed_data_in_a_guarded_domain_is_refused() {
        let wallet = cow();
        let td = TypedData::from_json(crate::eip712::tests_support::MAIL_JSON).unwrap();
        let contract = td.verifying_contract().unwrap().unwrap();
        assert!(wallet.sign_typed_data(&td).is_ok());
        wallet.guard_contract(contract);
        assert!(matches!(
            wallet.sign_typed_data(&td),
            Err(Error::PaymentOutsidePolicy(t)) if t.contains("Mail")
        ));
        // The same through a Rust type in that domain.
        struct Ping;
        impl Eip712 for Ping {
            const NAME: &'static str = "Ping";
            const TYPE: &'static str = "Ping()";
            fn struct_hash(&self) -> B256 {
                Self::type_hash()
            }
        }
        let domain = Eip712Domain::new("Any", "1", 1, contract);
        assert!(wallet.sign_typed(&domain, &Ping).is_err());
        let elsewhere = Eip712Domain::new("Any", "1", 1, Address([3; 20]));
        assert!(wallet.sign_typed(&elsewhere, &Ping).is_ok());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        let wallet = Wallet::from_hex(secret).unwrap();
        let shown = format!("{wallet:?} {wallet:#?}");
        assert!(
            !shown.contains(secret) && !shown.contains("4c0883"),
            "{shown}"
        );
        assert!(shown.contains("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"));
    }

    #[test]
    fn import_errors_do_not_echo_the_input() {
        let err = Wallet::from_hex("0xnothexsecretmaterial")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secretmaterial"), "{err}");
        assert!(matches!(
            Wallet::from_bytes(&[0u8; 32]),
            Err(Error::InvalidSecretKey)
        ));
        assert!(matches!(
            Wallet::from_bytes(&[1u8; 31]),
            Err(Error::Length { .. })
        ));
    }
}
