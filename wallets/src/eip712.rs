//! EIP-712 typed structured data hashing.
//!
//! Two ways in:
//! - Rust types implement [`Eip712`] by hand (a type string and an [`Encoder`]); every
//!   protocol message and payment of Agora does this.
//! - [`TypedData`] is the JSON form of `eth_signTypedData_v4`, for the CLI and for
//!   interoperating with other wallets; it handles nested structs, arrays, `bytesN`,
//!   `intN`/`uintN` with range checks, and reports the path of a bad field.

use std::collections::{BTreeMap, BTreeSet};

use primitive_types::U256;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::primitives::decode_hex;
use crate::{keccak256, Address, Error, Result, B256};

/// Primary types that move money. The wallet signs these only through
/// [`crate::SpendingPolicy::authorize`]; plain typed-data signing refuses them.
pub const PAYMENT_TYPES: &[&str] = &[
    "TransferWithAuthorization",
    "ReceiveWithAuthorization",
    "Permit",
    "Voucher",
    "ChannelVoucher",
];

/// An EIP-712 domain. Absent fields are left out of the domain type, as the
/// standard requires.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip712Domain {
    /// The user-readable name of the signing domain (e.g. the token name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The current major version of the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The EIP-155 chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// The contract that will verify the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<Address>,
    /// A disambiguating salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<B256>,
}

impl Eip712Domain {
    /// A domain with all four usual fields, laid out as USDC's.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        chain_id: u64,
        verifying_contract: Address,
    ) -> Self {
        Self {
            name: Some(name.into()),
            version: Some(version.into()),
            chain_id: Some(chain_id),
            verifying_contract: Some(verifying_contract),
            salt: None,
        }
    }

    /// `EIP712Domain(...)` with the fields this domain has, in canonical order.
    pub fn encode_type(&self) -> String {
        let mut fields = Vec::new();
        if self.name.is_some() {
            fields.push("string name");
        }
        if self.version.is_some() {
            fields.push("string version");
        }
        if self.chain_id.is_some() {
            fields.push("uint256 chainId");
        }
        if self.verifying_contract.is_some() {
            fields.push("address verifyingContract");
        }
        if self.salt.is_some() {
            fields.push("bytes32 salt");
        }
        format!("EIP712Domain({})", fields.join(","))
    }

    /// The domain separator, `hashStruct(domain)`. An agent signs in the same few
    /// domains all the time, so each thread remembers the last few separators.
    pub fn separator(&self) -> B256 {
        const KEPT: usize = 8;
        thread_local! {
            static RECENT: std::cell::RefCell<Vec<(Eip712Domain, B256)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        let cached = RECENT
            .try_with(|r| {
                r.borrow()
                    .iter()
                    .find(|(d, _)| d == self)
                    .map(|(_, sep)| *sep)
            })
            .ok()
            .flatten();
        if let Some(sep) = cached {
            return sep;
        }
        let sep = self.compute_separator();
        let _ = RECENT.try_with(|r| {
            let mut r = r.borrow_mut();
            if r.len() >= KEPT {
                r.remove(0);
            }
            r.push((self.clone(), sep));
        });
        sep
    }

    fn compute_separator(&self) -> B256 {
        let mut enc = Encoder::new(keccak256(self.encode_type()));
        if let Some(name) = &self.name {
            enc = enc.string(name);
        }
        if let Some(version) = &self.version {
            enc = enc.string(version);
        }
        if let Some(chain_id) = self.chain_id {
            enc = enc.uint(chain_id);
        }
        if let Some(contract) = self.verifying_contract {
            enc = enc.address(contract);
        }
        if let Some(salt) = self.salt {
            enc = enc.b256(salt);
        }
        enc.finish()
    }
}

