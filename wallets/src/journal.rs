//! The payment journal: append-only, hash-chained, signed, crash-safe.
//!
//! # Format
//! One entry per line, each line the canonical JSON (keys sorted, no whitespace) of
//! a [`JournalEntry`], terminated by `\n`. Each entry is an EIP-712 struct
//!
//! ```text
//! JournalEntry(uint64 index,bytes32 prev,uint64 time,string kind,bytes32 bodyHash)
//! ```
//!
//! in the domain `{name: "Agora Journal", version: "1"}`; its `hash` field is the
//! EIP-712 digest and the next entry's `prev`. `bodyHash` is the Keccak-256 of the
//! body's canonical JSON.
//!
//! # Signatures
//! Every entry carries the agent's signature. An entry appended alone is signed over
//! its `hash`. Entries appended together (one group commit) share one signature over
//! the root of a Merkle tree of their hashes, and each carries its own inclusion
//! `proof`: the sibling hashes from its leaf to the root, where a parent is the
//! Keccak-256 of its two children in ascending byte order (a node without a sibling
//! moves up unchanged). An entry's signed digest is its `hash` folded with its
//! `proof` ([`JournalEntry::signed_digest`]; with no proof, the `hash` itself), so
//! every entry is checked on its own, and a group that a crash cut short still
//! verifies entry by entry. One signature per group instead of one per entry is what
//! lets an agent that journals thousands of deals a second spend its signing time on
//! the deals.
//!
//! # Crash safety
//! An entry is written with one `write` of the whole line and then `fdatasync`ed.
//! A process killed mid-append leaves at most a partial last line without its
//! newline: readers ignore such a torn tail and [`Journal::open`] cuts it off before
//! appending. Anything else that does not check out is corruption, reported at the
//! first bad entry by [`verify`].

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::eip712::{Eip712, Eip712Domain, Encoder};
use crate::primitives::write_hex_json;
use crate::{keccak256, Address, Error, Result, Signature, Wallet, B256};

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    /// Position in the journal, from 0.
    pub index: u64,
    /// The previous entry's `hash` ([`B256::ZERO`] for the first).
    pub prev: B256,
    /// Unix milliseconds; never decreases along the journal.
    pub time: u64,
    /// What happened: `offer`, `acceptance`, `payment`, `delivery`, `receipt`, ...
    pub kind: String,
    /// The entry's data (signed agreements, payments, transaction hashes).
    pub body: Value,
    /// The agent that wrote and signed the entry.
    pub signer: Address,
    /// The EIP-712 digest of (index, prev, time, kind, bodyHash).
    pub hash: B256,
    /// The entry's inclusion proof in the Merkle tree of the entries signed with it;
    /// empty (and absent from the line) for an entry signed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<B256>,
    /// The signer's signature over [`JournalEntry::signed_digest`].
    pub signature: Signature,
}

/// A parent in a journal's Merkle tree: the hash of its children in ascending order.
fn merkle_parent(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let mut pair = [0u8; 64];
    pair[..32].copy_from_slice(&lo.0);
    pair[32..].copy_from_slice(&hi.0);
    keccak256(pair)
}

/// The Merkle root of `leaves` and each leaf's inclusion proof.
fn merkle_tree(leaves: &[B256]) -> (B256, Vec<Vec<B256>>) {
    let mut proofs = vec![Vec::new(); leaves.len()];
    // Which node of the current level each leaf sits under.
    let mut position: Vec<usize> = (0..leaves.len()).collect();
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        for (proof, at) in proofs.iter_mut().zip(position.iter_mut()) {
            if let Some(sibling) = level.get(*at ^ 1) {
                proof.push(*sibling);
            }
            *at /= 2;
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => merkle_parent(*a, *b),
                [a] => *a,
                _ => B256::ZERO,
            })
            .collect();
    }
    (level.first().copied().unwrap_or(B256::ZERO), proofs)
}

/// The signed part of an entry, as an EIP-712 struct; its `kind` (a `string`) as
/// EIP-712 encodes it, hashed.
struct EntryDigest {
    index: u64,
    prev: B256,
    time: u64,
    kind_hash: B256,
    body_hash: B256,
}

impl Eip712 for EntryDigest {
    const NAME: &'static str = "JournalEntry";
    const TYPE: &'static str =
        "JournalEntry(uint64 index,bytes32 prev,uint64 time,string kind,bytes32 bodyHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .uint(self.index)
            .b256(self.prev)
            .uint(self.time)
            .b256(self.kind_hash)
            .b256(self.body_hash)
            .finish()
    }
}

/// The domain journal entries are signed in.
pub fn journal_domain() -> Eip712Domain {
    Eip712Domain {
        name: Some("Agora Journal".into()),
        version: Some("1".into()),
        ..Eip712Domain::default()
    }
}

/// [`journal_domain`], built once: every entry written or checked hashes in it.
fn domain() -> &'static Eip712Domain {
    static DOMAIN: std::sync::OnceLock<Eip712Domain> = std::sync::OnceLock::new();
    DOMAIN.get_or_init(journal_domain)
}

impl JournalEntry {
    /// What the signature signs: `hash` folded with `proof` up to the root of the
    /// entries signed together; `hash` itself for an entry signed alone.
    pub fn signed_digest(&self) -> B256 {
        self.fields().signed_digest()
    }

    /// Recomputes the digest from the entry's fields.
    pub fn compute_hash(&self) -> B256 {
        self.fields().digest_with(body_hash(&self.body))
    }

    /// The entry's line in the journal file, without the newline.
    ///
    /// # Errors
    /// Never for entries built by this crate; [`Error::Corrupt`] if serialization fails.
    pub fn to_line(&self) -> Result<String> {
        let mut body = Vec::new();
        write_canonical(&self.body, &mut body);
        let mut line = Vec::new();
        self.fields().write_line(&body, &mut line);
        line_string(line)
    }

    /// Checks this entry in isolation: hash, signature, expected signer.
    #[cfg(test)]
    fn check(&self, expected_signer: Option<Address>) -> std::result::Result<(), String> {
        self.fields().check(body_hash(&self.body), expected_signer)
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            index: self.index,
            prev: self.prev,
            time: self.time,
            kind: &self.kind,
            signer: self.signer,
            hash: self.hash,
            proof: &self.proof,
            signature: self.signature,
        }
    }
}

/// An entry's fields but its body: what its hash, its line and its signature are made
/// of, whether the body is a [`Value`] ([`JournalEntry`]) or canonical JSON as read
/// ([`VerifiedEntry`]).
#[derive(Clone, Copy)]
struct Fields<'a> {
    index: u64,
    prev: B256,
    time: u64,
    kind: &'a str,
    signer: Address,
    hash: B256,
    proof: &'a [B256],
    signature: Signature,
}

