//! Fuzzing support for the property tests of the parsers of outside input: envelope
//! and control frames, HTTP request lines, EIP-712 typed data, keystores, amounts,
//! addresses, `agents.toml`, GGUF headers and the devnet's JSON-RPC.
//!
//! Every such test is named `fuzz_…` and runs through [`fuzz`], a proptest runner
//! that feeds the parser arbitrary input and near-valid input (mutations of a valid
//! document: a field replaced by an arbitrary JSON value, a key removed or added,
//! bytes truncated, overwritten, inserted or repeated), counts the inputs, times
//! each one, and prints one report line when it is done:
//!
//! ```text
//! fuzz report: fuzz_typed_data: 1000 inputs, 0 panics, slowest 0.41 ms (61.0 µs when re-run), mean 18.0 µs, 0 over 1 s; slowest input: Fuzzed("{…
//! ```
//!
//! `PROPTEST_CASES` in the environment sets the number of cases of every fuzz test
//! (a long run); without it each test runs its own default, small enough for
//! `cargo test`. With `FUZZ_REPORT=FILE` the report lines are also appended to FILE.
//!
//! ```
//! use fuzz_support::{explained, fuzz, mutate_text};
//!
//! fuzz("fuzz_example", 64, mutate_text("12.50".into(), &["0", "."]), |text| {
//!     explained(&text.parse::<f64>())
//! });
//! ```

use std::cell::RefCell;
use std::fmt::{self, Debug, Display, Write as _};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Number, Value};

pub use proptest;

/// Characters of an input's `Debug` form kept in the report.
const SHOWN: usize = 200;

/// The proptest configuration of a fuzz test: the environment's `PROPTEST_CASES`
/// when it is set, `default_cases` otherwise (other `PROPTEST_*` variables apply as
/// usual). Failures are not persisted: the runner prints the minimal failing input,
/// and the bug gets a regression test of its own.
pub fn config(default_cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config.failure_persistence = None;
    config
}

/// What one fuzz test saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The test's name.
    pub name: String,
    /// Inputs given to the check (after a failure, shrinking adds its own).
    pub inputs: u64,
    /// Inputs on which the check panicked.
    pub panics: u64,
    /// Time spent in the check, all inputs together.
    pub total: Duration,
    /// The longest time the check took on one input.
    pub slowest: Duration,
    /// The start of that input's `Debug` form.
    pub slowest_input: String,
    /// The least time of three more runs of the check on that input: far below
    /// [`Report::slowest`] when the slowness was the machine's (preemption, page
    /// faults), not the input's.
    pub slowest_rerun: Duration,
    /// Inputs on which the check took more than a second.
    pub over_one_second: u64,
}

impl Report {
    /// Counts an input that took `took`; true when it is the slowest so far.
    fn record(&mut self, took: Duration, input: &dyn Debug) -> bool {
        self.total += took;
        if took > Duration::from_secs(1) {
            self.over_one_second += 1;
        }
        if took > self.slowest {
            self.slowest = took;
            self.slowest_input = shown(input);
            return true;
        }
        false
    }

    /// Prints the report on stderr, and appends it to `$FUZZ_REPORT` when set.
    fn publish(&self) {
        eprintln!("fuzz report: {self}");
        if let Some(path) = std::env::var_os("FUZZ_REPORT") {
            let line = format!("{self}\n");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                eprintln!(
                    "fuzz report: cannot append to {}: {e}",
                    path.to_string_lossy()
                );
            }
        }
    }
}

impl Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean = self
            .total
            .checked_div(u32::try_from(self.inputs).unwrap_or(u32::MAX))
            .unwrap_or_default();
        write!(
            f,
            "{}: {} inputs, {} panics, slowest {} ({} when re-run), mean {}, {} over 1 s; slowest input: {}",
            self.name,
            self.inputs,
            self.panics,
            human(self.slowest),
            human(self.slowest_rerun),
            human(mean),
            self.over_one_second,
            self.slowest_input
        )
    }
}

/// `12.3 µs`, `4.07 ms`, `1.250 s`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

/// A `fmt::Write` that keeps the first [`SHOWN`] characters and then stops the
/// formatting, so that a megabyte input costs no more to show than a short one.
struct Prefix(String, usize);

impl fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.1 == SHOWN {
                self.0.push('…');
                return Err(fmt::Error);
            }
            self.0.push(c);
            self.1 += 1;
        }
        Ok(())
    }
}

fn shown(input: &dyn Debug) -> String {
    let mut out = Prefix(String::new(), 0);
    let _ = write!(out, "{input:?}");
    out.0
}

