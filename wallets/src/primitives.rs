//! Addresses, 32-byte hashes and Keccak-256.

use std::fmt;
use std::str::FromStr;

use keccak_asm::Keccak256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Keccak-256 of `data`, as Ethereum uses it (keccak-asm: CRYPTOGAMS' assembly, held
/// to sha3's reference implementation by a test).
pub fn keccak256(data: impl AsRef<[u8]>) -> B256 {
    B256(Keccak256::digest(data.as_ref()).into())
}

/// Decodes a hex string with or without a `0x` prefix.
pub(crate) fn decode_hex(what: &'static str, s: &str) -> Result<Vec<u8>> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    hex::decode(digits).map_err(|e| Error::Hex {
        what,
        reason: e.to_string(),
    })
}

fn fixed<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error::Length {
        what,
        expected: N,
        actual: bytes.len(),
    })
}

/// [`decode_hex`] of exactly `N` bytes into an array, without allocating: journals
/// and messages carry hashes, addresses and signatures by the dozen, and decoding
/// them showed in the audit's profile. Input that does not decode here goes the way
/// of [`decode_hex`] and [`fixed`], which report the error as they always have.
pub(crate) fn decode_fixed<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N]> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    // Exactly 2N digits, so that const-hex, which strips a `0x` of its own, never
    // sees a second prefix that would leave a valid tail (`0x0x…` is an error).
    if digits.len() == 2 * N {
        if let Ok(bytes) = const_hex::decode_to_array::<_, N>(digits) {
            return Ok(bytes);
        }
    }
    fixed(what, &decode_hex(what, s)?)
}

/// Deserializes a string and parses it with `parse`, borrowing the string where the
/// format lends it instead of allocating a `String` for it (serde_json lends every
/// string without escapes).
pub(crate) fn deserialize_str<'de, D, T, E>(
    d: D,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct Str<F>(F);
    impl<T, E: fmt::Display, F: FnOnce(&str) -> std::result::Result<T, E>> serde::de::Visitor<'_>
        for Str<F>
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // What `String`'s own visitor says, so errors read as before.
            f.write_str("a string")
        }
        fn visit_str<DE: serde::de::Error>(self, v: &str) -> std::result::Result<T, DE> {
            (self.0)(v).map_err(DE::custom)
        }
    }
    d.deserialize_str(Str(parse))
}

/// A 32-byte value: a hash, a nonce, a digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct B256(pub [u8; 32]);

impl B256 {
    /// The all-zero value.
    pub const ZERO: Self = Self([0; 32]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses `0x`-prefixed (or bare) hex of exactly 32 bytes.
    ///
    /// # Errors
    /// [`Error::Hex`] for non-hex text, [`Error::Length`] for the wrong length.
    pub fn from_hex(s: &str) -> Result<Self> {
        decode_fixed("32-byte hash", s).map(Self)
    }

    /// Uniformly random bytes from the operating system's generator.
    pub fn random() -> Self {
        let mut out = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut out);
        Self(out)
    }
}

/// Calls `f` with `0x` and the lowercase hex of `bytes` (at most 65 bytes: hashes,
/// addresses, signatures), written on the stack (by const-hex, with SIMD): values are
/// printed and serialized often enough for the allocations of `hex::encode` to show.
pub(crate) fn with_hex<R>(bytes: &[u8], f: impl FnOnce(&str) -> R) -> R {
    const MAX: usize = 65;
    let mut buf = [0u8; 2 + 2 * MAX];
    match buf.get_mut(..2 + 2 * bytes.len()) {
        Some(out) => f(hex_ascii(bytes, out)),
        None => f(&format!("0x{}", hex::encode(bytes))),
    }
}

/// Writes `0x` and the lowercase hex of `bytes` into `out`, which must be exactly
/// `2 + 2 * bytes.len()` long, and returns it as a `str` (empty if it is not).
pub(crate) fn hex_ascii<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    let Some((prefix, digits)) = out.split_first_chunk_mut::<2>() else {
        return "";
    };
    *prefix = *b"0x";
    if const_hex::encode_to_slice(bytes, digits).is_err() {
        return "";
    }
    // Hex digits and `0x` are ASCII, so always UTF-8.
    std::str::from_utf8(out).unwrap_or_default()
}

/// Appends `"0x…"`, the JSON string of the lowercase hex of `bytes`, to `out`: the
/// bytes serde_json writes for a [`B256`] or a [`Signature`](crate::Signature) (hex
/// needs no escaping), without going through a serializer.
pub(crate) fn write_hex_json(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 4 + 2 * bytes.len(), b'"');
    if let Some(inner) = out.get_mut(start + 1..start + 3 + 2 * bytes.len()) {
        hex_ascii(bytes, inner);
    }
}

impl fmt::Display for B256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_hex(&self.0, |h| f.write_str(h))
    }
}

impl fmt::Debug for B256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for B256 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_hex(s)
    }
}

impl From<[u8; 32]> for B256 {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl Serialize for B256 {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        with_hex(&self.0, |h| s.serialize_str(h))
    }
}

