//! JSON Schema → llama.cpp GBNF grammar: schema bounding in Rust, conversion by
//! llama.cpp's own `json_schema_to_grammar`.
//!
//! [`JsonGrammar::for_type`] turns the schemars schema of a Rust type into a grammar
//! whose every sentence is inline JSON that deserializes into that type and has a
//! length below [`JsonGrammar::max_bytes`], so generation under it always ends. It
//! works in three steps:
//!
//! 1. **Bounding** ([`BoundedSchema`], pure Rust, no llama.cpp): the schema is
//!    rewritten into the subset llama.cpp's converter turns into a *finite* grammar
//!    that admits only values of the type. Strings get a `maxLength` (at most
//!    [`GrammarLimits::max_string_chars`]), arrays a `maxItems` (at most
//!    [`GrammarLimits::max_array_items`]); integers get the exact range of their
//!    `format` (`uint8` is `0..=255`, `int32` is `i32::MIN..=i32::MAX`; 64-bit types
//!    stay within the 16 digits llama.cpp allows an unbounded integer, which fit);
//!    objects list their `properties` (so that llama.cpp does not admit any object),
//!    tuples lose the `items: false` llama.cpp would misread, `allOf` of one schema
//!    becomes that schema, `type: [A, B]` becomes `anyOf`, annotations are dropped
//!    and `$ref`s into `$defs`/`definitions` are kept, each definition bounded once.
//!    What cannot be bounded or enforced is refused with
//!    [`Error::UnsupportedSchema`] naming the schema node (a JSON pointer): maps
//!    (`additionalProperties`), recursive types, `true`/empty schemas (any value),
//!    `pattern` (llama.cpp falls back to *any string* for regexes it cannot
//!    translate), string `format`s other than `uuid` (llama.cpp's `date` admits
//!    `2027-02-31`, which chrono refuses), bounds on `number`s (llama.cpp ignores
//!    them), `not`, `if`, `multipleOf`, ...
//!    The same walk computes [`BoundedSchema::max_bytes`] and the
//!    [`BoundedSchema::shape`] hint.
//! 2. **Conversion** (feature `engine`): `llama_cpp_2::json_schema_to_grammar` on the
//!    bounded schema.
//! 3. **Primitive overrides** (feature `engine`): three of llama.cpp's built-in rules
//!    are replaced, each matched exactly so that a llama.cpp upgrade that changes them
//!    fails loudly ([`JsonGrammar::from_schema`] errors) instead of silently:
//!    - `space` (`| " " | "\n"{1,2} [ \t]{0,20}`) becomes `" "?`: inline JSON, as
//!      models write it and as the shape hint shows it, 1 byte instead of 22 per gap;
//!    - `number` loses its exponent (`1e999` does not fit an `f64`, so serde_json
//!      refuses it) and `decimal-part` is cut to
//!      [`GrammarLimits::max_fraction_digits`] digits;
//!    - `char` no longer admits `\uD800`–`\uDFFF` escapes (lone surrogates, which
//!      serde_json refuses); other `\u` escapes stay.
//!
//! Grammars of this module are version 2 of the sampling spec
//! ([`crate::SpecVersion::LlamaCppGrammar`]); version 1 grammars came from the
//! hand-written converter this module replaced, see [`crate::SpecVersion`].

use std::collections::HashMap;

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Bounds put on values the schema leaves unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarLimits {
    /// Longest string (in characters) when the schema has no smaller `maxLength`.
    pub max_string_chars: u32,
    /// Longest array when the schema has no smaller `maxItems`.
    pub max_array_items: u32,
    /// Most digits after the decimal point of a `number` (0: integers only).
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

/// Keywords that constrain values in ways llama.cpp's converter does not enforce
/// (or, for `pattern`, enforces only sometimes and otherwise accepts any string).
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

/// Longest whitespace run the grammar allows between JSON tokens (after the `space`
/// override).
const MAX_WS_BYTES: u64 = 1;

/// Bytes one JSON string character can take: UTF-8 up to 4, a `\uXXXX` escape 6.
const MAX_CHAR_BYTES: u64 = 6;

/// Digits llama.cpp allows the integral part of an unbounded integer or a number
/// (`[1-9] [0-9]{0,15}`).
const MAX_INTEGRAL_DIGITS: u64 = 16;

/// Bytes of a quoted UUID.
const UUID_BYTES: u64 = 38;

/// A schema rewritten so that llama.cpp's converter makes a finite grammar of it,
/// with the length bound and the shape hint of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedSchema {
    schema: Value,
    max_bytes: u64,
    shape: String,
}