/// Runs `check` on the inputs `strategy` generates (`default_cases` of them unless
/// `PROPTEST_CASES` says otherwise), timing each, then times the slowest input
/// again and prints the [`Report`].
///
/// `check` returns `Err` with a reason when the parser misbehaved (a valid input
/// refused, an error without a message). A panic in `check` fails the test too.
///
/// # Panics
/// When `check` fails or panics, with proptest's minimal failing input.
pub fn fuzz<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<(), String>,
) where
    S: Strategy,
    S::Value: Clone + Debug,
{
    let report = RefCell::new(Report {
        name: name.to_owned(),
        ..Report::default()
    });
    let slowest: RefCell<Option<S::Value>> = RefCell::new(None);
    let mut runner = TestRunner::new(config(default_cases));
    let result = runner.run(&strategy, |input| {
        {
            let mut r = report.borrow_mut();
            r.inputs += 1;
            // Taken back below unless `check` unwinds.
            r.panics += 1;
        }
        let start = Instant::now();
        let outcome = check(&input);
        let took = start.elapsed();
        let mut r = report.borrow_mut();
        r.panics -= 1;
        if r.record(took, &input) {
            *slowest.borrow_mut() = Some(input);
        }
        outcome.map_err(TestCaseError::fail)
    });
    let mut report = report.into_inner();
    if let (Ok(()), Some(input)) = (&result, slowest.into_inner()) {
        report.slowest_rerun = (0..3)
            .map(|_| {
                let start = Instant::now();
                let _ = check(&input);
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
    }
    report.publish();
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Bytes that show as an escaped byte string (`b"GGUF\x03\0…"`) in reports and
/// failures, not as a list of numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Arbitrary bytes, up to `max` of them.
pub fn arbitrary_bytes(max: usize) -> BoxedStrategy<Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max)
        .prop_map(Bytes)
        .boxed()
}

/// A generated input, and what the parser must make of it.
#[derive(Clone, Debug)]
pub enum Case<T> {
    /// A valid input: the parser must accept it.
    Valid(T),
    /// Arbitrary or mutated input: anything goes but a panic or an error without a
    /// message.
    Fuzzed(T),
}

/// `Ok` when `result` is `Ok` or an error with a message; `Err` for an error whose
/// message is empty.
///
/// # Errors
/// As described.
pub fn explained<T, E: Debug + Display>(result: &Result<T, E>) -> Result<(), String> {
    match result {
        Err(e) if e.to_string().trim().is_empty() => {
            Err(format!("the error {e:?} has an empty message"))
        }
        _ => Ok(()),
    }
}

/// Integers at and around the edges of the integer types, small ones, and any.
pub fn edge_u64() -> BoxedStrategy<u64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            2,
            3,
            7,
            8,
            15,
            16,
            31,
            32,
            33,
            63,
            64,
            65,
            127,
            128,
            255,
            256,
            257,
            1023,
            1024,
            4096,
            65535,
            65536,
            (1 << 31) - 1,
            1 << 31,
            (1 << 32) - 1,
            1 << 32,
            1 << 53,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ]),
        0u64..1024,
        any::<u64>(),
    ]
    .boxed()
}

/// One of `tokens` (words a parser gives meaning to: field names, type names,
/// methods, units). `tokens` must not be empty.
pub fn token(tokens: &'static [&'static str]) -> BoxedStrategy<&'static str> {
    prop::sample::select(tokens).boxed()
}

/// Text: arbitrary strings, and bytes made UTF-8 (invalid sequences replaced).
pub fn arbitrary_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// JSON text nested 1 to 300 levels deep (serde_json stops at 128), closed or not.
pub fn nested_json() -> BoxedStrategy<String> {
    (
        1usize..300,
        prop::sample::select(vec!["[", "{\"a\":", "{\"\":[", "[{\"types\":"]),
        any::<bool>(),
    )
        .prop_map(|(depth, open, closed)| {
            let mut s = open.repeat(depth);
            s.push('1');
            if closed {
                for _ in 0..depth {
                    s.push_str(if open.ends_with('[') { "]" } else { "}" });
                    if open == "{\"\":[" {
                        s.push('}');
                    }
                }
            }
            s
        })
        .boxed()
}

/// A JSON leaf: null, booleans, numbers at the edges, tokens, arbitrary strings,
/// hex and decimal digit strings.
pub fn json_leaf(tokens: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => (-3i64..300).prop_map(Value::from),
        1 => edge_u64().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        3 => token(tokens).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => "0x[0-9a-fA-F]{0,70}".prop_map(Value::from),
        1 => "-?[0-9]{1,80}".prop_map(Value::from),
        1 => edge_u64().prop_map(|n| Value::from(format!("{n:#x}"))),
    ]
    .boxed()
}