impl Fields<'_> {
    /// [`JournalEntry::signed_digest`].
    fn signed_digest(&self) -> B256 {
        self.proof
            .iter()
            .fold(self.hash, |node, sibling| merkle_parent(node, *sibling))
    }

    /// The digest of the entry's fields, its body hashed already.
    fn digest_with(&self, body_hash: B256) -> B256 {
        self.digest_with_kind(body_hash, keccak256(self.kind))
    }

    /// [`Fields::digest_with`], the kind hashed already too.
    fn digest_with_kind(&self, body_hash: B256, kind_hash: B256) -> B256 {
        EntryDigest {
            index: self.index,
            prev: self.prev,
            time: self.time,
            kind_hash,
            body_hash,
        }
        .signing_hash(domain())
    }

    /// Appends the entry's line, without the newline, to `out`, with the body's
    /// canonical JSON already written: the entry's keys in sorted order (`body`,
    /// `hash`, `index`, `kind`, `prev`, `proof` when not empty, `signature`, `signer`,
    /// `time`), as [`canonical_json`] of the whole entry would write them (a test
    /// checks).
    ///
    /// Hashes, the signature and the signer are written as the JSON strings their
    /// `Serialize` gives, straight into `out`: hex needs no escaping.
    fn write_line(&self, body: &[u8], out: &mut Vec<u8>) {
        out.reserve(body.len() + 400 + 70 * self.proof.len());
        out.extend_from_slice(b"{\"body\":");
        out.extend_from_slice(body);
        out.extend_from_slice(b",\"hash\":");
        write_hex_json(&self.hash.0, out);
        out.extend_from_slice(b",\"index\":");
        write_json(&self.index, out);
        out.extend_from_slice(b",\"kind\":");
        write_json(self.kind, out);
        out.extend_from_slice(b",\"prev\":");
        write_hex_json(&self.prev.0, out);
        if !self.proof.is_empty() {
            out.extend_from_slice(b",\"proof\":");
            for (i, node) in self.proof.iter().enumerate() {
                out.push(if i == 0 { b'[' } else { b',' });
                write_hex_json(&node.0, out);
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"signature\":");
        write_hex_json(&self.signature.to_bytes(), out);
        out.extend_from_slice(b",\"signer\":\"");
        out.extend_from_slice(&self.signer.checksum_ascii());
        out.extend_from_slice(b"\",\"time\":");
        write_json(&self.time, out);
        out.push(b'}');
    }

    /// Checks the entry in isolation, its body hashed already: hash, signature,
    /// expected signer.
    #[cfg(test)]
    fn check(
        &self,
        body_hash: B256,
        expected_signer: Option<Address>,
    ) -> std::result::Result<(), String> {
        self.check_digest(self.digest_with(body_hash), expected_signer)
    }

    /// [`Fields::check`], given the digest computed from the entry's fields.
    fn check_digest(
        &self,
        computed: B256,
        expected_signer: Option<Address>,
    ) -> std::result::Result<(), String> {
        if computed != self.hash {
            return Err(format!(
                "hash field {} does not match the entry's content (computed {computed})",
                self.hash
            ));
        }
        match self.signature.recover(&self.signed_digest()) {
            Ok(who) if who == self.signer => {}
            Ok(who) => {
                return Err(format!(
                    "signature was made by {who}, not by the signer field {}",
                    self.signer
                ))
            }
            Err(e) => return Err(format!("signature: {e}")),
        }
        if let Some(expected) = expected_signer {
            if self.signer != expected {
                return Err(format!(
                    "signed by {}, but this journal belongs to {expected}",
                    self.signer
                ));
            }
        }
        Ok(())
    }
}

/// A line written by [`Fields::write_line`] as a `String`.
fn line_string(line: Vec<u8>) -> Result<String> {
    String::from_utf8(line).map_err(|e| Error::Corrupt {
        what: "journal entry".into(),
        reason: e.to_string(),
    })
}

/// An entry body with its canonical JSON and the Keccak-256 of it (the entry's
/// `bodyHash`), computed once.
#[derive(Debug)]
pub struct Body {
    value: Value,
    json: Vec<u8>,
    hash: B256,
}

impl Body {
    /// Hashes `value`.
    pub fn new(value: Value) -> Self {
        let mut json = Vec::new();
        write_canonical(&value, &mut json);
        let hash = keccak256(&json);
        Self { value, json, hash }
    }

    /// The Keccak-256 of the body's canonical JSON.
    pub fn hash(&self) -> B256 {
        self.hash
    }
}

/// The Keccak-256 of a body's canonical JSON: an entry's `bodyHash`.
pub fn body_hash(body: &Value) -> B256 {
    let mut json = Vec::new();
    write_canonical(body, &mut json);
    keccak256(json)
}

/// Canonical JSON: object keys sorted, no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `value` as compact JSON (serde_json's own escaping of strings).
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing to a vector cannot fail, and the values written here all serialize.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(key.as_str(), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => !(n.is_i64() || n.is_u64()),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

/// What [`verify`] found in a sound journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of valid entries.
    pub entries: u64,
    /// The last entry's hash ([`B256::ZERO`] when empty).
    pub head: B256,
    /// The journal's signer (`None` when empty).
    pub signer: Option<Address>,
    /// Bytes of an interrupted final append that readers ignore.
    pub torn_tail_bytes: usize,
}

/// An entry that verified, as [`read_verified_with`] hands it over: the fields of a
/// [`JournalEntry`], with the body kept as the canonical JSON that the entry's hash
/// covers (the very bytes of its line) instead of a [`Value`], so that a reader can
/// parse it straight into a typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    index: u64,
    prev: B256,
    time: u64,
    kind: String,
    body: String,
    signer: Address,
    hash: B256,
    proof: Vec<B256>,
    signature: Signature,
}

impl VerifiedEntry {
    /// Position in the journal, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The previous entry's hash.
    pub fn prev(&self) -> B256 {
        self.prev
    }

    /// Unix milliseconds.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// What happened.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The body's canonical JSON ([`canonical_json`]), as the line carries it.
    pub fn body_json(&self) -> &str {
        &self.body
    }

    /// The agent that wrote and signed the entry.
    pub fn signer(&self) -> Address {
        self.signer
    }

    /// The entry's digest.
    pub fn hash(&self) -> B256 {
        self.hash
    }

    /// The entry's inclusion proof (empty for an entry signed alone).
    pub fn proof(&self) -> &[B256] {
        &self.proof
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// The entry with its body parsed into a [`Value`], as [`read_entries`] gives it.
    ///
    /// # Errors
    /// Never for an entry that verified (its body is JSON); [`Error::Corrupt`] if the
    /// body does not parse.
    pub fn into_entry(self) -> Result<JournalEntry> {
        let body = serde_json::from_str(&self.body).map_err(|e| Error::Corrupt {
            what: "journal entry body".into(),
            reason: e.to_string(),
        })?;
        Ok(JournalEntry {
            index: self.index,
            prev: self.prev,
            time: self.time,
            kind: self.kind,
            body,
            signer: self.signer,
            hash: self.hash,
            proof: self.proof,
            signature: self.signature,
        })
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            index: self.index,
            prev: self.prev,
            time: self.time,
            kind: &self.kind,
            signer: self.signer,
            hash: self.hash,
            proof: &self.proof,
            signature: self.signature,
        }
    }
}

/// One journal line as read: a [`JournalEntry`]'s fields, its body transcoded to
/// canonical JSON on the way ([`CanonicalBody`]) rather than built into a [`Value`].
/// Named and ordered as [`JournalEntry`], so that serde's messages about a line that
/// is not an entry read as they always have.
#[derive(Deserialize)]
#[serde(rename = "JournalEntry", deny_unknown_fields)]
struct Line {
    index: u64,
    prev: B256,
    time: u64,
    kind: String,
    body: CanonicalBody,
    signer: Address,
    hash: B256,
    #[serde(default)]
    proof: Vec<B256>,
    signature: Signature,
}

