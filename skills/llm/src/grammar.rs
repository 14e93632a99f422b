//! JSON Schema → llama.cpp GBNF grammar.
//!
//! [`JsonGrammar::for_type`] turns the schemars schema of a Rust type into a grammar
//! whose every sentence is inline JSON (at most one space between tokens, no
//! newlines) that deserializes into that type. The converter handles the subset
//! schemars emits for plain data types:
//!
//! - objects with required and optional properties (`Option<T>` fields and
//!   `#[serde(default)]` fields may be left out), required keys first, each
//!   group in the order of the schema's `properties` (alphabetical unless serde_json's
//!   `preserve_order` is on);
//! - strings (`minLength`/`maxLength`), booleans, `null`;
//! - integers with their exact range (`minimum`/`maximum`, or the range of the
//!   `format`: `uint8` is `0..=255`, `int32` is `i32::MIN..=i32::MAX`, ...), so a
//!   generated number always fits the Rust integer type;
//! - numbers (`f32`/`f64`) as plain decimals;
//! - `enum`/`const` of any JSON values, `oneOf`/`anyOf` (enums with data, `Option` of a
//!   struct), `type: [T, "null"]`;
//! - arrays with `items`, `minItems`/`maxItems`, tuples (`prefixItems`);
//! - `$ref` into `$defs` or `definitions`.
//!
//! Everything is bounded: strings by [`GrammarLimits::max_string_chars`] (or a smaller
//! `maxLength`), arrays by [`GrammarLimits::max_array_items`] (or a smaller `maxItems`),
//! numbers by their digits, so every sentence has a length below
//! [`JsonGrammar::max_bytes`] and generation under the grammar always terminates.
//! Anything else (maps, patterns, string formats, recursive types, `not`, `if`, ...) is
//! refused with [`Error::UnsupportedSchema`] naming the schema location.

use std::collections::HashMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Bounds the converter puts on values the schema leaves unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarLimits {
    /// Longest string (in characters) when the schema has no smaller `maxLength`.
    pub max_string_chars: u32,
    /// Longest array when the schema has no smaller `maxItems`.
    pub max_array_items: u32,
    /// Most digits after the decimal point of a `number`.
    pub max_fraction_digits: u32,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        Self {
            max_string_chars: 96,
            max_array_items: 8,
            max_fraction_digits: 6,
        }
    }
}

/// A GBNF grammar for the JSON values of one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonGrammar {
    gbnf: String,
    max_bytes: u64,
    shape: String,
}

/// Keywords that constrain values in ways the converter cannot express.
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "dependentSchemas",
    "dependentRequired",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "multipleOf",
    "pattern",
    "$dynamicRef",
];

/// Most characters of the integer part of a `number`.
const MAX_NUMBER_INT_DIGITS: u32 = 15;

/// Longest whitespace run the grammar allows between JSON tokens.
const MAX_WS_BYTES: u64 = 1;

/// Bytes one JSON string character can take in the grammar (UTF-8 up to 4 bytes; the
/// escapes `\n`, `\"`, ... take 2).
const MAX_CHAR_BYTES: u64 = 4;

impl JsonGrammar {
    /// The grammar for the JSON form of `T`, from its schemars schema.
    ///
    /// # Errors
    /// [`Error::UnsupportedSchema`] naming the first schema node the converter cannot
    /// express.
    pub fn for_type<T: JsonSchema + ?Sized>(limits: GrammarLimits) -> Result<Self> {
        let schema = schemars::schema_for!(T);
        Self::from_schema(schema.as_value(), limits)
    }

    /// The grammar for a JSON Schema given as JSON.
    ///
    /// # Errors
    /// [`Error::UnsupportedSchema`] naming the first schema node the converter cannot
    /// express.
    pub fn from_schema(schema: &Value, limits: GrammarLimits) -> Result<Self> {
        let mut conv = Converter {
            root: schema,
            limits,
            rules: Vec::new(),
            names: HashMap::new(),
            refs: HashMap::new(),
            in_progress: Vec::new(),
        };
        let (expr, max_bytes) = conv.visit(schema, "#")?;
        let mut gbnf = format!("root ::= {expr}\n");
        for (name, body) in &conv.rules {
            let _ = writeln!(gbnf, "{name} ::= {body}");
        }
        Ok(Self {
            gbnf,
            max_bytes,
            shape: shape(schema, schema, 0),
        })
    }