impl BoundedSchema {
    /// Bounds the schemars schema of `T`.
    ///
    /// # Errors
    /// [`Error::UnsupportedSchema`] naming the first schema node that cannot be
    /// bounded or enforced.
    pub fn for_type<T: JsonSchema + ?Sized>(limits: GrammarLimits) -> Result<Self> {
        let schema = schemars::schema_for!(T);
        Self::new(schema.as_value(), limits)
    }

    /// Bounds a JSON Schema given as JSON.
    ///
    /// # Errors
    /// [`Error::UnsupportedSchema`] naming the first schema node that cannot be
    /// bounded or enforced.
    pub fn new(schema: &Value, limits: GrammarLimits) -> Result<Self> {
        let mut bounder = Bounder {
            root: schema,
            limits,
            defs: HashMap::new(),
            in_progress: Vec::new(),
        };
        let (mut bounded, max_bytes) = bounder.visit(schema, "#")?;
        if !bounder.defs.is_empty() {
            let Value::Object(root) = &mut bounded else {
                // The root is a `$ref`, rewritten as `{"$ref": ...}`: always an object.
                return Err(Error::unsupported("#", "the root must be a schema object"));
            };
            for (reference, (def, _)) in bounder.defs {
                let Some((container, name)) = def_location(&reference) else {
                    continue;
                };
                let defs = root
                    .entry(container)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(defs) = defs {
                    defs.insert(name, def);
                }
            }
        }
        let shape = shape(&bounded, &bounded, 0);
        Ok(Self {
            schema: bounded,
            max_bytes,
            shape,
        })
    }

    /// The bounded schema, as handed to llama.cpp's converter.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// An upper bound on the length in bytes of the inline JSON text of any value of
    /// the schema (as the grammar lets it be written), hence on the number of tokens
    /// needed to generate one.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// A short, TypeScript-like description of the values (keys in the order the
    /// grammar wants them: required first), e.g.
    /// `{"celsius": integer, "city": string, "rain": boolean}`.
    pub fn shape(&self) -> &str {
        &self.shape
    }
}

/// A GBNF grammar for the JSON values of one schema: llama.cpp's conversion of the
/// [`BoundedSchema`], with the module's primitive overrides.
#[cfg(feature = "engine")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonGrammar {
    gbnf: String,
    bounded: BoundedSchema,
}

#[cfg(feature = "engine")]
impl JsonGrammar {
    /// The grammar for the JSON form of `T`, from its schemars schema.
    ///
    /// # Errors
    /// [`Error::UnsupportedSchema`] naming the first schema node that cannot be
    /// bounded, or (location `#`) llama.cpp's refusal.
    pub fn for_type<T: JsonSchema + ?Sized>(limits: GrammarLimits) -> Result<Self> {
        let schema = schemars::schema_for!(T);
        Self::from_schema(schema.as_value(), limits)
    }

    /// The grammar for a JSON Schema given as JSON.
    ///
    /// # Errors
    /// As [`JsonGrammar::for_type`].
    pub fn from_schema(schema: &Value, limits: GrammarLimits) -> Result<Self> {
        let bounded = BoundedSchema::new(schema, limits)?;
        let text = serde_json::to_string(bounded.schema())
            .map_err(|e| Error::unsupported("#", format!("cannot serialize the schema: {e}")))?;
        let gbnf = llama_cpp_2::json_schema_to_grammar(&text).map_err(|e| {
            Error::unsupported("#", format!("llama.cpp's converter refused it: {e}"))
        })?;
        let gbnf = override_primitives(&gbnf, limits)?;
        Ok(Self { gbnf, bounded })
    }

    /// The grammar text (GBNF); its start rule is `root`.
    pub fn as_str(&self) -> &str {
        &self.gbnf
    }