/// An object key: mostly a token.
fn key(tokens: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![3 => token(tokens).prop_map(String::from), 1 => any::<String>()].boxed()
}

/// Arbitrary JSON up to 4 levels deep, its leaves from [`json_leaf`].
pub fn json_value(tokens: &'static [&'static str]) -> BoxedStrategy<Value> {
    json_leaf(tokens)
        .prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(tokens), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// One change to a JSON document, at the node an index picks.
#[derive(Clone, Debug)]
struct Edit(Index, Op);

/// What an [`Edit`] does to its node.
#[derive(Clone, Debug)]
enum Op {
    /// The node becomes the value.
    Replace(Value),
    /// The node leaves its object or array.
    Remove,
    /// A member joins the node (an object), or an element (an array).
    Insert(String, Value),
    /// A string becomes the JSON it spells (or its length), a number or boolean a
    /// string, an array an object and an object an array.
    Retype,
    /// The node becomes a one-element array of itself.
    Wrap,
}

/// JSON pointers to every node of `doc`, the root (`""`) first.
fn pointers(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        out.push(at.to_owned());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    walk(child, &format!("{at}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out
}

/// Applies `op` to the node at the JSON pointer `path` (nothing if there is none).
fn apply(doc: &mut Value, path: &str, op: &Op) {
    match op {
        Op::Replace(v) => {
            if let Some(slot) = doc.pointer_mut(path) {
                *slot = v.clone();
            }
        }
        Op::Remove => {
            let Some((parent, last)) = path.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(n) = last.parse::<usize>() {
                        if n < items.len() {
                            items.remove(n);
                        }
                    }
                }
                _ => {}
            }
        }
        Op::Insert(k, v) => match doc.pointer_mut(path) {
            Some(Value::Object(m)) => {
                m.insert(k.clone(), v.clone());
            }
            Some(Value::Array(items)) => items.push(v.clone()),
            _ => {}
        },
        Op::Retype => {
            if let Some(slot) = doc.pointer_mut(path) {
                *slot = match slot.take() {
                    Value::String(s) => serde_json::from_str::<Value>(&s)
                        .ok()
                        .filter(|v| !v.is_string())
                        .unwrap_or_else(|| Value::from(s.len())),
                    Value::Array(items) => Value::Object(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v))
                            .collect(),
                    ),
                    Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
                    other => Value::String(other.to_string()),
                };
            }
        }
        Op::Wrap => {
            if let Some(slot) = doc.pointer_mut(path) {
                *slot = Value::Array(vec![slot.take()]);
            }
        }
    }
}

/// Near-valid JSON: `doc` with one to three edits, each at a node it picks: the
/// node replaced by a [`json_value`] over `tokens`, removed, given a new member or
/// element, retyped (a string becomes the JSON it spells, a number a string, an
/// array an object, ...) or wrapped in an array.
pub fn mutate_json(doc: Value, tokens: &'static [&'static str]) -> BoxedStrategy<Value> {
    let paths: Arc<[String]> = pointers(&doc).into();
    let op = prop_oneof![
        4 => json_value(tokens).prop_map(Op::Replace),
        2 => Just(Op::Remove),
        1 => (key(tokens), json_value(tokens)).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => Just(Op::Retype),
        1 => Just(Op::Wrap),
    ];
    let edit = (any::<Index>(), op).prop_map(|(i, op)| Edit(i, op));
    prop::collection::vec(edit, 1..=3)
        .prop_map(move |edits| {
            let mut d = doc.clone();
            for Edit(i, op) in &edits {
                apply(&mut d, i.get::<String>(&paths), op);
            }
            d
        })
        .boxed()
}