    /// The grammar text (GBNF); its start rule is `root`.
    pub fn as_str(&self) -> &str {
        &self.gbnf
    }

    /// An upper bound on the length in bytes of any sentence of the grammar, hence on the
    /// number of tokens needed to generate one.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The name of the start rule.
    pub fn root(&self) -> &'static str {
        "root"
    }

    /// A short, TypeScript-like description of the values (keys in the order the
    /// grammar wants them), for telling the model what to write, e.g.
    /// `{"celsius": integer, "city": string, "rain": boolean}`.
    pub fn shape(&self) -> &str {
        &self.shape
    }
}

/// The shape description of a schema the converter accepted.
fn shape(schema: &Value, root: &Value, depth: usize) -> String {
    const ANY: &str = "any";
    let Value::Object(obj) = schema else {
        return ANY.to_owned();
    };
    if depth > 32 {
        return ANY.to_owned();
    }
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        return resolve_pointer(root, reference)
            .map_or_else(|| ANY.to_owned(), |t| shape(t, root, depth + 1));
    }
    if let Some(value) = obj.get("const") {
        return value.to_string();
    }
    if let Some(Value::Array(values)) = obj.get("enum") {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    for kw in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(subs)) = obj.get(kw) {
            return subs
                .iter()
                .map(|s| shape(s, root, depth + 1))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let of_type = |ty: &str| -> String {
        match ty {
            "array" => {
                if let Some(Value::Array(items)) = obj.get("prefixItems") {
                    let parts: Vec<String> =
                        items.iter().map(|s| shape(s, root, depth + 1)).collect();
                    format!("[{}]", parts.join(", "))
                } else {
                    let item = obj
                        .get("items")
                        .map_or_else(|| ANY.to_owned(), |s| shape(s, root, depth + 1));
                    format!("[{item}, ...]")
                }
            }
            "object" => {
                let Some(Value::Object(props)) = obj.get("properties") else {
                    return "{}".to_owned();
                };
                let required: Vec<&str> = match obj.get("required") {
                    Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                // Required first, as the grammar orders them.
                let mut fields: Vec<String> = Vec::new();
                for pass_required in [true, false] {
                    for (name, sub) in props {
                        if required.contains(&name.as_str()) == pass_required {
                            let key = serde_json::to_string(name).unwrap_or_default();
                            fields.push(format!("{key}: {}", shape(sub, root, depth + 1)));
                        }
                    }
                }
                format!("{{{}}}", fields.join(", "))
            }
            other => other.to_owned(),
        }
    };
    match obj.get("type") {
        Some(Value::String(ty)) => of_type(ty),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .map(of_type)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => ANY.to_owned(),
    }
}

struct Converter<'a> {
    root: &'a Value,
    limits: GrammarLimits,
    /// Rules in creation order: (name, body).
    rules: Vec<(String, String)>,
    /// Rule names already taken, to keep them unique.
    names: HashMap<String, ()>,
    /// `$ref` → (rule name, max bytes).
    refs: HashMap<String, (String, u64)>,
    /// `$ref`s being converted, to detect recursion.
    in_progress: Vec<String>,
}

type Piece = (String, u64);