/// `keccak256(type)`, remembered per thread: the type strings are constants, and an
/// agent hashes the same few of them for every message.
pub fn cached_type_hash(type_string: &'static str) -> B256 {
    thread_local! {
        static HASHES: std::cell::RefCell<Vec<(usize, usize, B256)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    // A `&'static str` is identified by where it lives and its length.
    let id = (type_string.as_ptr() as usize, type_string.len());
    let cached = HASHES
        .try_with(|h| {
            h.borrow()
                .iter()
                .find(|(p, l, _)| (*p, *l) == id)
                .map(|(.., hash)| *hash)
        })
        .ok()
        .flatten();
    if let Some(hash) = cached {
        return hash;
    }
    let hash = keccak256(type_string);
    let _ = HASHES.try_with(|h| {
        let mut h = h.borrow_mut();
        // A program has a bounded set of type strings; keep the cache bounded too.
        if h.len() >= 64 {
            h.clear();
        }
        h.push((id.0, id.1, hash));
    });
    hash
}

/// A Rust type that can be hashed as an EIP-712 struct.
///
/// Implementations give the full `encodeType` string (primary type first, then the
/// referenced types in alphabetical order) and encode their fields in declaration
/// order with an [`Encoder`].
pub trait Eip712 {
    /// The primary type's name, e.g. `"Mail"`.
    const NAME: &'static str;
    /// The `encodeType` string, e.g. `"Mail(Person from,Person to,string contents)Person(string name,address wallet)"`.
    const TYPE: &'static str;

    /// `keccak256(encodeType)`.
    fn type_hash() -> B256 {
        cached_type_hash(Self::TYPE)
    }

    /// `hashStruct(self)`: encode each field with `Encoder::new(Self::type_hash())`.
    fn struct_hash(&self) -> B256;

    /// The digest to sign: `keccak256(0x1901 || domainSeparator || hashStruct(self))`.
    fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        signing_hash(&domain.separator(), &self.struct_hash())
    }
}

/// `keccak256(0x1901 || domain_separator || struct_hash)`.
pub fn signing_hash(domain_separator: &B256, struct_hash: &B256) -> B256 {
    let mut buf = [0u8; 66];
    buf[0] = 0x19;
    buf[1] = 0x01;
    buf[2..34].copy_from_slice(domain_separator.as_bytes());
    buf[34..].copy_from_slice(struct_hash.as_bytes());
    keccak256(buf)
}

/// Builds `keccak256(typeHash || encodeData(...))` one field at a time.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts a struct encoding with its type hash.
    pub fn new(type_hash: B256) -> Self {
        let mut buf = Vec::with_capacity(32 * 8);
        buf.extend_from_slice(type_hash.as_bytes());
        Self { buf }
    }

    /// A 32-byte word as is (`bytes32`, a nested struct's hash, an array's hash).
    pub fn b256(mut self, word: B256) -> Self {
        self.buf.extend_from_slice(word.as_bytes());
        self
    }

    /// An `address`, left-padded.
    pub fn address(mut self, a: Address) -> Self {
        self.buf.extend_from_slice(&[0u8; 12]);
        self.buf.extend_from_slice(a.as_bytes());
        self
    }

    /// A `uint` up to 128 bits, big-endian left-padded.
    pub fn uint(mut self, v: impl Into<u128>) -> Self {
        self.buf.extend_from_slice(&[0u8; 16]);
        self.buf.extend_from_slice(&v.into().to_be_bytes());
        self
    }

    /// A `uint256`.
    pub fn u256(mut self, v: U256) -> Self {
        let mut word = [0u8; 32];
        v.to_big_endian(&mut word);
        self.buf.extend_from_slice(&word);
        self
    }

    /// A `bool`.
    pub fn bool(self, v: bool) -> Self {
        self.uint(u8::from(v))
    }

    /// A `string`: its Keccak-256.
    pub fn string(self, s: &str) -> Self {
        self.b256(keccak256(s.as_bytes()))
    }

    /// Dynamic `bytes`: their Keccak-256.
    pub fn bytes(self, b: &[u8]) -> Self {
        self.b256(keccak256(b))
    }

    /// The struct hash.
    pub fn finish(self) -> B256 {
        keccak256(&self.buf)
    }
}

/// One field of a struct type in [`TypedData::types`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedField {
    /// The field name.
    pub name: String,
    /// Its Solidity type (`address`, `uint256`, `Person[]`, ...).
    #[serde(rename = "type")]
    pub ty: String,
}

/// Typed data in the JSON form of `eth_signTypedData_v4`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypedData {
    /// Struct definitions, including `EIP712Domain` (derived from `domain` if absent).
    pub types: BTreeMap<String, Vec<TypedField>>,
    /// The type of `message`.
    pub primary_type: String,
    /// The domain, as a JSON object.
    pub domain: Value,
    /// The message, as a JSON object.
    pub message: Value,
}