    /// An upper bound on the length in bytes of any sentence of the grammar, hence on
    /// the number of tokens needed to generate one ([`BoundedSchema::max_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        self.bounded.max_bytes()
    }

    /// The name of the start rule.
    pub fn root(&self) -> &'static str {
        "root"
    }

    /// The shape hint ([`BoundedSchema::shape`]).
    pub fn shape(&self) -> &str {
        self.bounded.shape()
    }

    /// The bounded schema the grammar was converted from.
    pub fn bounded_schema(&self) -> &BoundedSchema {
        &self.bounded
    }
}

/// llama.cpp's built-in rules (json-schema-to-grammar.cpp, llama-cpp-sys-2 0.1.161)
/// that [`override_primitives`] replaces, by rule body.
#[cfg(feature = "engine")]
const SPACE_BODY: &str = r#"| " " | "\n"{1,2} [ \t]{0,20}"#;
#[cfg(feature = "engine")]
const NUMBER_BODY: &str = r#"("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?"#;
#[cfg(feature = "engine")]
const DECIMAL_BODY: &str = "[0-9]{1,16}";
#[cfg(feature = "engine")]
const CHAR_BODY: &str = r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})"#;

/// Replaces llama.cpp's `space`, `number`, `decimal-part` and `char` rules (see the
/// module docs). Rules are matched by body, so a primitive inlined as `root` is
/// covered too.
///
/// # Errors
/// [`Error::UnsupportedSchema`] when the grammar uses one of these primitives in a
/// form this function does not know (llama.cpp changed them).
#[cfg(feature = "engine")]
fn override_primitives(gbnf: &str, limits: GrammarLimits) -> Result<String> {
    let frac = limits.max_fraction_digits;
    let number = if frac == 0 {
        r#"("-"? integral-part)"#.to_owned()
    } else {
        r#"("-"? integral-part) ("." decimal-part)?"#.to_owned()
    };
    let decimal = format!("[0-9]{{1,{}}}", frac.max(1));
    let char_rule = r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))"#;
    let mut out = String::with_capacity(gbnf.len());
    for line in gbnf.lines() {
        let Some((name, body)) = line.split_once(" ::= ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let body = match body {
            SPACE_BODY => "\" \"?",
            NUMBER_BODY => number.as_str(),
            DECIMAL_BODY => decimal.as_str(),
            CHAR_BODY => char_rule,
            other => {
                for (marker, what) in [
                    ("\"\\n\"{1,2}", "space"),
                    ("[eE] [-+]?", "number"),
                    ("\"u\" [0-9a-fA-F]{4}", "char"),
                ] {
                    if other.contains(marker) {
                        return Err(Error::unsupported(
                            "#",
                            format!(
                                "llama.cpp's `{what}` rule changed (rule `{name}`: {other}); \
                                 update the overrides in grammar.rs"
                            ),
                        ));
                    }
                }
                other
            }
        };
        out.push_str(name);
        out.push_str(" ::= ");
        out.push_str(body);
        out.push('\n');
    }
    Ok(out)
}

/// Where a `$ref` that is kept points: `("$defs" | "definitions", name)`.
fn def_location(reference: &str) -> Option<(String, String)> {
    for container in ["$defs", "definitions"] {
        if let Some(name) = reference.strip_prefix(&format!("#/{container}/")) {
            if !name.contains('/') {
                return Some((container.to_owned(), unescape_pointer(name)));
            }
        }
    }
    None
}

struct Bounder<'a> {
    root: &'a Value,
    limits: GrammarLimits,
    /// Bounded definitions by `$ref` (kept refs only), with their max bytes.
    defs: HashMap<String, (Value, u64)>,
    /// `$ref`s being bounded, to detect recursion.
    in_progress: Vec<String>,
}

/// A bounded schema node and the most bytes a value of it takes.
type Bounded = (Value, u64);