/// A JSON value transcoded, as it is read, into the canonical JSON that
/// [`canonical_json`] writes for it, without building a [`Value`].
///
/// serde_json makes the same visitor calls here as it makes to [`Value`]'s own
/// deserializer, and each is written as [`write_canonical`] writes the [`Value`] those
/// calls build (scalars and keys through serde_json's serializer). Only the order of
/// keys is kept as read, where [`write_canonical`] sorts them: so `json` is the value's
/// canonical JSON exactly when `sorted`, that is when every object's keys came in
/// strictly ascending order (a repeated key, which a [`Value`] keeps once, is out of
/// order). A test holds this against [`canonical_json`].
///
/// There is one exception, which `private` flags: a key that starts with
/// [`SERDE_JSON_PRIVATE`]. When some crate in the build turns on serde_json's
/// `raw_value` (axum and ethers do) or `arbitrary_precision` feature, an object whose
/// first key is one of serde_json's private tokens reads into a [`Value`] as something
/// else (the JSON text, or the number, in its string). A body with such a key is
/// checked the way it always was instead ([`read_line`]).
struct CanonicalBody {
    json: String,
    sorted: bool,
    private: bool,
}

/// How serde_json's private tokens start (`$serde_json::private::RawValue`, `…::Number`).
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";

thread_local! {
    /// A [`Transcoder`]'s buffers, kept by each thread from one body to the next.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<String>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl<'de> Deserialize<'de> for CanonicalBody {
    /// Transcodes into the thread's buffers, grown once to the largest body and kept,
    /// then copies the JSON into a `String` of exactly its size: one allocation per
    /// body, of its own size, instead of a buffer doubled up to it (with as many
    /// reallocations, and pages touched for the first time).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (mut json, keys) = BUFFERS
            .try_with(|b| std::mem::take(&mut *b.borrow_mut()))
            .unwrap_or_default();
        json.clear();
        let mut out = Transcoder {
            json,
            sorted: true,
            private: false,
            keys,
            depth: 0,
        };
        let read = serde::de::DeserializeSeed::deserialize(&mut out, d).and_then(|()| {
            std::str::from_utf8(&out.json)
                .map(str::to_owned)
                .map_err(serde::de::Error::custom)
        });
        let (sorted, private) = (out.sorted, out.private);
        let _ = BUFFERS.try_with(|b| *b.borrow_mut() = (out.json, out.keys));
        Ok(Self {
            json: read?,
            sorted,
            private,
        })
    }
}