impl TypedData {
    /// Parses the JSON form.
    ///
    /// # Errors
    /// [`Error::TypedData`] naming the JSON problem.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::typed("<json>", e.to_string()))
    }

    /// The domain separator.
    ///
    /// # Errors
    /// [`Error::TypedData`] with the path of the bad domain field.
    pub fn domain_separator(&self) -> Result<B256> {
        if self.types.contains_key("EIP712Domain") {
            self.hash_struct("EIP712Domain", &self.domain, "domain")
        } else {
            let domain: Eip712Domain = serde_json::from_value(self.domain.clone())
                .map_err(|e| Error::typed("domain", e.to_string()))?;
            Ok(domain.separator())
        }
    }

    /// `hashStruct(message)`.
    ///
    /// # Errors
    /// [`Error::TypedData`] with the path of the bad field.
    pub fn struct_hash(&self) -> Result<B256> {
        self.hash_struct(&self.primary_type, &self.message, "message")
    }

    /// The digest to sign.
    ///
    /// # Errors
    /// [`Error::TypedData`] with the path of the bad field.
    pub fn signing_hash(&self) -> Result<B256> {
        Ok(signing_hash(
            &self.domain_separator()?,
            &self.struct_hash()?,
        ))
    }

    /// The domain's `verifyingContract`, if it has one.
    ///
    /// # Errors
    /// [`Error::TypedData`] (path `domain.verifyingContract`) when it is not an address.
    pub fn verifying_contract(&self) -> Result<Option<Address>> {
        match self.domain.get("verifyingContract") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|e: Error| Error::typed("domain.verifyingContract", e.to_string())),
            Some(_) => Err(Error::typed(
                "domain.verifyingContract",
                "not a string of an address",
            )),
        }
    }

    /// Whether the primary type is one that moves money (see [`PAYMENT_TYPES`]).
    pub fn is_payment(&self) -> bool {
        PAYMENT_TYPES.contains(&self.primary_type.as_str())
    }

    /// The `encodeType` string of a struct type.
    ///
    /// # Errors
    /// [`Error::TypedData`] if the type or one it references is undefined.
    pub fn encode_type(&self, ty: &str) -> Result<String> {
        let mut deps = BTreeSet::new();
        self.collect_deps(ty, &mut deps)?;
        deps.remove(ty);
        let mut out = self.type_signature(ty)?;
        for dep in deps {
            out.push_str(&self.type_signature(&dep)?);
        }
        Ok(out)
    }

    fn fields(&self, ty: &str) -> Result<&[TypedField]> {
        self.types
            .get(ty)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::typed(format!("types.{ty}"), "type is not defined"))
    }

    fn type_signature(&self, ty: &str) -> Result<String> {
        let fields: Vec<String> = self
            .fields(ty)?
            .iter()
            .map(|f| format!("{} {}", f.ty, f.name))
            .collect();
        Ok(format!("{ty}({})", fields.join(",")))
    }

    fn collect_deps(&self, ty: &str, out: &mut BTreeSet<String>) -> Result<()> {
        if out.contains(ty) {
            return Ok(());
        }
        out.insert(ty.to_owned());
        for field in self.fields(ty)? {
            let base = element_base(&field.ty);
            if self.types.contains_key(base) {
                self.collect_deps(base, out)?;
            } else if !is_atomic_or_dynamic(base) {
                return Err(Error::typed(
                    format!("types.{ty}.{}", field.name),
                    format!("unknown type `{}`", field.ty),
                ));
            }
        }
        Ok(())
    }

    fn hash_struct(&self, ty: &str, value: &Value, path: &str) -> Result<B256> {
        let type_hash = keccak256(self.encode_type(ty)?);
        let obj = value
            .as_object()
            .ok_or_else(|| Error::typed(path, format!("expected an object of type {ty}")))?;
        let fields = self.fields(ty)?;
        for key in obj.keys() {
            if !fields.iter().any(|f| &f.name == key) {
                return Err(Error::typed(
                    format!("{path}.{key}"),
                    format!("field is not part of type {ty}"),
                ));
            }
        }
        let mut enc = Encoder::new(type_hash);
        for field in fields {
            let field_path = format!("{path}.{}", field.name);
            let v = obj
                .get(&field.name)
                .ok_or_else(|| Error::typed(&field_path, "missing field"))?;
            enc = enc.b256(self.encode_value(&field.ty, v, &field_path)?);
        }
        Ok(enc.finish())
    }

    fn encode_value(&self, ty: &str, value: &Value, path: &str) -> Result<B256> {
        if let Some((inner, len)) = split_array(ty) {
            let items = value
                .as_array()
                .ok_or_else(|| Error::typed(path, format!("expected an array of {inner}")))?;
            if let Some(len) = len {
                if items.len() != len {
                    return Err(Error::typed(
                        path,
                        format!("expected {len} elements, got {}", items.len()),
                    ));
                }
            }
            let mut buf = Vec::with_capacity(items.len() * 32);
            for (i, item) in items.iter().enumerate() {
                let word = self.encode_value(inner, item, &format!("{path}[{i}]"))?;
                buf.extend_from_slice(word.as_bytes());
            }
            return Ok(keccak256(buf));
        }
        if self.types.contains_key(ty) {
            return self.hash_struct(ty, value, path);
        }
        encode_atomic(ty, value, path)
    }
}