impl<'a> Bounder<'a> {
    fn visit(&mut self, schema: &'a Value, loc: &str) -> Result<Bounded> {
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
        if obj.contains_key("anyOf") && obj.contains_key("oneOf") {
            return Err(Error::unsupported(
                loc,
                "both `anyOf` and `oneOf` (llama.cpp would use only `oneOf`)",
            ));
        }
        for kw in ["oneOf", "anyOf"] {
            if let Some(subs) = obj.get(kw) {
                let subs = subs.as_array().filter(|v| !v.is_empty()).ok_or_else(|| {
                    Error::unsupported(
                        format!("{loc}/{kw}"),
                        format!("`{kw}` must be a non-empty array"),
                    )
                })?;
                let mut alts = Vec::with_capacity(subs.len());
                let mut max = 0;
                for (i, sub) in subs.iter().enumerate() {
                    let (alt, len) = self.visit(sub, &format!("{loc}/{kw}/{i}"))?;
                    alts.push(alt);
                    max = max.max(len);
                }
                return Ok((single(kw, Value::Array(alts)), max));
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
        if let Some(value) = obj.get("const") {
            return Ok((single("const", value.clone()), literal_bytes(value)));
        }
        if let Some(values) = obj.get("enum") {
            let values = values.as_array().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::unsupported(format!("{loc}/enum"), "`enum` must be a non-empty array")
            })?;
            let max = values.iter().map(literal_bytes).max().unwrap_or(0);
            return Ok((single("enum", Value::Array(values.clone())), max));
        }
        match obj.get("type") {
            Some(Value::String(ty)) => self.visit_type(ty, obj, loc),
            Some(Value::Array(types)) => {
                if types.is_empty() {
                    return Err(Error::unsupported(format!("{loc}/type"), "empty list of types"));
                }
                let mut alts = Vec::with_capacity(types.len());
                let mut max = 0;
                for (i, ty) in types.iter().enumerate() {
                    let ty = ty.as_str().ok_or_else(|| {
                        Error::unsupported(format!("{loc}/type/{i}"), "type names must be strings")
                    })?;
                    let (alt, len) = self.visit_type(ty, obj, loc)?;
                    alts.push(alt);
                    max = max.max(len);
                }
                Ok((single("anyOf", Value::Array(alts)), max))
            }
            Some(_) => Err(Error::unsupported(
                format!("{loc}/type"),
                "`type` must be a string or an array",
            )),
            None => Err(Error::unsupported(
                loc,
                "schema without `type`, `$ref`, `enum`, `const`, `anyOf` or `oneOf` (an unconstrained value)",
            )),
        }
    }

    fn visit_ref(&mut self, reference: &str, loc: &str) -> Result<Bounded> {
        if self.in_progress.iter().any(|r| r == reference) {
            return Err(Error::unsupported(
                format!("{loc}/$ref"),
                format!("recursive reference `{reference}`: recursive types have unbounded output"),
            ));
        }
        let kept = def_location(reference).is_some();
        if let Some((_, max)) = self.defs.get(reference) {
            return Ok((single("$ref", Value::String(reference.to_owned())), *max));
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
        let (bounded, max) = result?;
        if !kept {
            // A reference llama.cpp could follow but that does not point into the
            // definitions: inline it.
            return Ok((bounded, max));
        }
        self.defs.insert(reference.to_owned(), (bounded, max));
        Ok((single("$ref", Value::String(reference.to_owned())), max))
    }

    fn visit_type(&mut self, ty: &str, obj: &'a Map<String, Value>, loc: &str) -> Result<Bounded> {
        match ty {
            "null" => Ok((single("type", "null".into()), 4)),
            "boolean" => Ok((single("type", "boolean".into()), 5)),
            "string" => self.visit_string(obj, loc),
            "integer" => integer(obj, loc),
            "number" => self.number(obj, loc),
            "array" => self.visit_array(obj, loc),
            "object" => self.visit_object(obj, loc),
            other => Err(Error::unsupported(
                format!("{loc}/type"),
                format!("unknown type `{other}`"),
            )),
        }
    }

    fn visit_string(&mut self, obj: &Map<String, Value>, loc: &str) -> Result<Bounded> {
        if let Some(format) = obj.get("format") {
            return match format.as_str() {
                Some(f) if f == "uuid" || (f.len() == 5 && f.starts_with("uuid")) => Ok((
                    serde_json::json!({"type": "string", "format": "uuid"}),
                    UUID_BYTES,
                )),
                _ => Err(Error::unsupported(
                    format!("{loc}/format"),
                    format!(
                        "string format {format} is not supported (the grammar cannot enforce it: \
                         llama.cpp ignores most formats and its `date` admits impossible dates)"
                    ),
                )),
            };
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
        let mut out = Map::new();
        out.insert("type".into(), "string".into());
        if min > 0 {
            out.insert("minLength".into(), min.into());
        }
        out.insert("maxLength".into(), max.into());
        Ok((Value::Object(out), 2 + max * MAX_CHAR_BYTES))
    }

    fn number(&mut self, obj: &Map<String, Value>, loc: &str) -> Result<Bounded> {
        for kw in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
            if obj.contains_key(kw) {
                return Err(Error::unsupported(
                    format!("{loc}/{kw}"),
                    format!(
                        "`{kw}` on a number is not supported (llama.cpp's grammar ignores it); \
                         use an integer or check the value after parsing"
                    ),
                ));
            }
        }
        let frac = u64::from(self.limits.max_fraction_digits);
        let max = 1 + MAX_INTEGRAL_DIGITS + if frac == 0 { 0 } else { 1 + frac };
        Ok((single("type", "number".into()), max))
    }

    fn visit_array(&mut self, obj: &'a Map<String, Value>, loc: &str) -> Result<Bounded> {
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
            let mut items = Vec::with_capacity(prefix.len());
            let mut max = 2 + 2 * MAX_WS_BYTES;
            for (i, sub) in prefix.iter().enumerate() {
                let (item, len) = self.visit(sub, &format!("{loc}/prefixItems/{i}"))?;
                items.push(item);
                max += len + 1 + MAX_WS_BYTES;
            }
            let out = serde_json::json!({"type": "array", "prefixItems": items});
            return Ok((out, max));
        }
        let items = match obj.get("items") {
            Some(Value::Array(_)) => {
                return Err(Error::unsupported(
                    format!("{loc}/items"),
                    "`items` as an array (draft-7 tuples) is not supported; use `prefixItems`",
                ))
            }
            Some(items) => items,
            None => {
                return Err(Error::unsupported(
                    loc,
                    "array without `items` (elements are unconstrained)",
                ))
            }
        };
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
        let mut out = Map::new();
        out.insert("type".into(), "array".into());
        out.insert("items".into(), item);
        if min > 0 {
            out.insert("minItems".into(), min.into());
        }
        out.insert("maxItems".into(), max.into());
        Ok((
            Value::Object(out),
            2 + 2 * MAX_WS_BYTES + max * (item_max + 1 + MAX_WS_BYTES),
        ))
    }