/// One change to a byte string, at the position an index picks.
#[derive(Clone, Debug)]
enum ByteEdit {
    /// Cut it there.
    Truncate(Index),
    /// Overwrite one byte.
    Set(Index, u8),
    /// Insert arbitrary bytes.
    Insert(Index, Vec<u8>),
    /// Insert a token.
    Token(Index, &'static str),
    /// Delete up to this many bytes.
    Delete(Index, usize),
    /// Repeat up to `len` bytes from there, `times` more times.
    Repeat(Index, usize, usize),
    /// Overwrite with a little-endian integer, 8 bytes wide or 4.
    Word(Index, u64, bool),
}

fn apply_bytes(doc: &mut Vec<u8>, edit: &ByteEdit) {
    let len = doc.len();
    match edit {
        ByteEdit::Truncate(i) => doc.truncate(i.index(len + 1)),
        ByteEdit::Set(i, b) => {
            if len > 0 {
                doc[i.index(len)] = *b;
            }
        }
        ByteEdit::Insert(i, bytes) => {
            let at = i.index(len + 1);
            doc.splice(at..at, bytes.iter().copied());
        }
        ByteEdit::Token(i, t) => {
            let at = i.index(len + 1);
            doc.splice(at..at, t.bytes());
        }
        ByteEdit::Delete(i, n) => {
            if len > 0 {
                let at = i.index(len);
                doc.drain(at..(at + n).min(len));
            }
        }
        ByteEdit::Repeat(i, n, times) => {
            if len > 0 {
                let at = i.index(len);
                let piece = doc[at..(at + n).min(len)].to_vec();
                let copies = piece.repeat(*times);
                doc.splice(at..at, copies);
            }
        }
        ByteEdit::Word(i, w, wide) => {
            let bytes = w.to_le_bytes();
            let bytes = if *wide { &bytes[..] } else { &bytes[..4] };
            if len >= bytes.len() {
                let at = i.index(len - bytes.len() + 1);
                doc[at..at + bytes.len()].copy_from_slice(bytes);
            }
        }
    }
}

/// Near-valid bytes: `doc` with one to four edits, each at a position it picks: cut
/// there, a byte overwritten, bytes or one of `tokens` inserted, bytes deleted or
/// repeated, or a little-endian integer from [`edge_u64`] written over 4 or 8 bytes.
pub fn mutate_bytes(doc: Vec<u8>, tokens: &'static [&'static str]) -> BoxedStrategy<Bytes> {
    let edit = prop_oneof![
        2 => any::<Index>().prop_map(ByteEdit::Truncate),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        2 => (any::<Index>(), token(tokens)).prop_map(|(i, t)| ByteEdit::Token(i, t)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        1 => (any::<Index>(), 1usize..64, 1usize..8).prop_map(|(i, n, k)| ByteEdit::Repeat(i, n, k)),
        2 => (any::<Index>(), edge_u64(), any::<bool>()).prop_map(|(i, w, wide)| ByteEdit::Word(i, w, wide)),
    ];
    prop::collection::vec(edit, 1..=4)
        .prop_map(move |edits| {
            let mut d = doc.clone();
            for e in &edits {
                apply_bytes(&mut d, e);
            }
            Bytes(d)
        })
        .boxed()
}

/// Near-valid text: [`mutate_bytes`] of `doc`, made UTF-8 again (invalid sequences
/// replaced).
pub fn mutate_text(doc: String, tokens: &'static [&'static str]) -> BoxedStrategy<String> {
    mutate_bytes(doc.into_bytes(), tokens)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_reach_every_node_and_edits_apply() {
        let doc = json!({"a/b": [1, {"c~": 2}], "d": "3"});
        let paths = pointers(&doc);
        assert_eq!(
            paths,
            ["", "/a~1b", "/a~1b/0", "/a~1b/1", "/a~1b/1/c~0", "/d"]
        );
        let mut d = doc.clone();
        apply(&mut d, "/d", &Op::Retype);
        assert_eq!(d["d"], json!(3));
        apply(&mut d, "/a~1b/1/c~0", &Op::Remove);
        assert_eq!(d["a/b"][1], json!({}));
        apply(&mut d, "/a~1b/0", &Op::Wrap);
        assert_eq!(d["a/b"][0], json!([1]));
        apply(&mut d, "/a~1b", &Op::Insert("k".into(), json!(null)));
        assert_eq!(d["a/b"][2], json!(null));
        apply(&mut d, "", &Op::Remove);
        apply(&mut d, "/nowhere", &Op::Replace(json!(1)));
        assert_eq!(d, json!({"a/b": [[1], {}, null], "d": 3}));
    }

    #[test]
    fn config_takes_the_default_only_without_the_variable() {
        let c = config(77);
        match std::env::var("PROPTEST_CASES") {
            Ok(v) => assert_eq!(c.cases.to_string(), v),
            Err(_) => assert_eq!(c.cases, 77),
        }
    }

    #[test]
    fn bytes_show_as_a_byte_string() {
        assert_eq!(
            format!("{:?}", Bytes(b"GG\x03\0\"".to_vec())),
            "b\"GG\\x03\\x00\\\"\""
        );
    }

    #[test]
    fn byte_edits_stay_in_bounds() {
        fuzz(
            "fuzz_support_byte_edits",
            256,
            mutate_bytes(b"GGUF\x03\0\0\0".to_vec(), &["GGUF"]),
            |_| Ok(()),
        );
    }
}