/// `Person[][3]` → `Person`.
fn element_base(ty: &str) -> &str {
    ty.find('[').map_or(ty, |i| ty.get(..i).unwrap_or(ty))
}

/// `T[3]` → `(T, Some(3))`, `T[]` → `(T, None)`, non-arrays → `None`.
fn split_array(ty: &str) -> Option<(&str, Option<usize>)> {
    let body = ty.strip_suffix(']')?;
    let open = body.rfind('[')?;
    let inner = body.get(..open)?;
    let len = body.get(open + 1..)?;
    if len.is_empty() {
        Some((inner, None))
    } else {
        len.parse().ok().map(|n| (inner, Some(n)))
    }
}

fn int_bits(ty: &str, prefix: &str) -> Option<usize> {
    let bits = ty.strip_prefix(prefix)?;
    let bits: usize = if bits.is_empty() {
        256
    } else {
        bits.parse().ok()?
    };
    (bits % 8 == 0 && (8..=256).contains(&bits)).then_some(bits)
}

fn fixed_bytes_len(ty: &str) -> Option<usize> {
    let n: usize = ty.strip_prefix("bytes")?.parse().ok()?;
    (1..=32).contains(&n).then_some(n)
}

fn is_atomic_or_dynamic(ty: &str) -> bool {
    matches!(ty, "address" | "bool" | "string" | "bytes")
        || fixed_bytes_len(ty).is_some()
        || int_bits(ty, "uint").is_some()
        || int_bits(ty, "int").is_some()
}

fn encode_atomic(ty: &str, value: &Value, path: &str) -> Result<B256> {
    let err = |reason: String| Error::typed(path, reason);
    match ty {
        "string" => {
            let s = value
                .as_str()
                .ok_or_else(|| err("expected a string".into()))?;
            Ok(keccak256(s.as_bytes()))
        }
        "bytes" => {
            let s = value
                .as_str()
                .ok_or_else(|| err("expected 0x-prefixed hex".into()))?;
            let bytes = decode_hex("bytes", s).map_err(|e| err(e.to_string()))?;
            Ok(keccak256(bytes))
        }
        "bool" => {
            let b = value
                .as_bool()
                .ok_or_else(|| err("expected true or false".into()))?;
            let mut w = [0u8; 32];
            w[31] = u8::from(b);
            Ok(B256(w))
        }
        "address" => {
            let s = value
                .as_str()
                .ok_or_else(|| err("expected an address string".into()))?;
            let a = Address::parse(s).map_err(|e| err(e.to_string()))?;
            let mut w = [0u8; 32];
            w[12..].copy_from_slice(a.as_bytes());
            Ok(B256(w))
        }
        _ => {
            if let Some(n) = fixed_bytes_len(ty) {
                let s = value
                    .as_str()
                    .ok_or_else(|| err(format!("expected {n} bytes as 0x-prefixed hex")))?;
                let bytes = decode_hex("bytes", s).map_err(|e| err(e.to_string()))?;
                if bytes.len() != n {
                    return Err(err(format!("expected {n} bytes, got {}", bytes.len())));
                }
                let mut w = [0u8; 32];
                w.iter_mut().zip(&bytes).for_each(|(w, b)| *w = *b);
                Ok(B256(w))
            } else if let Some(bits) = int_bits(ty, "uint") {
                let (negative, mag) = parse_integer(value).map_err(err)?;
                if negative && !mag.is_zero() {
                    return Err(err(format!("{ty} cannot be negative")));
                }
                if bits < 256 && mag >> bits != U256::zero() {
                    return Err(err(format!("value does not fit in {ty}")));
                }
                let mut w = [0u8; 32];
                mag.to_big_endian(&mut w);
                Ok(B256(w))
            } else if let Some(bits) = int_bits(ty, "int") {
                let (negative, mag) = parse_integer(value).map_err(err)?;
                let limit = U256::one() << (bits - 1);
                let fits = if negative { mag <= limit } else { mag < limit };
                if !fits {
                    return Err(err(format!("value does not fit in {ty}")));
                }
                let word = if negative {
                    (!mag).overflowing_add(U256::one()).0
                } else {
                    mag
                };
                let mut w = [0u8; 32];
                word.to_big_endian(&mut w);
                Ok(B256(w))
            } else {
                Err(err(format!("unknown type `{ty}`")))
            }
        }
    }
}