/// The state of one [`CanonicalBody`] being read.
struct Transcoder {
    json: Vec<u8>,
    sorted: bool,
    private: bool,
    /// The last key read in the object open at each depth, unescaped.
    keys: Vec<String>,
    /// Objects open.
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut Transcoder {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut Transcoder {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<(), E> {
        write_json(&v, &mut self.json);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<(), E> {
        write_json(&v, &mut self.json);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<(), E> {
        write_json(&v, &mut self.json);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<(), E> {
        // As `Value` keeps it: a float that is not finite becomes null (serde_json
        // writes null for one too).
        write_json(&Value::from(v), &mut self.json);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        write_json(v, &mut self.json);
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        self.json.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E>(self) -> std::result::Result<(), E> {
        self.json.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        self.json.push(b'[');
        let mut first = true;
        loop {
            let mark = self.json.len();
            if !first {
                self.json.push(b',');
            }
            if seq.next_element_seed(&mut *self)?.is_none() {
                self.json.truncate(mark);
                break;
            }
            first = false;
        }
        self.json.push(b']');
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        self.json.push(b'{');
        let depth = self.depth;
        self.depth += 1;
        let mut first = true;
        loop {
            let mark = self.json.len();
            if !first {
                self.json.push(b',');
            }
            if map.next_key_seed(Key(&mut *self, first))?.is_none() {
                self.json.truncate(mark);
                break;
            }
            self.json.push(b':');
            map.next_value_seed(&mut *self)?;
            first = false;
        }
        self.depth = depth;
        self.json.push(b'}');
        Ok(())
    }
}

/// A key of the object open at [`Transcoder::depth`]` - 1`, and whether it is the
/// object's first.
struct Key<'a>(&'a mut Transcoder, bool);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, key: &str) -> std::result::Result<(), E> {
        let Key(t, first) = self;
        write_json(key, &mut t.json);
        t.private |= key.starts_with(SERDE_JSON_PRIVATE);
        let at = t.depth.saturating_sub(1);
        while t.keys.len() <= at {
            t.keys.push(String::new());
        }
        if let Some(last) = t.keys.get_mut(at) {
            if !first && key <= last.as_str() {
                t.sorted = false;
            }
            last.clear();
            last.push_str(key);
        }
        Ok(())
    }
}

/// A journal read from disk: what each entry that verified gave, and where the valid
/// part ends.
#[derive(Debug)]
struct Scan<T> {
    entries: Vec<T>,
    /// The last entry's hash and time ([`B256::ZERO`] and 0 when empty).
    head: B256,
    last_time: u64,
    /// The signer of every entry (`None` when empty).
    signer: Option<Address>,
    valid_len: u64,
    torn_tail_bytes: usize,
    unterminated: bool,
}

impl<T> Scan<T> {
    fn report(&self) -> VerifyReport {
        VerifyReport {
            entries: self.entries.len() as u64,
            head: self.head,
            signer: self.signer,
            torn_tail_bytes: self.torn_tail_bytes,
        }
    }
}

fn corrupt(path: &Path, index: u64, reason: impl Into<String>) -> Error {
    Error::Journal {
        path: path.to_owned(),
        index,
        reason: reason.into(),
    }
}

/// What links an entry to the one before it, checked in order after the lines.
#[derive(Clone, Copy)]
struct Links {
    index: u64,
    prev: B256,
    time: u64,
    signer: Address,
    hash: B256,
}

/// What checking one line on its own found: the entry's links, or why it is not an
/// entry; and the reader's result for the entry when its hash and signature hold, or
/// why they do not.
type LineCheck<T> = std::result::Result<(Links, std::result::Result<T, String>), String>;

/// What checking a line leaves for the next one on the same thread: the entries of
/// one group come one after the other and share much of their checking.
#[derive(Default)]
struct Recent {
    /// The last signature verified against the known key, and over what: the entries
    /// of a group share it, and it is verified once for all of them.
    verified: Option<(B256, Signature)>,
    /// The last entry's path up its Merkle tree: at each level the two nodes folded,
    /// in ascending order, and their parent. Neighbours in a group share the upper
    /// part of their paths, so each parent is hashed about once, not once per entry
    /// under it.
    path: Vec<(B256, B256, B256)>,
    /// The line written back, reused.
    line: Vec<u8>,
    /// The kinds seen and their Keccak-256 (what EIP-712 encodes a `string` as): a
    /// journal has a handful of kinds, each hashed once per thread, not once per
    /// entry.
    kinds: Vec<(String, B256)>,
}

impl Recent {
    /// `keccak256(kind)`, remembered.
    fn kind_hash(&mut self, kind: &str) -> B256 {
        if let Some((_, hash)) = self.kinds.iter().find(|(k, _)| k == kind) {
            return *hash;
        }
        let hash = keccak256(kind);
        // A journal written by this crate has a bounded set of kinds; one written
        // otherwise must not grow the list without bound.
        if self.kinds.len() >= 32 {
            self.kinds.clear();
        }
        self.kinds.push((kind.to_owned(), hash));
        hash
    }

    /// [`Fields::signed_digest`], with the parents the last entry's path had.
    fn signed_digest(&mut self, fields: &Fields<'_>) -> B256 {
        let mut node = fields.hash;
        for (level, sibling) in fields.proof.iter().enumerate() {
            let (lo, hi) = if node.0 <= sibling.0 {
                (node, *sibling)
            } else {
                (*sibling, node)
            };
            node = match self.path.get_mut(level) {
                Some(known) if (known.0, known.1) == (lo, hi) => known.2,
                Some(known) => {
                    *known = (lo, hi, merkle_parent(lo, hi));
                    known.2
                }
                None => {
                    let parent = merkle_parent(lo, hi);
                    self.path.push((lo, hi, parent));
                    parent
                }
            };
        }
        node
    }
}

/// Reads a line into the entry, its body as the canonical JSON of the [`Value`] it
/// reads into, and whether the body's keys were in canonical order. The body is
/// transcoded as it is read ([`CanonicalBody`]); a line that does not read that way,
/// or whose body has a key that serde_json may read into a [`Value`] its own way, is
/// read into a [`JournalEntry`] and its body written back, as lines always were
/// checked (and with the same error).
fn read_line(text: &str) -> std::result::Result<(VerifiedEntry, bool), String> {
    match serde_json::from_str::<Line>(text) {
        Ok(line) if !line.body.private => {
            let entry = VerifiedEntry {
                index: line.index,
                prev: line.prev,
                time: line.time,
                kind: line.kind,
                body: line.body.json,
                signer: line.signer,
                hash: line.hash,
                proof: line.proof,
                signature: line.signature,
            };
            Ok((entry, line.body.sorted))
        }
        _ => {
            let entry: JournalEntry =
                serde_json::from_str(text).map_err(|e| format!("not a journal entry: {e}"))?;
            let mut body = Vec::new();
            write_canonical(&entry.body, &mut body);
            let body = String::from_utf8(body).map_err(|e| format!("body: {e}"))?;
            let entry = VerifiedEntry {
                index: entry.index,
                prev: entry.prev,
                time: entry.time,
                kind: entry.kind,
                body,
                signer: entry.signer,
                hash: entry.hash,
                proof: entry.proof,
                signature: entry.signature,
            };
            Ok((entry, true))
        }
    }
}

/// Parses one line, checks its canonical form, its hash and its signature (with
/// `known`, the journal's first signer's key, when it signed it), and hands the entry
/// to `read` when they hold.
fn check_line<T>(
    text: &[u8],
    known: Option<&crate::PublicKey>,
    recent: &mut Recent,
    read: &impl Fn(VerifiedEntry) -> T,
) -> LineCheck<T> {
    let text = std::str::from_utf8(text).map_err(|_| "line is not valid UTF-8".to_owned())?;
    let (entry, sorted) = read_line(text)?;
    let fields = entry.fields();
    // Re-encoding must give back the very same bytes: this catches changes that
    // parse to the same values (hex case, recovery id form, key order, spaces). The
    // body's canonical JSON serves the line and the hash.
    recent.line.clear();
    fields.write_line(entry.body.as_bytes(), &mut recent.line);
    if !sorted || recent.line != text.as_bytes() {
        return Err("line is not in canonical form (its bytes were altered)".into());
    }
    let body_hash = keccak256(entry.body.as_bytes());
    let computed = fields.digest_with_kind(body_hash, recent.kind_hash(fields.kind));
    // Verifying against the known key skips the address's hash and the key's
    // conversions (the curve work is a recovery's); on failure the recovery names
    // who signed instead.
    let fast = known.is_some_and(|k| {
        if k.address() != fields.signer || computed != fields.hash {
            return false;
        }
        let digest = recent.signed_digest(&fields);
        if recent.verified == Some((digest, fields.signature)) {
            return true;
        }
        let ok = fields.signature.verify_with_key(&digest, k).is_ok();
        if ok {
            recent.verified = Some((digest, fields.signature));
        }
        ok
    });
    let checked = if fast {
        Ok(())
    } else {
        fields.check_digest(computed, None)
    };
    let links = Links {
        index: entry.index,
        prev: entry.prev,
        time: entry.time,
        signer: entry.signer,
        hash: entry.hash,
    };
    Ok((links, checked.map(|()| read(entry))))
}

/// Reads and checks a whole journal; stops at the first bad entry. Lines are parsed,
/// their signatures verified and the entries handed to `read` on all cores; the links
/// between them are checked in order after.
fn scan<T: Send>(
    path: &Path,
    bytes: &[u8],
    expected_signer: Option<Address>,
    read: &(impl Fn(VerifiedEntry) -> T + Sync),
) -> Result<Scan<T>> {
    // Split into lines; the tail after the last newline is either an interrupted
    // append (a strict prefix of a line, so JSON that ends early), a whole entry whose
    // newline never made it to disk, or corruption.
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut offset = 0usize;
    let mut torn_tail_bytes = 0;
    let mut unterminated = false;
    while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
        match memchr::memchr(b'\n', rest) {
            Some(n) => {
                lines.push(rest.get(..n).unwrap_or_default());
                offset += n + 1;
            }
            None => {
                let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
                match stream.next() {
                    Some(Err(e)) if e.is_eof() => torn_tail_bytes = rest.len(),
                    Some(Ok(_)) if stream.byte_offset() == rest.len() => {
                        unterminated = true;
                        lines.push(rest);
                    }
                    _ => {
                        return Err(corrupt(
                            path,
                            lines.len() as u64,
                            "unterminated final line is neither a whole entry nor an interrupted append",
                        ))
                    }
                }
                break;
            }
        }
    }
    // The first entry's key, recovered once, verifies the others.
    let known = lines.first().and_then(|l| {
        let key = |e: VerifiedEntry| e.signature.recover_public_key(&e.fields().signed_digest());
        match check_line(l, None, &mut Recent::default(), &key) {
            Ok((_, Ok(key))) => key.ok(),
            _ => None,
        }
    });
    let checks = check_lines(&lines, known.as_ref(), read);
    if checks.len() != lines.len() {
        return Err(corrupt(path, 0, "the entries could not all be checked"));
    }
    let mut entries: Vec<T> = Vec::with_capacity(lines.len());
    let mut signer = expected_signer;
    let mut prev = B256::ZERO;
    let mut last_time = 0u64;
    let mut valid_len = 0usize;
    for (line, check) in lines.iter().zip(checks) {
        let index = entries.len() as u64;
        let (entry, checked) = check.map_err(|reason| corrupt(path, index, reason))?;
        if entry.index != index {
            return Err(corrupt(
                path,
                index,
                format!("index field is {}, expected {index}", entry.index),
            ));
        }
        if entry.prev != prev {
            return Err(corrupt(
                path,
                index,
                format!(
                    "prev is {}, but the previous entry's hash is {prev}",
                    entry.prev
                ),
            ));
        }
        if entry.time < last_time {
            return Err(corrupt(
                path,
                index,
                format!(
                    "time {} is before the previous entry's {last_time}",
                    entry.time
                ),
            ));
        }
        let read = checked.map_err(|reason| corrupt(path, index, reason))?;
        if let Some(expected) = signer.filter(|s| *s != entry.signer) {
            return Err(corrupt(
                path,
                index,
                format!(
                    "signed by {}, but this journal belongs to {expected}",
                    entry.signer
                ),
            ));
        }
        signer = Some(entry.signer);
        prev = entry.hash;
        last_time = entry.time;
        valid_len += line.len() + 1;
        entries.push(read);
    }
    if unterminated {
        valid_len = valid_len.saturating_sub(1);
    }
    Ok(Scan {
        signer: if entries.is_empty() { None } else { signer },
        entries,
        head: prev,
        last_time,
        valid_len: valid_len as u64,
        torn_tail_bytes,
        unterminated,
    })
}

/// [`check_line`] of every line, on as many threads as there are cores (one for a
/// short journal), in order.
fn check_lines<T: Send>(
    lines: &[&[u8]],
    known: Option<&crate::PublicKey>,
    read: &(impl Fn(VerifiedEntry) -> T + Sync),
) -> Vec<LineCheck<T>> {
    const PER_THREAD_MIN: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(lines.len() / PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        let mut recent = Recent::default();
        return lines
            .iter()
            .map(|l| check_line(l, known, &mut recent, read))
            .collect();
    }
    // Each thread writes its part of the results in place.
    let mut checks: Vec<Option<LineCheck<T>>> =
        std::iter::repeat_with(|| None).take(lines.len()).collect();
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .zip(checks.chunks_mut(chunk))
            .map(|(part, out)| {
                s.spawn(move || {
                    let mut recent = Recent::default();
                    for (line, slot) in part.iter().zip(out) {
                        *slot = Some(check_line(line, known, &mut recent, read));
                    }
                })
            })
            .collect();
        // A thread that panicked leaves its lines unchecked, reported below.
        for h in handles {
            let _ = h.join();
        }
    });
    checks
        .into_iter()
        .map(|c| c.unwrap_or_else(|| Err("the checking thread panicked".to_owned())))
        .collect()
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Verifies a journal file: every line canonical, every hash link, every signature,
/// one signer throughout (`expected_signer` if given), indexes in order, time never
/// going back.
///
/// # Errors
/// [`Error::Journal`] with the index of the first bad entry and the reason;
/// [`Error::Io`] if the file cannot be read.
pub fn verify(path: &Path, expected_signer: Option<Address>) -> Result<VerifyReport> {
    Ok(scan(path, &read_file(path)?, expected_signer, &|_| ())?.report())
}

/// Verifies a journal as [`verify`] does and returns its entries with the report.
///
/// # Errors
/// As [`verify`].
pub fn read_verified(path: &Path) -> Result<(VerifyReport, Vec<JournalEntry>)> {
    let (report, entries) = read_verified_with(path, VerifiedEntry::into_entry)?;
    let entries = entries
        .into_iter()
        .zip(0u64..)
        .map(|(e, index)| e.map_err(|e| corrupt(path, index, e.to_string())))
        .collect::<Result<_>>()?;
    Ok((report, entries))
}

/// Verifies a journal as [`verify`] does, and returns the report with what `read`
/// made of each entry: `read` gets the entries with their bodies as canonical JSON,
/// on the threads that check the lines, so that a reader with typed bodies parses
/// each line once, on all cores. It may see entries past the first bad one, whose
/// results are dropped.
///
/// # Errors
/// As [`verify`].
pub fn read_verified_with<T: Send>(
    path: &Path,
    read: impl Fn(VerifiedEntry) -> T + Sync,
) -> Result<(VerifyReport, Vec<T>)> {
    let scan = scan(path, &read_file(path)?, None, &read)?;
    Ok((scan.report(), scan.entries))
}

/// Reads a journal's entries, verifying them as [`verify`] does.
///
/// # Errors
/// As [`verify`].
pub fn read_entries(path: &Path) -> Result<Vec<JournalEntry>> {
    Ok(read_verified(path)?.1)
}

/// An open journal that this process appends to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    wallet: Arc<Wallet>,
    next_index: u64,
    head: B256,
    last_time: u64,
    /// Bytes of whole entries: where the next append starts, and what a failed one
    /// is cut back to.
    bytes: u64,
    /// Why appends are refused: an append failed and could not be undone.
    broken: Option<String>,
}