    fn visit_object(&mut self, obj: &'a Map<String, Value>, loc: &str) -> Result<Bounded> {
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
        // `"{" space kv ("," space kv)* space "}"`, kv = `key space ":" space value`.
        let mut max = 2 + 2 * MAX_WS_BYTES;
        let mut out_props = Map::new();
        for (name, sub) in props {
            let (value, value_max) =
                self.visit(sub, &format!("{loc}/properties/{}", escape_pointer(name)))?;
            let key = serde_json::to_string(name).unwrap_or_default();
            max += key.len() as u64 + 1 + 2 * MAX_WS_BYTES + value_max + 1 + MAX_WS_BYTES;
            out_props.insert(name.clone(), value);
        }
        let mut out = Map::new();
        out.insert("type".into(), "object".into());
        // Always present: without `properties` llama.cpp admits any object.
        out.insert("properties".into(), Value::Object(out_props));
        if !required.is_empty() {
            out.insert(
                "required".into(),
                Value::Array(required.iter().map(|r| Value::from(*r)).collect()),
            );
        }
        Ok((Value::Object(out), max))
    }
}

/// `{key: value}`.
fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// Bytes of a `const`/`enum` value as llama.cpp writes it (its JSON dump; a float
/// may print longer than serde_json prints it, so each number gets some slack).
fn literal_bytes(value: &Value) -> u64 {
    fn numbers(v: &Value) -> u64 {
        match v {
            Value::Number(_) => 1,
            Value::Array(a) => a.iter().map(numbers).sum(),
            Value::Object(o) => o.values().map(numbers).sum(),
            _ => 0,
        }
    }
    value.to_string().len() as u64 + 8 * numbers(value)
}