impl<'de> Deserialize<'de> for B256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_str(d, Self::from_hex)
    }
}

/// A 20-byte Ethereum address, displayed with its EIP-55 checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The zero address.
    pub const ZERO: Self = Self([0; 20]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The address of a public key.
    pub(crate) fn from_verifying_key(key: &k256::ecdsa::VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let mut uncompressed = [0u8; 65];
        uncompressed.copy_from_slice(point.as_bytes());
        Self::from_uncompressed(&uncompressed)
    }

    /// The address of an uncompressed SEC1 public key (`0x04 || x || y`): the last 20
    /// bytes of the hash of its 64 bytes of coordinates.
    pub(crate) fn from_uncompressed(point: &[u8; 65]) -> Self {
        let hash = keccak256(&point[1..]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&hash.0[12..]);
        Self(out)
    }

    /// The EIP-55 mixed-case checksummed form, `0x`-prefixed.
    pub fn to_checksum(&self) -> String {
        self.checksum_ascii()
            .iter()
            .copied()
            .map(char::from)
            .collect()
    }

    /// [`Address::to_checksum`] as ASCII bytes. EIP-55 costs a Keccak-256 per address,
    /// and an agent writes the same few addresses (its own, its peers', its contracts')
    /// into every message, state and journal entry, so each thread keeps the last few.
    pub(crate) fn checksum_ascii(&self) -> [u8; 42] {
        // Direct-mapped: the slot is picked by the address's last byte.
        const SLOTS: usize = 16;
        type Cache = [Option<([u8; 20], [u8; 42])>; SLOTS];
        thread_local! {
            static RECENT: std::cell::RefCell<Cache> = const { std::cell::RefCell::new([None; SLOTS]) };
        }
        let slot = usize::from(self.0[19]) % SLOTS;
        let cached = RECENT
            .try_with(|c| {
                c.borrow()
                    .get(slot)
                    .copied()
                    .flatten()
                    .filter(|(a, _)| *a == self.0)
            })
            .ok()
            .flatten();
        if let Some((_, ascii)) = cached {
            return ascii;
        }
        let ascii = self.compute_checksum();
        let _ = RECENT.try_with(|c| {
            if let Some(entry) = c.borrow_mut().get_mut(slot) {
                *entry = Some((self.0, ascii));
            }
        });
        ascii
    }

    fn compute_checksum(&self) -> [u8; 42] {
        let mut lower = [0u8; 40];
        // 20 bytes always fit 40 hex digits.
        let _ = const_hex::encode_to_slice(self.0, &mut lower);
        let hash = keccak256(lower);
        let mut out = [0u8; 42];
        out[0] = b'0';
        out[1] = b'x';
        // Nibble i of the hash decides the case of hex digit i.
        let nibbles = hash.0.iter().flat_map(|b| [b >> 4, b & 0x0f]);
        for ((o, c), nibble) in out[2..].iter_mut().zip(lower).zip(nibbles) {
            *o = if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            };
        }
        out
    }

    /// The checksummed form as a `str`, without allocating.
    fn with_checksum<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let ascii = self.checksum_ascii();
        // Hex digits and `0x` are ASCII, so always UTF-8.
        f(std::str::from_utf8(&ascii).unwrap_or_default())
    }

    /// Parses an address. All-lowercase and all-uppercase hex are accepted as they
    /// carry no checksum; mixed case must carry a valid EIP-55 checksum.
    ///
    /// # Errors
    /// [`Error::Hex`], [`Error::Length`] or [`Error::Checksum`].
    pub fn parse(s: &str) -> Result<Self> {
        let addr = Self(decode_fixed("address", s)?);
        // The same prefixes `decode_hex` strips: an `X` is no letter of the checksum.
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let has_lower = digits.chars().any(|c| c.is_ascii_lowercase());
        let has_upper = digits.chars().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper && addr.checksum_ascii().get(2..) != Some(digits.as_bytes()) {
            return Err(Error::Checksum(s.to_owned()));
        }
        Ok(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_checksum(|s| f.write_str(s))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_checksum(|s| f.write_str(s))
    }
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.with_checksum(|c| s.serialize_str(c))
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        deserialize_str(d, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_json_is_what_serde_json_writes() {
        let bytes: Vec<u8> = (0..=255u8).rev().collect();
        for len in [0, 1, 20, 32, 65, 200] {
            let b = &bytes[..len];
            let mut out = b"[".to_vec();
            write_hex_json(b, &mut out);
            let expected = format!(
                "[{}",
                serde_json::to_string(&format!("0x{}", hex::encode(b))).unwrap()
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        let h = keccak256(b"x");
        let mut out = Vec::new();
        write_hex_json(&h.0, &mut out);
        assert_eq!(out, serde_json::to_vec(&h).unwrap());
    }

    #[test]
    fn hex_on_the_stack_matches_hex_encode() {
        let bytes: Vec<u8> = (0..=255u8).rev().collect();
        for len in [0, 1, 20, 32, 64, 65, 66, 200] {
            let b = &bytes[..len];
            with_hex(b, |h| assert_eq!(h, format!("0x{}", hex::encode(b))));
        }
        let h = B256([0xab; 32]);
        assert_eq!(h.to_string(), format!("0x{}", "ab".repeat(32)));
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{h}\""));
    }

    /// The test vectors of EIP-55 itself.
    const EIP55: &[&str] = &[
        // All caps
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        // All lower
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        // Normal
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_vectors_round_trip() {
        for v in EIP55 {
            let a = Address::parse(v).unwrap();
            assert_eq!(&a.to_checksum(), v, "checksum of {v}");
        }
    }

    #[test]
    fn the_recent_checksums_never_answer_for_another_address() {
        // Addresses that share a cache slot (same last byte), formatted in turns.
        let addrs: Vec<Address> = (0u8..40)
            .map(|i| {
                let mut a = [i.wrapping_mul(37); 20];
                a[0] = i;
                a[19] = 0x42;
                Address(a)
            })
            .collect();
        for _ in 0..3 {
            for a in &addrs {
                let fresh: String = a
                    .compute_checksum()
                    .iter()
                    .copied()
                    .map(char::from)
                    .collect();
                assert_eq!(a.to_checksum(), fresh);
                assert_eq!(format!("{a}"), fresh);
                assert_eq!(serde_json::to_string(a).unwrap(), format!("\"{fresh}\""));
                assert_eq!(Address::parse(&fresh).unwrap(), *a);
            }
        }
    }

    #[test]
    fn eip55_rejects_bad_checksum() {
        // Flip the case of one letter of a valid checksummed address.
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(matches!(Address::parse(bad), Err(Error::Checksum(_))));
    }

    /// Regression (found by `fuzz_address_parse`): with a `0X` prefix the `X` counted
    /// as an uppercase letter, so all-lowercase hex was refused as a bad checksum.
    #[test]
    fn uppercase_0x_prefix_with_lowercase_hex_is_not_a_checksum_error() {
        let lower = "de709f2102306220921060314715629080e2fb77";
        let want = Address::parse(&format!("0x{lower}")).unwrap();
        assert_eq!(Address::parse(&format!("0X{lower}")).unwrap(), want);
        assert_eq!(
            Address::parse(&format!("0X{}", lower.to_uppercase())).unwrap(),
            want
        );
        assert_eq!(
            Address::parse(&format!("0X{}", want.to_checksum().get(2..).unwrap())).unwrap(),
            want
        );
        // A wrong checksum is still one after `0X`.
        let bad = "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(matches!(Address::parse(bad), Err(Error::Checksum(_))));
    }

    #[test]
    fn address_rejects_wrong_length_and_hex() {
        assert!(matches!(
            Address::parse("0x1234"),
            Err(Error::Length {
                expected: 20,
                actual: 2,
                ..
            })
        ));
        assert!(matches!(Address::parse("0xzz"), Err(Error::Hex { .. })));
    }

    /// The array decoder gives what the allocating one gives, errors included.
    #[test]
    fn decode_fixed_agrees_with_decode_hex() {
        let h = "ab".repeat(32);
        let cases = [
            h.clone(),
            format!("0x{h}"),
            format!("0X{h}"),
            format!("0x{}", h.to_uppercase()),
            format!("0x0x{}", &h[4..]),
            format!("0x0x{h}"),
            format!("0x{}", &h[1..]),
            format!("0x{}", &h[2..]),
            format!("0x{h}00"),
            format!("0x{}g", &h[1..]),
            format!("0x{}\u{e9}", &h[2..]),
            "0x".to_owned(),
            String::new(),
        ];
        for s in &cases {
            let slow = decode_hex("32-byte hash", s).and_then(|b| fixed::<32>("32-byte hash", &b));
            let fast = decode_fixed::<32>("32-byte hash", s);
            assert_eq!(format!("{slow:?}"), format!("{fast:?}"), "{s}");
        }
        assert!(decode_fixed::<32>("x", &cases[5]).is_err());
    }

    /// keccak-asm gives sha3's digest for every length around the rate (136 bytes)
    /// and its multiples, the empty input included, and for inputs fed in parts.
    #[test]
    fn keccak_asm_agrees_with_sha3() {
        use keccak_asm::Digest as _;
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let lengths = (0..300).chain([407, 408, 409, 543, 544, 545, 1024, 1500]);
        for len in lengths {
            let input = data.get(..len).unwrap_or_default();
            let reference = B256(sha3::Keccak256::digest(input).into());
            assert_eq!(keccak256(input), reference, "length {len}");
            let mut parts = Keccak256::new();
            for part in input.chunks(len % 97 + 1) {
                parts.update(part);
            }
            assert_eq!(
                B256(parts.finalize().into()),
                reference,
                "length {len} in parts"
            );
        }
    }

    #[test]
    fn keccak_of_empty_input() {
        assert_eq!(
            keccak256([]).to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }
}