impl Journal {
    /// Opens the journal at `path`, creating it if missing. An existing journal is
    /// verified in full and must belong to `wallet`; a torn tail left by a crash is
    /// cut off.
    ///
    /// # Errors
    /// [`Error::Journal`] if the existing journal is corrupt or belongs to another
    /// signer (nothing is modified then), [`Error::Io`] on I/O failure.
    pub fn open(path: impl AsRef<Path>, wallet: Arc<Wallet>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        let scan = scan(&path, &bytes, Some(wallet.address()), &|_| ())?;
        let io = |e| Error::io(&path, e);
        if scan.torn_tail_bytes > 0 {
            tracing::warn!(target: "wallet::journal", path = %path.display(),
                bytes = scan.torn_tail_bytes, "cutting off an interrupted append");
            file.set_len(scan.valid_len).map_err(io)?;
        }
        file.seek(SeekFrom::Start(scan.valid_len)).map_err(io)?;
        if scan.unterminated {
            file.write_all(b"\n").map_err(io)?;
        }
        if scan.torn_tail_bytes > 0 || scan.unterminated {
            file.sync_data().map_err(io)?;
        }
        Ok(Self {
            next_index: scan.entries.len() as u64,
            head: scan.head,
            last_time: scan.last_time,
            bytes: scan.valid_len + u64::from(scan.unterminated),
            broken: None,
            path,
            file,
            wallet,
        })
    }

    /// Appends a signed entry and makes it durable before returning.
    ///
    /// # Errors
    /// [`Error::Journal`] if `body` holds a floating point number (journals carry
    /// amounts as integers only); [`Error::Io`] if the write fails, in which case the
    /// journal is left as it was and the next [`Journal::open`] cuts any partial line.
    pub fn append(&mut self, kind: &str, body: Value) -> Result<JournalEntry> {
        let mut entries = self.append_batch(vec![(kind.to_owned(), body)])?;
        entries
            .pop()
            .ok_or_else(|| corrupt(&self.path, self.next_index, "the append produced no entry"))
    }

    /// Appends several entries, in order, with one write and one disk flush (group
    /// commit: concurrent writers share the cost of the flush).
    ///
    /// # Errors
    /// As [`Journal::append`]; nothing is appended when any body is refused. On a
    /// failed write (a full disk) nothing is appended either: what reached the file
    /// is cut off again, so the journal stays valid and later appends go on from
    /// it; should even that fail, appends are refused until the journal is reopened.
    /// A crash mid-write leaves a valid prefix of the batch, and the next
    /// [`Journal::open`] cuts any partial line.
    pub fn append_batch(&mut self, items: Vec<(String, Value)>) -> Result<Vec<JournalEntry>> {
        self.append_bodies(
            items
                .into_iter()
                .map(|(kind, body)| (kind, Body::new(body)))
                .collect(),
        )
    }

