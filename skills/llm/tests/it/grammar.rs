//! Schema → grammar conversion of the kinds of types agents exchange.

use llm::Error;
use llm::{GrammarLimits, JsonGrammar};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Payment {
    Authorization { amount: u64 },
    Escrow { amount: u64, deadline_hours: u16 },
    Channel,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
enum Shape {
    Point,
    Circle(f32),
    Rect { w: u16, h: u16 },
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct Offer {
    /// Doc comments become descriptions, which the converter ignores.
    service: String,
    payment: Payment,
    shapes: Vec<Shape>,
    pair: (bool, i16),
    #[serde(default)]
    tags: Vec<char>,
    maybe: Option<Box<Offer2>>,
    unit: (),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Offer2 {
    x: Option<i64>,
}

#[test]
fn tagged_enums_tuples_and_options_convert() {
    let g = JsonGrammar::for_type::<Offer>(GrammarLimits::default()).unwrap();
    let text = g.as_str();
    for needle in [
        "payment ::= ",
        "shape ::= ",
        "\\\"kind\\\"",
        "\\\"authorization\\\"",
        "\\\"Circle\\\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(g.max_bytes() < 100_000, "{}", g.max_bytes());
}

#[test]
fn unsupported_parts_are_named() {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Bad {
        ok: u8,
        nested: Inner,
    }
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        anything: serde_json::Value,
    }
    let err = JsonGrammar::for_type::<Bad>(GrammarLimits::default()).unwrap_err();
    match &err {
        Error::UnsupportedSchema { location, reason } => {
            assert_eq!(location, "#/$defs/Inner/properties/anything");
            assert!(
                reason.contains("unbounded") || reason.contains("unconstrained"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
}