/// The range of an integer schema, from `minimum`/`maximum` (or their exclusive
/// forms) and its `format`, written as one inclusive `minimum`/`maximum` pair that
/// llama.cpp turns into an exact digit grammar. A side at the edge of `i64` is left
/// out: llama.cpp then allows 16 digits, which fit every 64-bit type.
fn integer(obj: &Map<String, Value>, loc: &str) -> Result<Bounded> {
    let (fmt_lo, fmt_hi): (i128, i128) = match obj.get("format").and_then(Value::as_str) {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64" | "uint" | "uint128") => (0, i64::MAX.into()),
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
    let has_lo = lo > i128::from(i64::MIN);
    let has_hi = hi < i128::from(i64::MAX);
    let mut out = Map::new();
    out.insert("type".into(), "integer".into());
    let unbounded_digits = MAX_INTEGRAL_DIGITS;
    let lo_bytes = if has_lo {
        out.insert(
            "minimum".into(),
            i64::try_from(lo).unwrap_or(i64::MIN).into(),
        );
        digits(lo)
    } else {
        unbounded_digits + 1
    };
    let hi_bytes = if has_hi {
        out.insert(
            "maximum".into(),
            i64::try_from(hi).unwrap_or(i64::MAX).into(),
        );
        digits(hi)
    } else {
        unbounded_digits + 1
    };
    // With one side open llama.cpp allows up to 16 digits on that side, and a sign
    // when the open side is below zero.
    Ok((Value::Object(out), lo_bytes.max(hi_bytes)))
}

/// Bytes of the decimal text of `v`, sign included.
fn digits(v: i128) -> u64 {
    v.to_string().len() as u64
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
            v.as_u64()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| {
                    Error::unsupported(
                        format!("{loc}/{key}"),
                        format!("`{key}` must be a non-negative integer below 2^31"),
                    )
                })
        })
        .transpose()
}