impl<'a> Converter<'a> {
    fn visit(&mut self, schema: &'a Value, loc: &str) -> Result<Piece> {
        let obj = match schema {
            Value::Object(obj) => obj,
            Value::Bool(true) => {
                return Err(Error::unsupported(
                    loc,
                    "`true` schema (any JSON value) is unbounded",
                ))
            }
            Value::Bool(false) => {
                return Err(Error::unsupported(loc, "`false` schema accepts no value"))
            }
            _ => {
                return Err(Error::unsupported(
                    loc,
                    "a schema must be an object or a boolean",
                ))
            }
        };
        for kw in UNSUPPORTED_KEYWORDS {
            if obj.contains_key(*kw) {
                return Err(Error::unsupported(
                    format!("{loc}/{kw}"),
                    format!("keyword `{kw}` is not supported"),
                ));
            }
        }
        if let Some(reference) = obj.get("$ref") {
            let reference = reference.as_str().ok_or_else(|| {
                Error::unsupported(format!("{loc}/$ref"), "`$ref` must be a string")
            })?;
            return self.visit_ref(reference, loc);
        }
        if let Some(value) = obj.get("const") {
            return Ok(literal_json(value));
        }
        if let Some(values) = obj.get("enum") {
            let values = values.as_array().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::unsupported(format!("{loc}/enum"), "`enum` must be a non-empty array")
            })?;
            return Ok(alternatives(values.iter().map(literal_json)));
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(subs) = obj.get(kw) {
                let subs = subs.as_array().filter(|v| !v.is_empty()).ok_or_else(|| {
                    Error::unsupported(
                        format!("{loc}/{kw}"),
                        format!("`{kw}` must be a non-empty array"),
                    )
                })?;
                let mut pieces = Vec::with_capacity(subs.len());
                for (i, sub) in subs.iter().enumerate() {
                    pieces.push(self.visit(sub, &format!("{loc}/{kw}/{i}"))?);
                }
                return Ok(alternatives(pieces));
            }
        }
        if let Some(subs) = obj.get("allOf") {
            return match subs.as_array().map(Vec::as_slice) {
                Some([only]) => self.visit(only, &format!("{loc}/allOf/0")),
                _ => Err(Error::unsupported(
                    format!("{loc}/allOf"),
                    "`allOf` with more than one schema is not supported",
                )),
            };
        }
        match obj.get("type") {
            Some(Value::String(ty)) => self.visit_type(ty, obj, loc),
            Some(Value::Array(types)) => {
                let mut pieces = Vec::with_capacity(types.len());
                for (i, ty) in types.iter().enumerate() {
                    let ty = ty.as_str().ok_or_else(|| {
                        Error::unsupported(format!("{loc}/type/{i}"), "type names must be strings")
                    })?;
                    pieces.push(self.visit_type(ty, obj, loc)?);
                }
                if pieces.is_empty() {
                    return Err(Error::unsupported(format!("{loc}/type"), "empty list of types"));
                }
                Ok(alternatives(pieces))
            }
            Some(_) => Err(Error::unsupported(format!("{loc}/type"), "`type` must be a string or an array")),
            None => Err(Error::unsupported(
                loc,
                "schema without `type`, `$ref`, `enum`, `const`, `anyOf` or `oneOf` (an unconstrained value)",
            )),
        }
    }

    fn visit_ref(&mut self, reference: &str, loc: &str) -> Result<Piece> {
        if let Some(done) = self.refs.get(reference) {
            return Ok(done.clone());
        }
        if self.in_progress.iter().any(|r| r == reference) {
            return Err(Error::unsupported(
                format!("{loc}/$ref"),
                format!("recursive reference `{reference}`: recursive types have unbounded output"),
            ));
        }
        let target = resolve_pointer(self.root, reference).ok_or_else(|| {
            Error::unsupported(
                format!("{loc}/$ref"),
                format!("cannot resolve `{reference}`"),
            )
        })?;
        self.in_progress.push(reference.to_owned());
        let result = self.visit(target, reference);
        self.in_progress.pop();
        let (expr, max) = result?;
        let base = reference.rsplit('/').next().unwrap_or("def");
        let name = self.add_rule(base, expr);
        let piece = (name, max);
        self.refs.insert(reference.to_owned(), piece.clone());
        Ok(piece)
    }

    fn add_rule(&mut self, base: &str, body: String) -> String {
        let mut clean: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if clean.is_empty() || clean == "root" {
            clean = format!("r-{clean}");
        }
        let mut name = clean.clone();
        let mut n = 1;
        while self.names.contains_key(&name) {
            n += 1;
            name = format!("{clean}-{n}");
        }
        self.names.insert(name.clone(), ());
        self.rules.push((name.clone(), body));
        name
    }

    fn visit_type(&mut self, ty: &str, obj: &'a Map<String, Value>, loc: &str) -> Result<Piece> {
        match ty {
            "null" => Ok(("\"null\"".to_owned(), 4)),
            "boolean" => Ok(("(\"true\" | \"false\")".to_owned(), 5)),
            "string" => self.visit_string(obj, loc),
            "integer" => integer(obj, loc),
            "number" => Ok(self.number(obj)),
            "array" => self.visit_array(obj, loc),
            "object" => self.visit_object(obj, loc),
            other => Err(Error::unsupported(
                format!("{loc}/type"),
                format!("unknown type `{other}`"),
            )),
        }
    }

    fn string_char_rule(&mut self) -> String {
        const NAME: &str = "jchar";
        if !self.names.contains_key(NAME) {
            self.names.insert(NAME.to_owned(), ());
            self.rules.push((
                NAME.to_owned(),
                r#"[^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]"#.to_owned(),
            ));
        }
        NAME.to_owned()
    }

    /// Optional whitespace between JSON tokens: one space at most, which is how models
    /// like to write inline JSON (`{"a": 1, "b": 2}`); newlines and indentation would
    /// cost tokens without changing the value.
    fn ws_rule(&mut self) -> String {
        const NAME: &str = "ws";
        if !self.names.contains_key(NAME) {
            self.names.insert(NAME.to_owned(), ());
            self.rules.push((NAME.to_owned(), "\" \"?".to_owned()));
        }
        NAME.to_owned()
    }

    fn visit_string(&mut self, obj: &Map<String, Value>, loc: &str) -> Result<Piece> {
        if let Some(format) = obj.get("format") {
            return Err(Error::unsupported(
                format!("{loc}/format"),
                format!("string format {format} is not supported (the grammar cannot enforce it)"),
            ));
        }
        let min = uint_keyword(obj, "minLength", loc)?.unwrap_or(0);
        let max = uint_keyword(obj, "maxLength", loc)?
            .unwrap_or(u64::MAX)
            .min(u64::from(self.limits.max_string_chars));
        if min > max {
            return Err(Error::unsupported(
                format!("{loc}/minLength"),
                format!("minLength {min} exceeds the grammar's string limit {max}"),
            ));
        }
        let ch = self.string_char_rule();
        let body = if max == 0 {
            String::new()
        } else {
            format!(" {ch}{{{min},{max}}}")
        };
        Ok((format!("\"\\\"\"{body} \"\\\"\""), 2 + max * MAX_CHAR_BYTES))
    }

    fn number(&mut self, obj: &Map<String, Value>) -> Piece {
        let non_negative = obj
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| m >= 0.0);
        let sign = if non_negative { "" } else { "\"-\"? " };
        let int_tail = MAX_NUMBER_INT_DIGITS - 1;
        let frac = self.limits.max_fraction_digits;
        let frac_part = if frac == 0 {
            String::new()
        } else {
            format!(" (\".\" [0-9]{{1,{frac}}})?")
        };
        let expr = format!("({sign}(\"0\" | [1-9] [0-9]{{0,{int_tail}}}){frac_part})");
        let max = u64::from(!non_negative)
            + u64::from(MAX_NUMBER_INT_DIGITS)
            + if frac == 0 { 0 } else { 1 + u64::from(frac) };
        (expr, max)
    }

    fn visit_array(&mut self, obj: &'a Map<String, Value>, loc: &str) -> Result<Piece> {
        if let Some(prefix) = obj.get("prefixItems") {
            let prefix = prefix.as_array().ok_or_else(|| {
                Error::unsupported(
                    format!("{loc}/prefixItems"),
                    "`prefixItems` must be an array",
                )
            })?;
            match obj.get("items") {
                None | Some(Value::Bool(false)) => {}
                Some(_) => {
                    return Err(Error::unsupported(
                        format!("{loc}/items"),
                        "tuples with extra `items` are not supported",
                    ))
                }
            }
            let ws = self.ws_rule();
            let mut parts = Vec::with_capacity(prefix.len());
            let mut max = 2 + 2 * MAX_WS_BYTES;
            for (i, sub) in prefix.iter().enumerate() {
                let (expr, len) = self.visit(sub, &format!("{loc}/prefixItems/{i}"))?;
                parts.push(expr);
                max += len + 1 + MAX_WS_BYTES;
            }
            let sep = format!(" \",\" {ws} ");
            return Ok((format!("\"[\" {ws} {} {ws} \"]\"", parts.join(&sep)), max));
        }
        let items = obj.get("items").ok_or_else(|| {
            Error::unsupported(loc, "array without `items` (elements are unconstrained)")
        })?;
        let (item, item_max) = self.visit(items, &format!("{loc}/items"))?;
        let min = uint_keyword(obj, "minItems", loc)?.unwrap_or(0);
        let max = uint_keyword(obj, "maxItems", loc)?
            .unwrap_or(u64::MAX)
            .min(u64::from(self.limits.max_array_items));
        if min > max {
            return Err(Error::unsupported(
                format!("{loc}/minItems"),
                format!("minItems {min} exceeds the grammar's array limit {max}"),
            ));
        }
        let ws = self.ws_rule();
        let expr = match (min, max) {
            (_, 0) => format!("\"[\" {ws} \"]\""),
            (0, max) => {
                let rest = if max > 1 {
                    format!(" (\",\" {ws} {item}){{0,{}}}", max - 1)
                } else {
                    String::new()
                };
                format!("\"[\" {ws} ({item}{rest} {ws})? \"]\"")
            }
            (min, max) => format!(
                "\"[\" {ws} {item} (\",\" {ws} {item}){{{},{}}} {ws} \"]\"",
                min - 1,
                max - 1
            ),
        };
        Ok((
            expr,
            2 + 2 * MAX_WS_BYTES + max * (item_max + 1 + MAX_WS_BYTES),
        ))
    }

    fn visit_object(&mut self, obj: &'a Map<String, Value>, loc: &str) -> Result<Piece> {
        match obj.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return Err(Error::unsupported(
                format!("{loc}/additionalProperties"),
                "maps (`additionalProperties`) are not supported; use a struct or a Vec of pairs",
            )),
        }
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let props = match obj.get("properties") {
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(Error::unsupported(
                    format!("{loc}/properties"),
                    "`properties` must be an object",
                ))
            }
            None => EMPTY.get_or_init(Map::new),
        };
        let required: Vec<&str> = match obj.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(Error::unsupported(
                    format!("{loc}/required"),
                    "`required` must be an array",
                ))
            }
            None => Vec::new(),
        };
        for name in &required {
            if !props.contains_key(*name) {
                return Err(Error::unsupported(
                    format!("{loc}/required"),
                    format!("required property `{name}` has no schema in `properties`"),
                ));
            }
        }
        // Required properties first (in schema order), then the optional ones, each of
        // which may be left out.
        let ws = self.ws_rule();
        let mut req = Vec::new();
        let mut opt = Vec::new();
        for (name, sub) in props {
            let (value, value_max) =
                self.visit(sub, &format!("{loc}/properties/{}", escape_pointer(name)))?;
            let key = serde_json::to_string(name).unwrap_or_default();
            let kv = format!("{} {ws} \":\" {ws} {value}", gbnf_literal(&key));
            let len = key.len() as u64 + 1 + value_max + 3 * MAX_WS_BYTES;
            if required.contains(&name.as_str()) {
                req.push((kv, len));
            } else {
                opt.push((kv, len));
            }
        }
        let max = 2 + 2 * MAX_WS_BYTES + req.iter().chain(&opt).map(|(_, l)| l + 1).sum::<u64>();
        let sep = format!(" \",\" {ws} ");
        let mut body = req
            .iter()
            .map(|(kv, _)| kv.clone())
            .collect::<Vec<_>>()
            .join(&sep);
        if opt.is_empty() {
            let body = if body.is_empty() {
                body
            } else {
                format!("{body} {ws}")
            };
            return Ok((format!("\"{{\" {ws} {body} \"}}\""), max));
        }
        if req.is_empty() {
            // The first present optional property carries no comma: one alternative per
            // choice of first property, each followed by the optional rest.
            let mut alts = Vec::with_capacity(opt.len());
            for (i, (kv, _)) in opt.iter().enumerate() {
                let mut alt = kv.clone();
                for (later, _) in opt.iter().skip(i + 1) {
                    let _ = write!(alt, " (\",\" {ws} {later})?");
                }
                alts.push(alt);
            }
            body = format!("(({}) {ws})?", alts.join(" | "));
        } else {
            for (kv, _) in &opt {
                let _ = write!(body, " (\",\" {ws} {kv})?");
            }
            body.push_str(&format!(" {ws}"));
        }
        Ok((format!("\"{{\" {ws} {body} \"}}\""), max))
    }
}