    /// As [`Journal::append_batch`], with bodies whose hash is already computed (a
    /// caller that also keys entries by their body hashes each body once).
    ///
    /// # Errors
    /// As [`Journal::append_batch`].
    pub fn append_bodies(&mut self, items: Vec<(String, Body)>) -> Result<Vec<JournalEntry>> {
        if let Some(why) = &self.broken {
            return Err(Error::Corrupt {
                what: format!("journal {}", self.path.display()),
                reason: format!("{why}; reopen it (that cuts the torn append off)"),
            });
        }
        let (mut index, mut head, mut last_time) = (self.next_index, self.head, self.last_time);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        // The digests first, chained; then one signature over all of them.
        let domain = domain();
        let mut digests = Vec::with_capacity(items.len());
        for (kind, body) in &items {
            if has_float(&body.value) {
                return Err(corrupt(
                    &self.path,
                    index,
                    "refusing a body with a floating point number; write amounts as integer strings",
                ));
            }
            let time = now.max(last_time);
            let hash = EntryDigest {
                index,
                prev: head,
                time,
                kind_hash: keccak256(kind),
                body_hash: body.hash,
            }
            .signing_hash(domain);
            digests.push((index, head, time, hash));
            index += 1;
            head = hash;
            last_time = time;
        }
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let leaves: Vec<B256> = digests.iter().map(|d| d.3).collect();
        let (root, proofs) = merkle_tree(&leaves);
        let signature = self.wallet.sign_hash(&root)?;
        let signer = self.wallet.address();
        let mut entries = Vec::with_capacity(items.len());
        let mut bytes = Vec::new();
        for (((kind, body), (index, prev, time, hash)), proof) in
            items.into_iter().zip(digests).zip(proofs)
        {
            let entry = JournalEntry {
                index,
                prev,
                time,
                kind,
                body: body.value,
                signer,
                hash,
                proof,
                signature,
            };
            entry.fields().write_line(&body.json, &mut bytes);
            bytes.push(b'\n');
            entries.push(entry);
        }
        if let Err(e) = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
        {
            // A full disk (or any failed write) may have left part of the batch in
            // the file; cut it back, or the next append would follow a torn line
            // and break the chain for good.
            self.undo_append();
            return Err(Error::io(&self.path, e));
        }
        self.bytes += bytes.len() as u64;
        self.next_index = index;
        self.head = head;
        self.last_time = last_time;
        Ok(entries)
    }