/// A JSON integer (number, or decimal / `0x` hex string) as sign and magnitude.
fn parse_integer(value: &Value) -> std::result::Result<(bool, U256), String> {
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok((false, U256::from(u)))
            } else if let Some(i) = n.as_i64() {
                Ok((i < 0, U256::from(i.unsigned_abs())))
            } else {
                Err(format!(
                    "{n} is not an integer that fits in 64 bits; write large integers as decimal strings"
                ))
            }
        }
        Value::String(s) => {
            let (negative, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            let mag = if let Some(hex) = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                U256::from_str_radix(hex, 16).ok()
            } else {
                U256::from_dec_str(digits).ok()
            }
            .ok_or_else(|| format!("{s:?} is not an integer that fits in 256 bits"))?;
            if digits.is_empty() {
                return Err("empty integer string".into());
            }
            Ok((negative, mag))
        }
        other => Err(format!("expected an integer, got {other}")),
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// The "Mail" example of EIP-712 itself (assets/eip-712/Example.js).
    pub(crate) const MAIL_JSON: &str = r#"{
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Person": [
                {"name": "name", "type": "string"},
                {"name": "wallet", "type": "address"}
            ],
            "Mail": [
                {"name": "from", "type": "Person"},
                {"name": "to", "type": "Person"},
                {"name": "contents", "type": "string"}
            ]
        },
        "primaryType": "Mail",
        "domain": {
            "name": "Ether Mail",
            "version": "1",
            "chainId": 1,
            "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
        },
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"
        }
    }"#;
}

#[cfg(test)]
mod tests {
    use super::tests_support::MAIL_JSON;
    use super::*;

    #[test]
    fn remembered_separators_and_type_hashes_stay_per_domain_and_type() {
        let domains: Vec<Eip712Domain> = (0..20u64)
            .map(|i| Eip712Domain::new("Agora", "1", 1 + i % 10, Address([1; 20])))
            .chain([
                Eip712Domain::default(),
                Eip712Domain::new("Agora", "2", 1, Address([1; 20])),
            ])
            .collect();
        for _ in 0..3 {
            for d in &domains {
                assert_eq!(d.separator(), d.compute_separator());
            }
        }
        assert_ne!(domains[0].separator(), domains[1].separator());
        assert_ne!(domains[0].separator(), domains[21].separator());
        static A: &str = "A(uint256 x)";
        static B: &str = "B(uint256 x)";
        for _ in 0..3 {
            assert_eq!(cached_type_hash(A), keccak256(A));
            assert_eq!(cached_type_hash(B), keccak256(B));
        }
    }