/// The range of an integer schema, from `minimum`/`maximum` or else its `format`.
fn integer(obj: &Map<String, Value>, loc: &str) -> Result<Piece> {
    let (fmt_lo, fmt_hi): (i128, i128) = match obj.get("format").and_then(Value::as_str) {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint" | "uint128") => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let bound = |key: &str, exclusive: &str, up: bool| -> Result<Option<i128>> {
        let inclusive = obj
            .get(key)
            .map(|v| as_i128(v, &format!("{loc}/{key}"), up))
            .transpose()?;
        let excl = obj
            .get(exclusive)
            .map(|v| as_i128(v, &format!("{loc}/{exclusive}"), up))
            .transpose()?
            .map(|v| if up { v - 1 } else { v + 1 });
        Ok(match (inclusive, excl) {
            (Some(a), Some(b)) => Some(if up { a.min(b) } else { a.max(b) }),
            (a, b) => a.or(b),
        })
    };
    let lo = bound("minimum", "exclusiveMinimum", false)?.map_or(fmt_lo, |v| v.max(fmt_lo));
    let hi = bound("maximum", "exclusiveMaximum", true)?.map_or(fmt_hi, |v| v.min(fmt_hi));
    if lo > hi {
        return Err(Error::unsupported(
            loc,
            format!("empty integer range {lo}..={hi}"),
        ));
    }
    Ok(int_range(lo, hi))
}

