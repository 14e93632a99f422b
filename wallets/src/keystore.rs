//! Web3 Secret Storage v3 keystores, the format geth, cast and eth-account use.
//!
//! Reading accepts scrypt and pbkdf2 (hmac-sha256) key derivation with AES-128-CTR;
//! writing uses scrypt. Files are written atomically (temporary file, fsync, rename)
//! with mode 0600 and never overwrite an existing keystore.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::primitives::decode_hex;
use crate::{keccak256, Address, Error, Result, Wallet};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// How expensive the scrypt derivation of a new keystore is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KdfStrength {
    /// geth's standard parameters: n = 2^18, r = 8, p = 1 (about 256 MiB and a second).
    #[default]
    Standard,
    /// geth's light parameters: n = 2^12, r = 8, p = 6. For dev chains and tests.
    Light,
}

impl KdfStrength {
    fn params(self) -> (u8, u32, u32) {
        match self {
            Self::Standard => (18, 8, 1),
            Self::Light => (12, 8, 6),
        }
    }
}

/// The JSON document of a v3 keystore.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeystoreFile {
    /// The encrypted key and how to derive the decryption key.
    #[serde(alias = "Crypto")]
    pub crypto: CryptoSection,
    /// A UUID for the file.
    pub id: String,
    /// Must be 3.
    pub version: u32,
    /// The address, lowercase hex without `0x` (optional in the standard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The `crypto` section of a keystore.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CryptoSection {
    /// Must be `aes-128-ctr`.
    pub cipher: String,
    /// The cipher's parameters.
    pub cipherparams: CipherParams,
    /// The encrypted secret key, hex.
    pub ciphertext: String,
    /// `scrypt` or `pbkdf2`.
    pub kdf: String,
    /// The KDF's parameters (their shape depends on `kdf`).
    pub kdfparams: serde_json::Value,
    /// `keccak256(derived_key[16..32] || ciphertext)`, hex.
    pub mac: String,
}

