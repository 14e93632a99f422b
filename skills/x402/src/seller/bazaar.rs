//! The `bazaar` extension of a 402: how to call the resource (a JSON `POST` body)
//! and what it answers, as JSON Schemas, for x402 discovery.
//!
//! The shape is the one PyPI `x402` 2.25 declares for a body method
//! (`x402.extensions.bazaar.declare_discovery_extension(body_type="json", …)`,
//! enriched with the method by its resource server extension): an `info` object and a
//! JSON Schema that `info` validates against. The skill's request schema sits at
//! `schema.properties.input.properties.body`, its response schema at
//! `schema.properties.output.properties.example`; the definitions both refer to
//! (`#/$defs/…`) are hoisted to the root of `schema`, where same-document references
//! resolve.

use serde_json::{json, Map, Value};

/// The extension's key in a 402's `extensions`.
pub const BAZAAR: &str = "bazaar";

/// The `bazaar` extension of a skill called with a JSON `POST` body of
/// `input_schema`, answering `output_schema`, with optional examples.
///
/// # Errors
/// A message when the two schemas define one name differently.
pub fn extension(
    input_schema: &Value,
    output_schema: &Value,
    input_example: Option<&Value>,
    output_example: Option<&Value>,
) -> Result<Value, String> {
    let mut defs = Map::new();
    let input = hoist(input_schema, &mut defs)?;
    let output = hoist(output_schema, &mut defs)?;
    let mut info_output = json!({"type": "json"});
    if let (Some(example), Some(o)) = (output_example, info_output.as_object_mut()) {
        o.insert("example".into(), example.clone());
    }
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "input": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "http"},
                    "method": {"type": "string", "enum": ["POST", "PUT", "PATCH"]},
                    "bodyType": {"type": "string", "enum": ["json", "form-data", "text"]},
                    "body": input,
                },
                "required": ["type", "method", "bodyType", "body"],
                "additionalProperties": false,
            },
            "output": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "example": output,
                },
                "required": ["type"],
            },
        },
        "required": ["input"],
    });
    if let (false, Some(root)) = (defs.is_empty(), schema.as_object_mut()) {
        root.insert("$defs".into(), Value::Object(defs));
    }
    Ok(json!({
        "info": {
            "input": {
                "type": "http",
                "method": "POST",
                "bodyType": "json",
                "body": input_example.cloned().unwrap_or_else(|| json!({})),
            },
            "output": info_output,
        },
        "schema": schema,
    }))
}

/// `schema` without its `$schema` and `$defs` (or `definitions`), whose entries move
/// to `defs`; `#/definitions/` references become `#/$defs/` ones.
fn hoist(schema: &Value, defs: &mut Map<String, Value>) -> Result<Value, String> {
    let mut schema = schema.clone();
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(found)) = o.remove(key) {
                for (name, def) in found {
                    let def = rewrite_refs(def);
                    match defs.get(&name) {
                        Some(existing) if *existing != def => {
                            return Err(format!(
                                "the request and response schemas define {name:?} differently"
                            ))
                        }
                        _ => {
                            defs.insert(name, def);
                        }
                    }
                }
            }
        }
    }
    Ok(rewrite_refs(schema))
}

fn rewrite_refs(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let r = match r.strip_prefix("#/definitions/") {
                            Some(rest) => format!("#/$defs/{rest}"),
                            None => r,
                        };
                        (k, Value::String(r))
                    }
                    (_, v) => (k, rewrite_refs(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite_refs).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_move_to_the_root_and_references_follow() {
        let input = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"place": {"$ref": "#/$defs/Place"}},
            "$defs": {"Place": {"type": "string"}}
        });
        let output = json!({
            "type": "object",
            "properties": {"at": {"$ref": "#/definitions/Place"}},
            "definitions": {"Place": {"type": "string"}}
        });
        let ext = extension(&input, &output, None, None).unwrap();
        let schema = &ext["schema"];
        assert_eq!(schema["$defs"]["Place"], json!({"type": "string"}));
        let body = &schema["properties"]["input"]["properties"]["body"];
        assert_eq!(body["properties"]["place"]["$ref"], "#/$defs/Place");
        assert!(body.get("$schema").is_none() && body.get("$defs").is_none());
        let out = &schema["properties"]["output"]["properties"]["example"];
        assert_eq!(out["properties"]["at"]["$ref"], "#/$defs/Place");
        assert_eq!(ext["info"]["input"]["method"], "POST");
        assert_eq!(ext["info"]["input"]["bodyType"], "json");

        let clash = json!({"$defs": {"Place": {"type": "integer"}}});
        assert!(extension(&input, &clash, None, None)
            .unwrap_err()
            .contains("Place"));
    }
}