fn as_i128(v: &Value, loc: &str, up: bool) -> Result<i128> {
    if let Some(i) = v.as_i64() {
        return Ok(i.into());
    }
    if let Some(u) = v.as_u64() {
        return Ok(u.into());
    }
    match v.as_f64() {
        // A fractional bound: round towards the inside of the range.
        Some(f) if f.is_finite() && f.abs() < 1e30 => {
            let r = if up { f.floor() } else { f.ceil() };
            #[allow(clippy::cast_possible_truncation)]
            Ok(r as i128)
        }
        _ => Err(Error::unsupported(loc, "bound must be a finite number")),
    }
}

fn uint_keyword(obj: &Map<String, Value>, key: &str, loc: &str) -> Result<Option<u64>> {
    obj.get(key)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                Error::unsupported(
                    format!("{loc}/{key}"),
                    format!("`{key}` must be a non-negative integer"),
                )
            })
        })
        .transpose()
}

/// A grammar for the decimal integers in `lo..=hi`, without leading zeros.
pub(crate) fn int_range(lo: i128, hi: i128) -> Piece {
    let mut alts = Vec::new();
    if lo < 0 {
        // Negative part: "-" followed by magnitudes |min(hi, -1)| ..= |lo|.
        let mag_lo = hi.min(-1).unsigned_abs();
        let mag_hi = lo.unsigned_abs();
        let inner = uint_range_alts(mag_lo, mag_hi);
        alts.push(format!("\"-\" ({})", inner.join(" | ")));
    }
    if hi >= 0 {
        let start = u128::try_from(lo.max(0)).unwrap_or(0);
        let end = u128::try_from(hi).unwrap_or(0);
        alts.extend(uint_range_alts(start, end));
    }
    let max = digits(lo.unsigned_abs()).max(digits(hi.unsigned_abs())) as u64 + u64::from(lo < 0);
    (format!("({})", alts.join(" | ")), max)
}