/// AES-CTR parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CipherParams {
    /// The 16-byte initial counter, hex.
    pub iv: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScryptParams {
    dklen: usize,
    n: u64,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pbkdf2Params {
    c: u32,
    dklen: usize,
    prf: String,
    salt: String,
}

/// Largest scrypt `n` accepted when reading (2^20, four times geth's standard), so a
/// hostile keystore cannot make us allocate gigabytes.
const MAX_SCRYPT_N: u64 = 1 << 20;
/// Largest pbkdf2 iteration count accepted when reading.
const MAX_PBKDF2_C: u32 = 10_000_000;

impl KeystoreFile {
    /// Encrypts `wallet` under `password` with scrypt.
    ///
    /// # Errors
    /// Only if the KDF rejects its parameters, which the fixed presets never are.
    pub fn encrypt(wallet: &Wallet, password: &[u8], strength: KdfStrength) -> Result<Self> {
        let mut salt = [0u8; 32];
        let mut iv = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
        let (log_n, r, p) = strength.params();
        let derived = scrypt_key(password, &salt, log_n, r, p, Path::new("<new>"))?;

        let secret = wallet.secret_bytes();
        let mut ciphertext = secret.to_vec();
        apply_aes_ctr(&derived, &iv, &mut ciphertext);

        Ok(Self {
            crypto: CryptoSection {
                cipher: "aes-128-ctr".into(),
                cipherparams: CipherParams {
                    iv: hex::encode(iv),
                },
                ciphertext: hex::encode(&ciphertext),
                kdf: "scrypt".into(),
                kdfparams: serde_json::json!({
                    "dklen": 32, "n": 1u64 << log_n, "r": r, "p": p, "salt": hex::encode(salt),
                }),
                mac: hex::encode(mac(&derived, &ciphertext).as_bytes()),
            },
            id: uuid::Uuid::new_v4().to_string(),
            version: 3,
            address: Some(hex::encode(wallet.address().as_bytes())),
        })
    }

    /// Decrypts the key. `path` only labels errors.
    ///
    /// # Errors
    /// [`Error::KeystoreMac`] for a wrong password, [`Error::Keystore`] for an
    /// unsupported or malformed file (naming the field).
    pub fn decrypt(&self, password: &[u8], path: &Path) -> Result<Wallet> {
        let bad = |reason: String| Error::Keystore {
            path: path.to_owned(),
            reason,
        };
        if self.version != 3 {
            return Err(bad(format!(
                "version {} is not supported (expected 3)",
                self.version
            )));
        }
        let c = &self.crypto;
        if c.cipher != "aes-128-ctr" {
            return Err(bad(format!(
                "cipher {:?} is not supported (expected aes-128-ctr)",
                c.cipher
            )));
        }
        let hex_field = |name: &'static str, value: &str| {
            decode_hex(name, value).map_err(|e| bad(format!("crypto.{name}: {e}")))
        };
        let iv = hex_field("cipherparams.iv", &c.cipherparams.iv)?;
        let iv: [u8; 16] = iv.as_slice().try_into().map_err(|_| {
            bad(format!(
                "crypto.cipherparams.iv must be 16 bytes, got {}",
                iv.len()
            ))
        })?;
        let ciphertext = hex_field("ciphertext", &c.ciphertext)?;
        let expected_mac = hex_field("mac", &c.mac)?;

        let derived = match c.kdf.as_str() {
            "scrypt" => {
                let p: ScryptParams = serde_json::from_value(c.kdfparams.clone())
                    .map_err(|e| bad(format!("crypto.kdfparams: {e}")))?;
                check_dklen(p.dklen, &bad)?;
                if !p.n.is_power_of_two() || p.n < 2 || p.n > MAX_SCRYPT_N {
                    return Err(bad(format!(
                        "crypto.kdfparams.n = {} must be a power of two between 2 and {MAX_SCRYPT_N}",
                        p.n
                    )));
                }
                let salt = hex_field("kdfparams.salt", &p.salt)?;
                // n is a power of two no larger than 2^20, so its log fits in a u8.
                let log_n = u8::try_from(p.n.trailing_zeros()).unwrap_or(u8::MAX);
                scrypt_key(password, &salt, log_n, p.r, p.p, path)?
            }
            "pbkdf2" => {
                let p: Pbkdf2Params = serde_json::from_value(c.kdfparams.clone())
                    .map_err(|e| bad(format!("crypto.kdfparams: {e}")))?;
                check_dklen(p.dklen, &bad)?;
                if p.prf != "hmac-sha256" {
                    return Err(bad(format!(
                        "crypto.kdfparams.prf {:?} is not supported (expected hmac-sha256)",
                        p.prf
                    )));
                }
                if p.c == 0 || p.c > MAX_PBKDF2_C {
                    return Err(bad(format!(
                        "crypto.kdfparams.c = {} must be between 1 and {MAX_PBKDF2_C}",
                        p.c
                    )));
                }
                let salt = hex_field("kdfparams.salt", &p.salt)?;
                let mut key = Zeroizing::new([0u8; 32]);
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, p.c, key.as_mut());
                key
            }
            other => {
                return Err(bad(format!(
                    "crypto.kdf {other:?} is not supported (expected scrypt or pbkdf2)"
                )))
            }
        };

        // In constant time: how much of a guessed MAC matches must not show in timing.
        let computed = mac(&derived, &ciphertext);
        if !bool::from(
            computed
                .as_bytes()
                .as_slice()
                .ct_eq(expected_mac.as_slice()),
        ) {
            return Err(Error::KeystoreMac(path.to_owned()));
        }
        let mut secret = Zeroizing::new(ciphertext);
        apply_aes_ctr(&derived, &iv, &mut secret);
        let wallet = Wallet::from_bytes(&secret).map_err(|e| bad(format!("decrypted key: {e}")))?;
        if let Some(stated) = &self.address {
            let stated = Address::parse(stated).map_err(|e| bad(format!("address: {e}")))?;
            if stated != wallet.address() {
                return Err(bad(format!(
                    "address field says {stated} but the key belongs to {}",
                    wallet.address()
                )));
            }
        }
        Ok(wallet)
    }

    /// Reads and parses a keystore file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Keystore`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Keystore {
            path: path.to_owned(),
            reason: format!("not a v3 keystore: {e}"),
        })
    }

    /// The address the file declares, if any, without decrypting.
    ///
    /// # Errors
    /// [`Error::Keystore`] if the field is not an address.
    pub fn address(&self, path: &Path) -> Result<Option<Address>> {
        self.address
            .as_deref()
            .map(|a| {
                Address::parse(a).map_err(|e| Error::Keystore {
                    path: path.to_owned(),
                    reason: format!("address: {e}"),
                })
            })
            .transpose()
    }

    /// Writes the keystore to `path` atomically with mode 0600. Refuses to replace
    /// an existing file.
    ///
    /// # Errors
    /// [`Error::Keystore`] if the file exists, [`Error::Io`] for write failures.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        if path.exists() {
            return Err(Error::Keystore {
                path: path.to_owned(),
                reason: "file already exists; refusing to overwrite a key".into(),
            });
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp: PathBuf = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("keystore"),
            std::process::id()
        ));
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Keystore {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            let mut f = options.open(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            // hard_link fails if `path` appeared meanwhile, so we never clobber a key.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(path, e)
        })
    }
}