    #[test]
    fn mail_example_hashes() {
        let td = TypedData::from_json(MAIL_JSON).unwrap();
        assert_eq!(
            td.encode_type("Mail").unwrap(),
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
        );
        assert_eq!(
            keccak256(td.encode_type("Mail").unwrap()).to_string(),
            "0xa0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2"
        );
        assert_eq!(
            td.domain_separator().unwrap().to_string(),
            "0xf2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
        assert_eq!(
            td.struct_hash().unwrap().to_string(),
            "0xc52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
        );
        assert_eq!(
            td.signing_hash().unwrap().to_string(),
            "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
    }

    #[test]
    fn domain_without_types_entry_matches_explicit_one() {
        let mut td = TypedData::from_json(MAIL_JSON).unwrap();
        let explicit = td.domain_separator().unwrap();
        td.types.remove("EIP712Domain");
        assert_eq!(td.domain_separator().unwrap(), explicit);
    }

    #[test]
    fn errors_name_the_path() {
        let mut td = TypedData::from_json(MAIL_JSON).unwrap();
        td.message["to"]["wallet"] = Value::String("0x1234".into());
        let err = td.struct_hash().unwrap_err().to_string();
        assert!(err.contains("message.to.wallet"), "{err}");

        let mut td = TypedData::from_json(MAIL_JSON).unwrap();
        td.message["from"].as_object_mut().unwrap().remove("name");
        let err = td.struct_hash().unwrap_err().to_string();
        assert!(
            err.contains("message.from.name") && err.contains("missing"),
            "{err}"
        );

        let mut td = TypedData::from_json(MAIL_JSON).unwrap();
        td.types.get_mut("Mail").unwrap()[2].ty = "strin".into();
        let err = td.struct_hash().unwrap_err().to_string();
        assert!(
            err.contains("types.Mail.contents") && err.contains("strin"),
            "{err}"
        );
    }

    fn one_field(ty: &str, value: Value) -> Result<B256> {
        let json = serde_json::json!({
            "types": {"T": [{"name": "x", "type": ty}]},
            "primaryType": "T",
            "domain": {},
            "message": {"x": value},
        });
        let td: TypedData = serde_json::from_value(json).unwrap();
        td.struct_hash()
    }

    #[test]
    fn integer_ranges_are_checked() {
        assert!(one_field("uint8", 255.into()).is_ok());
        assert!(one_field("uint8", 256.into()).is_err());
        assert!(one_field("uint8", (-1).into()).is_err());
        assert!(one_field("int8", (-128).into()).is_ok());
        assert!(one_field("int8", (-129).into()).is_err());
        assert!(one_field("int8", 127.into()).is_ok());
        assert!(one_field("int8", 128.into()).is_err());
        assert!(one_field("uint256", "0xff".into()).is_ok());
        assert!(one_field("uint256", 1.5.into()).is_err());
        assert!(one_field("uint256", "".into()).is_err());
        assert!(one_field("uint7", 1.into()).is_err());
    }

    #[test]
    fn negative_int_is_twos_complement() {
        let json = serde_json::json!({"types": {"T": [{"name": "x", "type": "int256"}]},
            "primaryType": "T", "domain": {}, "message": {"x": -1}});
        let td: TypedData = serde_json::from_value(json).unwrap();
        let expected = Encoder::new(keccak256("T(int256 x)"))
            .b256(B256([0xff; 32]))
            .finish();
        assert_eq!(td.struct_hash().unwrap(), expected);
    }

    #[test]
    fn fixed_arrays_check_length_and_bytes_n_checks_size() {
        assert!(one_field("uint8[2]", serde_json::json!([1, 2])).is_ok());
        assert!(one_field("uint8[2]", serde_json::json!([1])).is_err());
        assert!(one_field("bytes4", "0x01020304".into()).is_ok());
        assert!(one_field("bytes4", "0x010203".into()).is_err());
    }

    /// The Rust form of the Mail example, the way protocol messages implement [`Eip712`].
    struct Person {
        name: &'static str,
        wallet: Address,
    }
    struct Mail {
        from: Person,
        to: Person,
        contents: &'static str,
    }
    impl Eip712 for Person {
        const NAME: &'static str = "Person";
        const TYPE: &'static str = "Person(string name,address wallet)";
        fn struct_hash(&self) -> B256 {
            Encoder::new(Self::type_hash())
                .string(self.name)
                .address(self.wallet)
                .finish()
        }
    }
    impl Eip712 for Mail {
        const NAME: &'static str = "Mail";
        const TYPE: &'static str =
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)";
        fn struct_hash(&self) -> B256 {
            Encoder::new(Self::type_hash())
                .b256(self.from.struct_hash())
                .b256(self.to.struct_hash())
                .string(self.contents)
                .finish()
        }
    }

    #[test]
    fn rust_mail_matches_json_mail() {
        let mail = Mail {
            from: Person {
                name: "Cow",
                wallet: "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
                    .parse()
                    .unwrap(),
            },
            to: Person {
                name: "Bob",
                wallet: "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"
                    .parse()
                    .unwrap(),
            },
            contents: "Hello, Bob!",
        };
        let domain = Eip712Domain::new(
            "Ether Mail",
            "1",
            1,
            "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            mail.signing_hash(&domain).to_string(),
            "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
    }
}