fn digits(v: u128) -> usize {
    v.to_string().len()
}

/// Alternatives for the unsigned integers `lo..=hi` (`lo <= hi`).
fn uint_range_alts(lo: u128, hi: u128) -> Vec<String> {
    let mut out = Vec::new();
    let (dl, dh) = (digits(lo), digits(hi));
    for len in dl..=dh {
        let len_lo = if len == dl { lo } else { pow10(len - 1) };
        let len_hi = if len == dh { hi } else { pow10(len) - 1 };
        let lo_digits: Vec<u8> = len_lo.to_string().bytes().map(|b| b - b'0').collect();
        let hi_digits: Vec<u8> = len_hi.to_string().bytes().map(|b| b - b'0').collect();
        same_len_alts(&lo_digits, &hi_digits, String::new(), &mut out);
    }
    out
}

fn pow10(n: usize) -> u128 {
    (0..n).fold(1u128, |acc, _| acc.saturating_mul(10))
}

/// Alternatives for the digit strings between `lo` and `hi` (same length, `lo <= hi`),
/// each prefixed by `prefix`.
fn same_len_alts(lo: &[u8], hi: &[u8], prefix: String, out: &mut Vec<String>) {
    let (Some((&l, lo_rest)), Some((&h, hi_rest))) = (lo.split_first(), hi.split_first()) else {
        out.push(if prefix.is_empty() {
            "\"\"".to_owned()
        } else {
            prefix
        });
        return;
    };
    let join = |prefix: &str, part: String| {
        if prefix.is_empty() {
            part
        } else {
            format!("{prefix} {part}")
        }
    };
    let any_rest = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!(" [0-9]{{{n}}}")
        }
    };
    if l == h {
        same_len_alts(lo_rest, hi_rest, join(&prefix, format!("\"{l}\"")), out);
        return;
    }
    let lo_rest_min = lo_rest.iter().all(|&d| d == 0);
    let hi_rest_max = hi_rest.iter().all(|&d| d == 9);
    // First digit l with the rest from lo_rest up (unless lo_rest is all zeros, then l
    // joins the middle block).
    let mid_lo = if lo_rest_min {
        l
    } else {
        let nines = vec![9u8; lo_rest.len()];
        same_len_alts(lo_rest, &nines, join(&prefix, format!("\"{l}\"")), out);
        l + 1
    };
    let mid_hi = if hi_rest_max { h } else { h - 1 };
    if mid_lo <= mid_hi {
        let class = if mid_lo == mid_hi {
            format!("\"{mid_lo}\"")
        } else {
            format!("[{mid_lo}-{mid_hi}]")
        };
        out.push(join(&prefix, format!("{class}{}", any_rest(lo_rest.len()))));
    }
    if !hi_rest_max {
        let zeros = vec![0u8; hi_rest.len()];
        same_len_alts(&zeros, hi_rest, join(&prefix, format!("\"{h}\"")), out);
    }
}