/// Reads and decrypts a keystore file in one step.
///
/// # Errors
/// As [`KeystoreFile::read`] and [`KeystoreFile::decrypt`].
pub fn load(path: &Path, password: &[u8]) -> Result<Wallet> {
    KeystoreFile::read(path)?.decrypt(password, path)
}

fn check_dklen(dklen: usize, bad: &impl Fn(String) -> Error) -> Result<()> {
    if dklen == 32 {
        Ok(())
    } else {
        Err(bad(format!(
            "crypto.kdfparams.dklen = {dklen} is not supported (expected 32)"
        )))
    }
}

fn scrypt_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    crate::scrypt::derive(password, salt, log_n, r, p, key.as_mut()).map_err(|reason| {
        Error::Keystore {
            path: path.to_owned(),
            reason: format!("crypto.kdfparams: {reason}"),
        }
    })?;
    Ok(key)
}

fn mac(derived: &[u8; 32], ciphertext: &[u8]) -> crate::B256 {
    let mut buf = Vec::with_capacity(16 + ciphertext.len());
    buf.extend_from_slice(derived.get(16..).unwrap_or_default());
    buf.extend_from_slice(ciphertext);
    keccak256(buf)
}

fn apply_aes_ctr(derived: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let mut key = [0u8; 16];
    key.copy_from_slice(derived.get(..16).unwrap_or(&[0u8; 16]));
    let mut cipher = Aes128Ctr::new(&key.into(), iv.into());
    cipher.apply_keystream(data);
    zeroize::Zeroize::zeroize(&mut key);
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_KEY: &str = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";

    /// The PBKDF2 test vector of the Web3 Secret Storage definition.
    const PBKDF2_VECTOR: &str = r#"{
        "crypto" : {
            "cipher" : "aes-128-ctr",
            "cipherparams" : { "iv" : "6087dab2f9fdbbfaddc31a909735c1e6" },
            "ciphertext" : "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
            "kdf" : "pbkdf2",
            "kdfparams" : { "c" : 262144, "dklen" : 32, "prf" : "hmac-sha256",
                "salt" : "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd" },
            "mac" : "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"
        },
        "id" : "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version" : 3
    }"#;

    /// The scrypt test vector of the Web3 Secret Storage definition.
    const SCRYPT_VECTOR: &str = r#"{
        "crypto" : {
            "cipher" : "aes-128-ctr",
            "cipherparams" : { "iv" : "83dbcc02d8ccb40e466191a123791e0e" },
            "ciphertext" : "d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c",
            "kdf" : "scrypt",
            "kdfparams" : { "dklen" : 32, "n" : 262144, "r" : 1, "p" : 8,
                "salt" : "ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19" },
            "mac" : "2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"
        },
        "id" : "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version" : 3
    }"#;

    fn vector(json: &str) -> KeystoreFile {
        serde_json::from_str(json).unwrap()
    }

    fn secret_of(w: &Wallet) -> String {
        hex::encode(*w.secret_bytes())
    }

    #[test]
    fn pbkdf2_vector_decrypts_to_published_key() {
        let w = vector(PBKDF2_VECTOR)
            .decrypt(b"testpassword", Path::new("vector"))
            .unwrap();
        assert_eq!(secret_of(&w), VECTOR_KEY);
    }

    #[test]
    fn scrypt_vector_decrypts_to_published_key() {
        let w = vector(SCRYPT_VECTOR)
            .decrypt(b"testpassword", Path::new("vector"))
            .unwrap();
        assert_eq!(secret_of(&w), VECTOR_KEY);
    }

    #[test]
    fn wrong_password_is_a_mac_error() {
        let err = vector(PBKDF2_VECTOR)
            .decrypt(b"testpassworD", Path::new("vector.json"))
            .unwrap_err();
        assert!(matches!(err, Error::KeystoreMac(_)), "{err}");
        assert!(err.to_string().contains("vector.json"));
    }

    #[test]
    fn written_keystore_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        let wallet = Wallet::random();
        KeystoreFile::encrypt(&wallet, b"pw", KdfStrength::Light)
            .unwrap()
            .write_new(&path)
            .unwrap();
        let back = load(&path, b"pw").unwrap();
        assert_eq!(back.address(), wallet.address());
        let file = KeystoreFile::read(&path).unwrap();
        assert_eq!(file.address(&path).unwrap(), Some(wallet.address()));
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret_of(&wallet)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No overwrite, and no temporary file left behind.
        let err = KeystoreFile::encrypt(&Wallet::random(), b"pw", KdfStrength::Light)
            .unwrap()
            .write_new(&path)
            .unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(load(&path, b"pw").unwrap().address(), wallet.address());
    }

    #[test]
    fn hostile_parameters_are_rejected_with_field_names() {
        let mut f = vector(SCRYPT_VECTOR);
        f.crypto.kdfparams["n"] = (1u64 << 30).into();
        let err = f.decrypt(b"x", Path::new("k")).unwrap_err().to_string();
        assert!(err.contains("kdfparams.n"), "{err}");

        let mut f = vector(SCRYPT_VECTOR);
        f.crypto.cipher = "aes-256-gcm".into();
        let err = f.decrypt(b"x", Path::new("k")).unwrap_err().to_string();
        assert!(err.contains("cipher"), "{err}");

        let mut f = vector(PBKDF2_VECTOR);
        f.crypto.kdfparams["prf"] = "hmac-sha512".into();
        let err = f.decrypt(b"x", Path::new("k")).unwrap_err().to_string();
        assert!(err.contains("prf"), "{err}");

        let mut f = vector(PBKDF2_VECTOR);
        f.crypto.cipherparams.iv = "00".into();
        let err = f.decrypt(b"x", Path::new("k")).unwrap_err().to_string();
        assert!(err.contains("iv"), "{err}");
    }

    /// Regression: memory bounds alone let `p` ask for hours of scrypt work
    /// (n = 2^20, r = 1, p = 2^21 is 256 MiB at a time, 2^41 block mixes in all).
    #[test]
    fn hostile_scrypt_work_fails_fast_naming_the_parameter() {
        for (n, r, p, named) in [
            (1u64 << 20, 1u64, 1u64 << 21, "p = 2097152"),
            (1 << 20, 8, 2, "p = 2:"),
        ] {
            let mut f = vector(SCRYPT_VECTOR);
            f.crypto.kdfparams["n"] = n.into();
            f.crypto.kdfparams["r"] = r.into();
            f.crypto.kdfparams["p"] = p.into();
            // A bound on the wait, so the old behaviour fails instead of running for hours.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(f.decrypt(b"x", Path::new("k")).map(|w| w.address()));
            });
            let err = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("still deriving a key after 60 s")
                .unwrap_err()
                .to_string();
            assert!(err.contains(named) && err.contains("work limit"), "{err}");
        }
    }

    #[test]
    fn address_field_must_match_the_key() {
        let mut f = vector(PBKDF2_VECTOR);
        f.address = Some("0000000000000000000000000000000000000001".into());
        let err = f
            .decrypt(b"testpassword", Path::new("k"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to"), "{err}");
    }
}