/// The shape description of a bounded schema.
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
    for kw in ["anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = obj.get(kw) {
            return subs
                .iter()
                .map(|s| shape(s, root, depth + 1))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("array") => {
            if let Some(Value::Array(items)) = obj.get("prefixItems") {
                let parts: Vec<String> = items.iter().map(|s| shape(s, root, depth + 1)).collect();
                format!("[{}]", parts.join(", "))
            } else {
                let item = obj
                    .get("items")
                    .map_or_else(|| ANY.to_owned(), |s| shape(s, root, depth + 1));
                format!("[{item}, ...]")
            }
        }
        Some("object") => {
            let Some(Value::Object(props)) = obj.get("properties") else {
                return "{}".to_owned();
            };
            let required: Vec<&str> = match obj.get("required") {
                Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            // Required first, as llama.cpp's grammar orders them.
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
        Some(other) => other.to_owned(),
        None => ANY.to_owned(),
    }
}

/// Resolves a local JSON pointer reference (`#/$defs/Name`).
fn resolve_pointer<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    let mut node = root;
    for part in pointer.split('/').skip(1).map(unescape_pointer) {
        node = match node {
            Value::Object(m) => m.get(&part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn unescape_pointer(part: &str) -> String {
    part.replace("~1", "/").replace("~0", "~")
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

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
    fn struct_schema_is_bounded_with_its_shape() {
        let b = BoundedSchema::for_type::<Outer>(GrammarLimits::default()).unwrap();
        let s = b.schema();
        assert_eq!(
            s.pointer("/$defs/Inner/properties/name"),
            Some(&serde_json::json!({"type": "string", "maxLength": 10}))
        );
        assert_eq!(
            s.pointer("/$defs/Inner/properties/level"),
            Some(&serde_json::json!({"type": "integer", "minimum": 0, "maximum": 255}))
        );
        assert_eq!(
            s.pointer("/properties/tags"),
            Some(
                &serde_json::json!({"type": "array", "items": {"type": "string", "maxLength": 96}, "minItems": 1, "maxItems": 3})
            )
        );
        assert_eq!(
            s.pointer("/$defs/Kind"),
            Some(&serde_json::json!({"enum": ["Sunny", "Rainy"]}))
        );
        assert!(
            b.max_bytes() > 100 && b.max_bytes() < 10_000,
            "{}",
            b.max_bytes()
        );
        assert_eq!(
            b.shape(),
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
        let err = BoundedSchema::for_type::<WithMap>(GrammarLimits::default()).unwrap_err();
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
        let err = BoundedSchema::for_type::<Node>(GrammarLimits::default()).unwrap_err();
        assert!(err.to_string().contains("recursive"), "{err}");
    }

    #[test]
    fn patterns_formats_and_number_bounds_are_refused() {
        let limits = GrammarLimits::default();
        let schema = serde_json::json!({"type": "string", "pattern": "^a+$"});
        let err = BoundedSchema::new(&schema, limits).unwrap_err();
        assert!(err.to_string().contains("#/pattern"), "{err}");
        let schema = serde_json::json!({"type": "object", "properties": {"when": {"type": "string", "format": "date"}}});
        let err = BoundedSchema::new(&schema, limits).unwrap_err();
        assert!(
            err.to_string().contains("#/properties/when/format"),
            "{err}"
        );
        let schema = serde_json::json!({"type": "number", "minimum": 0});
        let err = BoundedSchema::new(&schema, limits).unwrap_err();
        assert!(err.to_string().contains("#/minimum"), "{err}");
        let err = BoundedSchema::new(&serde_json::json!({}), limits).unwrap_err();
        assert!(err.to_string().contains("unconstrained"), "{err}");
        let schema = serde_json::json!({"type": "string", "format": "uuid"});
        assert_eq!(BoundedSchema::new(&schema, limits).unwrap().max_bytes(), 38);
    }

    #[test]
    fn integer_ranges_use_the_tightest_bound_and_stay_within_i64() {
        let limits = GrammarLimits::default();
        let b = |s: Value| BoundedSchema::new(&s, limits).unwrap();
        let s = b(
            serde_json::json!({"type": "integer", "format": "uint8", "exclusiveMaximum": 100, "minimum": 3}),
        );
        assert_eq!(
            s.schema(),
            &serde_json::json!({"type": "integer", "minimum": 3, "maximum": 99})
        );
        assert_eq!(s.max_bytes(), 2);
        let s = b(serde_json::json!({"type": "integer", "format": "uint64", "minimum": 0}));
        assert_eq!(
            s.schema(),
            &serde_json::json!({"type": "integer", "minimum": 0})
        );
        assert_eq!(s.max_bytes(), 17);
        let s = b(serde_json::json!({"type": "integer", "format": "int64"}));
        assert_eq!(s.schema(), &serde_json::json!({"type": "integer"}));
        let s = b(serde_json::json!({"type": "integer", "format": "int8"}));
        assert_eq!(s.max_bytes(), 4);
        let err = BoundedSchema::new(
            &serde_json::json!({"type": "integer", "minimum": 5, "maximum": 4}),
            limits,
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty integer range"), "{err}");
    }

    #[test]
    fn tuples_lose_items_false_and_types_become_any_of() {
        let limits = GrammarLimits::default();
        let s = BoundedSchema::new(
            &serde_json::json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"type": ["string", "null"], "maxLength": 2}], "items": false, "minItems": 2, "maxItems": 2}),
            limits,
        )
        .unwrap();
        assert_eq!(
            s.schema(),
            &serde_json::json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]}]})
        );
        // "[" " " true "," " " "\"…\"" " " "]": 2 + 2 + (5 + 2) + (2 + 2 * 6 + 2)
        assert_eq!(s.max_bytes(), 4 + 7 + 16);
    }

    #[cfg(feature = "engine")]
    #[test]
    fn llama_cpp_grammar_gets_the_overrides() {
        let g = JsonGrammar::for_type::<Outer>(GrammarLimits::default()).unwrap();
        let text = g.as_str();
        assert!(text.contains("space ::= \" \"?\n"), "{text}");
        assert!(!text.contains("[eE]"), "{text}");
        assert!(text.contains("decimal-part ::= [0-9]{1,6}\n"), "{text}");
        assert!(text.contains("[dD] [0-7]"), "{text}");
        assert!(text.contains("root ::= "), "{text}");
        let limits = GrammarLimits {
            max_fraction_digits: 0,
            ..GrammarLimits::default()
        };
        let g = JsonGrammar::for_type::<Outer>(limits).unwrap();
        assert!(!g.as_str().contains("\".\" decimal-part"), "{}", g.as_str());
        let g = JsonGrammar::from_schema(&serde_json::json!({"type": "number"}), limits).unwrap();
        assert!(
            g.as_str().contains("root ::= (\"-\"? integral-part)\n"),
            "{}",
            g.as_str()
        );
    }

    #[cfg(feature = "engine")]
    #[test]
    fn a_changed_primitive_is_an_error() {
        let err = override_primitives(
            "root ::= number\nnumber ::= integral-part ([eE] [-+]? [0-9]+)?\n",
            GrammarLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`number` rule changed"), "{err}");
    }
}