/// A GBNF literal matching exactly the compact JSON text of `value`.
fn literal_json(value: &Value) -> Piece {
    let text = value.to_string();
    let len = text.len() as u64;
    (gbnf_literal(&text), len)
}

fn alternatives(pieces: impl IntoIterator<Item = Piece>) -> Piece {
    let mut exprs = Vec::new();
    let mut max = 0;
    for (expr, len) in pieces {
        exprs.push(expr);
        max = max.max(len);
    }
    (format!("({})", exprs.join(" | ")), max)
}

/// `text` as a double-quoted GBNF literal.
fn gbnf_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Resolves a local JSON pointer reference (`#/$defs/Name`).
fn resolve_pointer<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    let unescaped: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut node = root;
    for part in &unescaped {
        node = match node {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    /// Enumerates every string of an `int_range` expression (small ranges only).
    fn expand(expr: &str) -> Vec<String> {
        // Supports the subset int_range emits: alternatives separated by " | ", each a
        // sequence of "d" literals, [a-b] classes and [0-9]{n}.
        let inner = expr.strip_prefix('(').unwrap().strip_suffix(')').unwrap();
        let mut out = Vec::new();
        for alt in split_top(inner) {
            let alt = alt.trim();
            if let Some(rest) = alt.strip_prefix("\"-\" (") {
                let rest = rest.strip_suffix(')').unwrap();
                for s in expand(&format!("({rest})")) {
                    out.push(format!("-{s}"));
                }
                continue;
            }
            let mut acc = vec![String::new()];
            for tok in alt.split(' ') {
                let choices: Vec<String> = if let Some(d) = tok.strip_prefix('"') {
                    vec![d.trim_end_matches('"').to_owned()]
                } else if let Some(n) = tok.strip_prefix("[0-9]{") {
                    let n: u32 = n.trim_end_matches('}').parse().unwrap();
                    (0..10u64.pow(n))
                        .map(|v| format!("{v:0width$}", width = n as usize))
                        .collect()
                } else if tok.starts_with('[') {
                    let a = tok.as_bytes()[1] - b'0';
                    let b = tok.as_bytes()[3] - b'0';
                    let mut v: Vec<String> = (a..=b).map(|d| d.to_string()).collect();
                    if let Some(n) = tok.split_once("]{").map(|(_, n)| n.trim_end_matches('}')) {
                        let n: u32 = n.parse().unwrap();
                        let extra: Vec<String> = (0..10u64.pow(n))
                            .map(|x| format!("{x:0width$}", width = n as usize))
                            .collect();
                        v = v
                            .iter()
                            .flat_map(|p| extra.iter().map(move |e| format!("{p}{e}")))
                            .collect();
                    }
                    v
                } else {
                    panic!("unexpected token {tok}")
                };
                acc = acc
                    .iter()
                    .flat_map(|p| choices.iter().map(move |c| format!("{p}{c}")))
                    .collect();
            }
            out.extend(acc);
        }
        out
    }

    fn split_top(s: &str) -> Vec<String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 && s[i..].starts_with(" | ") {
                parts.push(std::mem::take(&mut cur));
                i += 3;
                continue;
            }
            cur.push(c);
            i += 1;
        }
        parts.push(cur);
        parts
    }

    #[test]
    fn int_ranges_are_exact() {
        for (lo, hi) in [
            (0, 0),
            (0, 9),
            (0, 255),
            (1, 100),
            (7, 7),
            (13, 987),
            (-128, 127),
            (-5, -1),
            (-1000, -17),
            (-3, 40),
            (100, 199),
            (190, 1005),
        ] {
            let (expr, max) = int_range(lo, hi);
            let mut got: Vec<i128> = expand(&expr).iter().map(|s| s.parse().unwrap()).collect();
            // No leading zeros or "-0": every string round-trips.
            for s in expand(&expr) {
                assert_eq!(
                    s,
                    s.parse::<i128>().unwrap().to_string(),
                    "{lo}..={hi}: {expr}"
                );
                assert!(s.len() as u64 <= max);
            }
            got.sort_unstable();
            let want: Vec<i128> = (lo..=hi).collect();
            assert_eq!(got, want, "{lo}..={hi}: {expr}");
        }
    }

    #[derive(JsonSchema, Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        Sunny,
        Rainy,
    }

    #[derive(JsonSchema, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        #[schemars(length(max = 10))]
        name: String,
        level: u8,
    }

    #[derive(JsonSchema, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        kind: Kind,
        inner: Inner,
        maybe: Option<Inner>,
        #[schemars(length(min = 1, max = 3))]
        tags: Vec<String>,
        score: f32,
        ok: bool,
        note: Option<String>,
    }

    #[test]
    fn struct_grammar_has_rules_and_bound() {
        let g = JsonGrammar::for_type::<Outer>(GrammarLimits::default()).unwrap();
        let text = g.as_str();
        assert!(text.starts_with("root ::= "), "{text}");
        assert!(text.contains("inner ::= "), "{text}");
        assert!(
            text.contains("kind ::= (\"\\\"Sunny\\\"\" | \"\\\"Rainy\\\"\")"),
            "{text}"
        );
        assert!(text.contains("jchar{0,10}"), "{text}");
        assert!(
            g.max_bytes() > 100 && g.max_bytes() < 10_000,
            "{}",
            g.max_bytes()
        );
        assert_eq!(
            g.shape(),
            r#"{"inner": {"level": integer, "name": string}, "kind": "Sunny" | "Rainy", "ok": boolean, "score": number, "tags": [string, ...], "maybe": {"level": integer, "name": string} | null, "note": string | null}"#
        );
    }

    #[test]
    fn maps_are_refused_with_location() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct WithMap {
            counts: std::collections::HashMap<String, u32>,
        }
        let err = JsonGrammar::for_type::<WithMap>(GrammarLimits::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("#/properties/counts/additionalProperties"),
            "{msg}"
        );
    }

    #[test]
    fn recursion_is_refused() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct Node {
            children: Vec<Node>,
        }
        let err = JsonGrammar::for_type::<Node>(GrammarLimits::default()).unwrap_err();
        assert!(err.to_string().contains("recursive"), "{err}");
    }

    #[test]
    fn patterns_and_formats_are_refused() {
        let schema = serde_json::json!({"type": "string", "pattern": "^a+$"});
        let err = JsonGrammar::from_schema(&schema, GrammarLimits::default()).unwrap_err();
        assert!(err.to_string().contains("#/pattern"), "{err}");
        let schema = serde_json::json!({"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}});
        let err = JsonGrammar::from_schema(&schema, GrammarLimits::default()).unwrap_err();
        assert!(
            err.to_string().contains("#/properties/when/format"),
            "{err}"
        );
        let err =
            JsonGrammar::from_schema(&serde_json::json!({}), GrammarLimits::default()).unwrap_err();
        assert!(err.to_string().contains("unconstrained"), "{err}");
    }

    #[test]
    fn optional_only_object() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}
        });
        let g = JsonGrammar::from_schema(&schema, GrammarLimits::default()).unwrap();
        assert_eq!(
            g.as_str(),
            "root ::= \"{\" ws ((\"\\\"a\\\"\" ws \":\" ws (\"true\" | \"false\") (\",\" ws \"\\\"b\\\"\" ws \":\" ws \"null\")? | \"\\\"b\\\"\" ws \":\" ws \"null\") ws)? \"}\"\nws ::= \" \"?\n"
        );
    }
}