    /// Cuts the file back to its whole entries after a failed append; if even that
    /// fails, refuses further appends until the journal is reopened.
    fn undo_append(&mut self) {
        let undone = self
            .file
            .set_len(self.bytes)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.bytes)))
            .and_then(|_| self.file.sync_data());
        if let Err(e) = undone {
            tracing::error!(target: "wallet::journal", path = %self.path.display(), error = %e,
                "a failed append could not be cut off");
            self.broken = Some(format!("a failed append could not be cut off ({e})"));
        }
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.next_index
    }

    /// Whether the journal has no entries.
    pub fn is_empty(&self) -> bool {
        self.next_index == 0
    }

    /// The last entry's hash.
    pub fn head(&self) -> B256 {
        self.head
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn journal_with(n: usize) -> (tempfile::TempDir, PathBuf, Arc<Wallet>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let wallet = Arc::new(Wallet::random());
        let mut j = Journal::open(&path, wallet.clone()).unwrap();
        for i in 0..n {
            j.append(
                "payment",
                json!({"amount": (i * 1000).to_string(), "peer": "0xbb", "note": "fine"}),
            )
            .unwrap();
        }
        (dir, path, wallet)
    }

    /// The line as the generic path writes it: the whole entry as a JSON value,
    /// then canonical JSON (how `to_line` was defined before it wrote the keys itself).
    fn generic_line(e: &JournalEntry) -> String {
        canonical_json(&serde_json::to_value(e).unwrap())
    }

    #[test]
    fn lines_are_the_canonical_json_of_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let wallet = Arc::new(Wallet::random());
        let mut j = Journal::open(&path, wallet).unwrap();
        let bodies = [
            json!({}),
            json!({"z": 1, "a": [3, {"y": "é\u{1}\"\\", "b": null}], "m": true, "n": -7}),
            json!({"tab\tkey": "line\nbreak", "emoji": "🦀", "nested": {"k": [[], {}]}}),
            json!([1, "two", {"three": 3}]),
            json!("plain"),
        ];
        let alone = j.append("alone", bodies[1].clone()).unwrap();
        let group = j
            .append_batch(
                bodies
                    .iter()
                    .map(|b| ("grouped".to_owned(), b.clone()))
                    .collect(),
            )
            .unwrap();
        assert!(alone.proof.is_empty() && group.iter().all(|e| !e.proof.is_empty()));
        let written: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        for (e, line) in std::iter::once(&alone).chain(&group).zip(&written) {
            assert_eq!(&e.to_line().unwrap(), line);
            assert_eq!(&generic_line(e), line);
        }
        assert_eq!(written.len(), 1 + bodies.len());
    }

    /// A journal of single entries and groups: one alone, a group of three, one
    /// alone, a group of two.
    fn journal_mixed() -> (tempfile::TempDir, PathBuf, Arc<Wallet>) {
        let (dir, path, wallet) = journal_with(1);
        let mut j = Journal::open(&path, wallet.clone()).unwrap();
        let group = |n: usize, tag: &str| -> Vec<(String, Value)> {
            (0..n)
                .map(|i| {
                    (
                        "delivery".to_owned(),
                        json!({"n": i.to_string(), "tag": tag}),
                    )
                })
                .collect()
        };
        j.append_batch(group(3, "a")).unwrap();
        j.append("receipt", json!({"ok": true})).unwrap();
        j.append_batch(group(2, "b")).unwrap();
        (dir, path, wallet)
    }

    #[test]
    fn merkle_proofs_lead_every_leaf_to_the_root() {
        for n in 1..=17u8 {
            let leaves: Vec<B256> = (0..n).map(|i| keccak256([i])).collect();
            let (root, proofs) = merkle_tree(&leaves);
            assert_eq!(proofs.len(), leaves.len());
            for (leaf, proof) in leaves.iter().zip(&proofs) {
                let folded = proof.iter().fold(*leaf, |a, b| merkle_parent(a, *b));
                assert_eq!(folded, root, "{n} leaves");
                assert!(proof.len() <= 5, "{n} leaves: proof of {}", proof.len());
            }
            if n == 1 {
                assert_eq!(root, leaves[0]);
            }
            // A leaf outside the tree does not fold to the root with any proof.
            let stranger = keccak256([0xff]);
            assert!(proofs
                .iter()
                .all(|p| p.iter().fold(stranger, |a, b| merkle_parent(a, *b)) != root));
        }
    }

    #[test]
    fn a_group_shares_one_signature_and_each_entry_verifies_alone() {
        let (_dir, path, wallet) = journal_mixed();
        let entries = read_entries(&path).unwrap();
        assert_eq!(entries.len(), 7);
        // Alone: no proof, signed over its hash.
        assert!(entries[0].proof.is_empty() && entries[4].proof.is_empty());
        assert_eq!(entries[0].signed_digest(), entries[0].hash);
        // A group: one signature, one root, a proof each.
        let group = &entries[1..4];
        assert!(group.iter().all(|e| !e.proof.is_empty()));
        assert!(group.iter().all(|e| e.signature == group[0].signature));
        assert!(group
            .iter()
            .all(|e| e.signed_digest() == group[0].signed_digest()));
        assert_ne!(entries[5].signature, group[0].signature);
        for e in &entries {
            assert_eq!(
                e.signature.recover(&e.signed_digest()).unwrap(),
                wallet.address()
            );
            assert!(e.check(Some(wallet.address())).is_ok());
        }
        // A crash that kept only the first entry of the last group leaves a journal
        // that verifies, and that the next writer goes on from.
        let text = fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().take(6).collect();
        fs::write(&path, kept.join("\n") + "\n").unwrap();
        assert_eq!(verify(&path, Some(wallet.address())).unwrap().entries, 6);
        let mut j = Journal::open(&path, wallet.clone()).unwrap();
        j.append_batch(vec![("x".into(), json!(1)), ("y".into(), json!(2))])
            .unwrap();
        assert_eq!(verify(&path, Some(wallet.address())).unwrap().entries, 8);
        // An entry moved into another group's proof does not verify.
        let mut lines: Vec<String> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let mut moved: JournalEntry = serde_json::from_str(&lines[2]).unwrap();
        moved.proof = entries[5].proof.clone();
        moved.signature = entries[5].signature;
        lines[2] = moved.to_line().unwrap();
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = verify(&path, None).unwrap_err();
        assert!(err.to_string().contains("entry 2"), "{err}");
    }

    #[test]
    fn append_reopen_and_verify() {
        let (_dir, path, wallet) = journal_with(5);
        let report = verify(&path, Some(wallet.address())).unwrap();
        assert_eq!(report.entries, 5);
        assert_eq!(report.signer, Some(wallet.address()));
        let mut j = Journal::open(&path, wallet.clone()).unwrap();
        assert_eq!(j.len(), 5);
        assert_eq!(j.head(), report.head);
        let e = j.append("receipt", json!({"ok": true})).unwrap();
        assert_eq!(e.index, 5);
        assert_eq!(e.prev, report.head);
        assert_eq!(read_entries(&path).unwrap().len(), 6);
    }

    #[test]
    fn a_batch_is_chained_like_single_appends_and_a_bad_body_writes_nothing() {
        let (_dir, path, wallet) = journal_with(2);
        let mut j = Journal::open(&path, wallet.clone()).unwrap();
        let batch = (0..3)
            .map(|i| ("payment".to_owned(), json!({"n": i})))
            .collect();
        let entries = j.append_batch(batch).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(entries[1].prev, entries[0].hash);
        assert_eq!(j.head(), entries[2].hash);
        let bad = vec![
            ("payment".to_owned(), json!({"n": 5})),
            ("payment".to_owned(), json!({"price": 1.5})),
        ];
        assert!(j.append_batch(bad).is_err());
        assert_eq!(j.len(), 5);
        let report = verify(&path, Some(wallet.address())).unwrap();
        assert_eq!((report.entries, report.head), (5, entries[2].hash));
        // Journals long enough to be checked on several threads report the same first
        // bad entry as a short one.
        for _ in 0..200 {
            j.append("payment", json!({"more": true})).unwrap();
        }
        let mut lines: Vec<String> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines[150] = lines[150].replace("\"more\":true", "\"more\":false");
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = verify(&path, None).unwrap_err();
        assert!(err.to_string().contains("entry 150"), "{err}");
    }

    #[test]
    fn foreign_signer_is_refused() {
        let (_dir, path, _wallet) = journal_with(2);
        let err = Journal::open(&path, Arc::new(Wallet::random())).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
        assert!(err.to_string().contains("belongs to"), "{err}");
    }

    #[test]
    fn torn_tail_is_ignored_then_cut() {
        let (_dir, path, wallet) = journal_with(3);
        let full = fs::read(&path).unwrap();
        let mut torn = full.clone();
        torn.extend_from_slice(br#"{"body":{"amount":"5"#);
        fs::write(&path, &torn).unwrap();
        let report = verify(&path, None).unwrap();
        assert_eq!((report.entries, report.torn_tail_bytes), (3, 20));
        let mut j = Journal::open(&path, wallet).unwrap();
        j.append("payment", json!({})).unwrap();
        assert_eq!(verify(&path, None).unwrap().entries, 4);
        assert!(fs::read(&path).unwrap().starts_with(&full));
    }

    #[test]
    fn missing_final_newline_keeps_the_entry() {
        let (_dir, path, wallet) = journal_with(2);
        let mut bytes = fs::read(&path).unwrap();
        bytes.pop();
        fs::write(&path, &bytes).unwrap();
        assert_eq!(verify(&path, None).unwrap().entries, 2);
        let mut j = Journal::open(&path, wallet).unwrap();
        j.append("x", json!(1)).unwrap();
        assert_eq!(verify(&path, None).unwrap().entries, 3);
    }

    /// The body as [`CanonicalBody`] reads it from `text`: its JSON and whether its
    /// keys were in order.
    fn transcode(text: &str) -> serde_json::Result<(String, bool)> {
        let body: CanonicalBody = serde_json::from_str(text)?;
        Ok((body.json, body.sorted))
    }

    /// What the check of a line asks of its body: that its bytes are its canonical
    /// JSON. [`read_line`] says so exactly when the check before it did (parse the
    /// line into a [`JournalEntry`], write the body back, compare), whichever
    /// features of serde_json the build has on; and where it says so, it gives the
    /// same canonical body, which the entry's hash covers. Errors read the same.
    /// Returns whether the line's body is canonical.
    fn assert_transcodes_as_value_does(text: &str) -> bool {
        // An entry's line with `text` for its body (the other fields need only be
        // well formed).
        let line = format!(
            r#"{{"body":{text},"hash":"0x{}","index":0,"kind":"k","prev":"0x{}","signature":"0x{}{}1b","signer":"0x{}","time":0}}"#,
            "11".repeat(32),
            "00".repeat(32),
            "11".repeat(32),
            "22".repeat(32),
            "01".repeat(20),
        );
        let before = serde_json::from_str::<JournalEntry>(&line)
            .map(|e| {
                let mut body = Vec::new();
                write_canonical(&e.body, &mut body);
                let mut written = Vec::new();
                e.fields().write_line(&body, &mut written);
                (String::from_utf8(body).unwrap(), written == line.as_bytes())
            })
            .map_err(|e| format!("not a journal entry: {e}"));
        let now = read_line(&line).map(|(e, sorted)| {
            let mut written = Vec::new();
            e.fields()
                .write_line(e.body_json().as_bytes(), &mut written);
            (e.body, sorted && written == line.as_bytes())
        });
        let canonical = match (before, now) {
            (Ok((body, canonical)), Ok((read, verdict))) => {
                assert_eq!(verdict, canonical, "{text}: {read} against {body}");
                if canonical {
                    assert_eq!(read, body, "{text}");
                }
                canonical
            }
            (before, now) => {
                assert_eq!(before, now, "{text}");
                false
            }
        };
        // The transcoder alone, where serde_json reads the value as a plain map.
        if !text.contains(SERDE_JSON_PRIVATE) {
            if let (Ok(value), Ok((json, sorted))) =
                (serde_json::from_str::<Value>(text), transcode(text))
            {
                let canonical = canonical_json(&value);
                assert_eq!(sorted && json == text, canonical == text, "{text}");
                if sorted {
                    assert_eq!(json, canonical, "{text}");
                }
            }
        }
        canonical
    }

    #[test]
    fn the_transcoder_accepts_exactly_the_canonical_bodies() {
        let mut canonical = Vec::new();
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"null"#,
            r#"true"#,
            r#""plain""#,
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"y":1,"x":2},"b":3}"#,
            r#"{"a":[{"b":1,"c":2},{"c":1,"b":2}]}"#,
            r#"{"x":{"a":1,"b":2},"y":{"a":1,"b":2}}"#,
            r#"{"a":{"b":{"c":1}},"b":{"a":{"c":1}}}"#,
            r#"{ "a":1}"#,
            r#"{"a": 1}"#,
            r#"[1, 2]"#,
            r#" {"a":1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1}"#,
            r#"{"a":1e2}"#,
            r#"{"a":100.0}"#,
            r#"{"a":-0}"#,
            r#"{"a":-0.0}"#,
            r#"{"a":0.1}"#,
            r#"{"a":1.5e300}"#,
            r#"{"a":1e400}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":01}"#,
            r#"{"a":"\u00e9"}"#,
            "{\"a\":\"\u{e9}\"}",
            r#"{"a":"\/"}"#,
            r#"{"a":"/"}"#,
            r#"{"a":"\u001f"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\n\t\"\\"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a\"":1,"a#":2}"#,
            r#"{"a#":2,"a\"":1}"#,
            "{\"\u{e9}\":1,\"z\":2}",
            "{\"z\":2,\"\u{e9}\":1}",
            r#"{"":1,"a":2}"#,
            r#"{"$serde_json::private::RawValue":"1"}"#,
            r#"{"$serde_json::private::RawValue":"{\"a\":1}"}"#,
            r#"{"$serde_json::private::RawValue":"[1"}"#,
            r#"{"$serde_json::private::RawValue":1}"#,
            r#"{"$serde_json::private::RawValue":"1","b":2}"#,
            r#"{"a":{"$serde_json::private::RawValue":"1"}}"#,
            r#"{"a":1,"$serde_json::private::RawValue":"1"}"#,
            r#"{"$serde_json::private::Number":"1"}"#,
            r#"{"$serde_json::private::Number":"1.50"}"#,
            r#"{"a":1,}"#,
            r#"{"a":1"#,
            r#"{"a":tru}"#,
            r#"{"a":"\ud800"}"#,
        ] {
            if assert_transcodes_as_value_does(text) {
                canonical.push(text);
            }
        }
        // Many are canonical JSON (the bodies with private keys, only where
        // serde_json's `raw_value` is off).
        assert!(canonical.len() >= 20, "{canonical:#?}");
        assert!(canonical.contains(&r#"{"a":{"b":{"c":1}},"b":{"a":{"c":1}}}"#));
    }

    /// JSON values of every kind, nested.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-c\u{e9}\"]{0,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Canonical JSON, and the same values written with keys in any order,
        /// with spaces, or with a key repeated, read as `Value` reads them.
        #[test]
        fn the_transcoder_agrees_with_value_on_any_json(value in json_value(), shuffle in any::<u64>()) {
            let canonical = canonical_json(&value);
            prop_assert!(assert_transcodes_as_value_does(&canonical) || canonical.contains(SERDE_JSON_PRIVATE));
            prop_assert_eq!(transcode(&canonical).unwrap(), (canonical.clone(), true));
            assert_transcodes_as_value_does(&serde_json::to_string_pretty(&value).unwrap());
            // Keys reversed or repeated, by the bits of `shuffle`.
            let mut bits = shuffle;
            let mut text = String::new();
            write_shuffled(&value, &mut bits, &mut text);
            assert_transcodes_as_value_does(&text);
        }
    }

    /// `value` as JSON with each object's keys reversed or its first key repeated,
    /// as the low bits of `bits` pick.
    fn write_shuffled(value: &Value, bits: &mut u64, out: &mut String) {
        let mut take = || {
            let b = *bits & 3;
            *bits = bits.rotate_right(2);
            b
        };
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                match take() {
                    1 => entries.reverse(),
                    2 => {
                        if let Some(first) = entries.first().copied() {
                            entries.push(first);
                        }
                    }
                    _ => {}
                }
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    write_shuffled(v, bits, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_shuffled(v, bits, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
        }
    }

    /// A line whose body is not in canonical form but means the same `Value`, with
    /// the entry's hash and signature made over it as a writer would: every check
    /// but the canonical form passes, and that one still refuses the line, as it did
    /// when the body was parsed and written back.
    #[test]
    fn a_body_out_of_canonical_form_is_refused_though_hash_and_signature_hold() {
        let (_dir, path, wallet) = journal_with(1);
        let text = fs::read_to_string(&path).unwrap();
        let line = text.lines().next().unwrap();
        let entry: JournalEntry = serde_json::from_str(line).unwrap();
        let body = canonical_json(&entry.body);
        assert!(body.starts_with(r#"{"amount":"0","note":"fine","peer":"0xbb"}"#));
        for altered in [
            // Keys out of order.
            r#"{"note":"fine","amount":"0","peer":"0xbb"}"#,
            // A key repeated, with the value a `Value` keeps.
            r#"{"amount":"1","amount":"0","note":"fine","peer":"0xbb"}"#,
            // A space, an escape serde_json does not write.
            r#"{"amount": "0","note":"fine","peer":"0xbb"}"#,
            r#"{"amount":"0","note":"\u0066ine","peer":"0xbb"}"#,
        ] {
            let value: Value = serde_json::from_str(altered).unwrap();
            assert_eq!(canonical_json(&value), body, "{altered}");
            // The entry as a writer would sign it; its line with the altered body.
            let mut forged = entry.clone();
            forged.body = value;
            forged.hash = forged.compute_hash();
            forged.signature = wallet.sign_hash(&forged.hash).unwrap();
            assert!(forged.check(Some(wallet.address())).is_ok());
            let canonical_line = forged.to_line().unwrap();
            let forged_line = canonical_line.replacen(&body, altered, 1);
            assert_ne!(forged_line, canonical_line);
            fs::write(&path, format!("{canonical_line}\n")).unwrap();
            assert_eq!(verify(&path, Some(wallet.address())).unwrap().entries, 1);
            fs::write(&path, format!("{forged_line}\n")).unwrap();
            let err = verify(&path, Some(wallet.address())).unwrap_err();
            assert!(err.to_string().contains("entry 0"), "{err}");
            assert!(err.to_string().contains("not in canonical form"), "{err}");
        }
    }

    #[test]
    fn read_verified_with_hands_over_the_entries_as_read_entries_has_them() {
        let (_dir, path, wallet) = journal_mixed();
        let entries = read_entries(&path).unwrap();
        let (report, verified) = read_verified_with(&path, |e| e).unwrap();
        assert_eq!(report, verify(&path, Some(wallet.address())).unwrap());
        assert_eq!(report.entries, 7);
        assert_eq!(report.head, entries[6].hash);
        let lines: Vec<String> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        for ((v, e), line) in verified.into_iter().zip(&entries).zip(&lines) {
            assert_eq!(v.body_json(), canonical_json(&e.body));
            assert!(line.starts_with(&format!("{{\"body\":{},", v.body_json())));
            assert_eq!((v.index(), v.kind()), (e.index, e.kind.as_str()));
            assert_eq!((v.signer(), v.hash(), v.prev()), (e.signer, e.hash, e.prev));
            assert_eq!(
                (v.proof(), v.signature(), v.time()),
                (&e.proof[..], e.signature, e.time)
            );
            assert_eq!(&v.into_entry().unwrap(), e);
        }
    }

    #[test]
    fn floats_are_refused() {
        let (_dir, path, wallet) = journal_with(0);
        let mut j = Journal::open(&path, wallet).unwrap();
        assert!(j.append("payment", json!({"amount": 1.5})).is_err());
        assert!(j.is_empty());
    }

    /// Which entry holds byte `pos` of the file (the newline belongs to its line).
    fn entry_at(bytes: &[u8], pos: usize) -> u64 {
        bytes[..pos].iter().filter(|&&b| b == b'\n').count() as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any one-byte change anywhere in the file, in entries signed alone or in a
        /// group (proofs included), is reported at the entry it hits.
        #[test]
        fn one_byte_change_is_detected_at_its_entry(pos_seed in any::<usize>(), new_byte in any::<u8>()) {
            let (_dir, path, wallet) = journal_mixed();
            let original = fs::read(&path).unwrap();
            let pos = pos_seed % original.len();
            prop_assume!(original[pos] != new_byte);
            let mut bytes = original.clone();
            bytes[pos] = new_byte;
            fs::write(&path, &bytes).unwrap();
            match verify(&path, Some(wallet.address())) {
                Err(Error::Journal { index, .. }) => prop_assert_eq!(index, entry_at(&original, pos)),
                other => prop_assert!(false, "byte {} -> {:#x}: {:?}", pos, new_byte, other),
            }
        }
    }
}
