//! How an attested inference travels in a delivery: [`AttestedInference`], and the
//! result a seller delivers with it ([`inference_result`]).

use serde_json::{json, Map, Value};

use crate::attestation::{InferenceRecord, SignedAttestation};
use crate::sampling::SamplingParams;

/// The `type` of a delivery's attestation that is an [`AttestedInference`].
pub const ATTESTED_INFERENCE_TYPE: &str = "agora.inference.v1";

/// A delivery's attestation of an LLM inference: the record (everything needed to
/// check the hashes and re-run it) and the seller's signature over its
/// [`crate::InferenceAttestation`].
///
/// As JSON ([`AttestedInference::to_value`]) it is
/// `{"type": "agora.inference.v1", "record": …, "signed": …}`, the record's sampling
/// floats written as decimal strings (`"temperature": "0.7"`, exactly the `f32`
/// back): payment journals keep deliveries' attestations and carry no floating point
/// numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestedInference {
    /// What was run and what came out.
    pub record: InferenceRecord,
    /// The seller's signed attestation of it.
    pub signed: SignedAttestation,
}

const FLOATS: [&str; 4] = ["temperature", "topP", "minP", "repeatPenalty"];

impl AttestedInference {
    /// The JSON form.
    pub fn to_value(&self) -> Value {
        // Plain data: serializing it cannot fail.
        let mut record = serde_json::to_value(&self.record).unwrap_or_default();
        if let Some(params) = record.get_mut("params").and_then(Value::as_object_mut) {
            let p = &self.record.params;
            let values = [p.temperature(), p.top_p(), p.min_p(), p.repeat_penalty()];
            for (name, v) in FLOATS.iter().zip(values) {
                params.insert((*name).to_owned(), Value::String(v.to_string()));
            }
        }
        json!({
            "type": ATTESTED_INFERENCE_TYPE,
            "record": record,
            "signed": serde_json::to_value(&self.signed).unwrap_or_default(),
        })
    }

    /// Reads the JSON form back; `None` when `value` is not an attested inference
    /// (another kind of attestation), an error when it claims to be one but is
    /// malformed.
    ///
    /// # Errors
    /// What is malformed.
    pub fn from_value(value: &Value) -> Result<Option<Self>, String> {
        if value.get("type").and_then(Value::as_str) != Some(ATTESTED_INFERENCE_TYPE) {
            return Ok(None);
        }
        let obj = value
            .as_object()
            .ok_or("an attested inference must be an object")?;
        if let Some(extra) = obj
            .keys()
            .find(|k| !["type", "record", "signed"].contains(&k.as_str()))
        {
            return Err(format!("unknown field {extra:?} in an attested inference"));
        }
        let mut record = obj
            .get("record")
            .cloned()
            .ok_or("the attested inference has no record")?;
        let params = record
            .get_mut("params")
            .and_then(Value::as_object_mut)
            .ok_or("the record has no sampling parameters")?;
        for name in FLOATS {
            let text = params
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("params.{name} must be a decimal string"))?;
            let v: f32 = text
                .parse()
                .map_err(|e| format!("params.{name} {text:?}: {e}"))?;
            params.insert(name.to_owned(), float_value(v)?);
        }
        let record: InferenceRecord =
            serde_json::from_value(record).map_err(|e| format!("the record: {e}"))?;
        let signed: SignedAttestation = serde_json::from_value(
            obj.get("signed")
                .cloned()
                .ok_or("the attested inference has no signature")?,
        )
        .map_err(|e| format!("the signed attestation: {e}"))?;
        Ok(Some(Self { record, signed }))
    }
}

/// `v` as the JSON number serde writes for an `f32` (read back to the same bits).
fn float_value(v: f32) -> Result<Value, String> {
    serde_json::to_value(SamplingParams::default().with_temperature(v))
        .ok()
        .and_then(|p| p.get("temperature").cloned())
        .filter(|n| !n.is_null())
        .ok_or_else(|| format!("{v} is not a finite number"))
}

/// The `type` of the short form of an [`AttestedInference`] that a seller serves to
/// HTTP clients ([`served_attestation`]).
pub const SERVED_INFERENCE_TYPE: &str = "agora.inference.signed.v1";

/// The short form of an attested inference's JSON ([`AttestedInference::to_value`])
/// that an x402 seller sends in its `AGORA-ATTESTATION` response header and an A2A
/// artifact carries: `{"type": "agora.inference.signed.v1", "signed": …}`, the
/// seller's signed [`crate::InferenceAttestation`] without the record (whose prompt,
/// grammar and output may be tens of kilobytes, more than clients take in headers).
/// The client has the output in the body ([`check_served`]); the seller's journal
/// keeps the whole record for audits. `None` for other attestations.
pub fn served_attestation(attestation: &Value) -> Option<Value> {
    if attestation.get("type").and_then(Value::as_str) != Some(ATTESTED_INFERENCE_TYPE) {
        return None;
    }
    Some(json!({
        "type": SERVED_INFERENCE_TYPE,
        "signed": attestation.get("signed")?.clone(),
    }))
}

/// What a client that bought an inference over HTTP checks with the seller's
/// [`served_attestation`] and the result body it was served: the signature recovers
/// to `seller` (the `payTo` it paid) in the [`attestation_domain`] of `chain_id`, the
/// attested model is the result's `model`, and the attested output hash is the
/// Keccak-256 of the result's `output`. Returns the signed attestation (its prompt
/// and sampling hashes are for an audit against the seller's journal).
///
/// # Errors
/// What does not match, or what is malformed.
///
/// [`attestation_domain`]: crate::attestation_domain
pub fn check_served(
    served: &Value,
    result: &Value,
    seller: wallets::Address,
    chain_id: u64,
) -> Result<SignedAttestation, String> {
    if served.get("type").and_then(Value::as_str) != Some(SERVED_INFERENCE_TYPE) {
        return Err(format!(
            "the attestation's type is not {SERVED_INFERENCE_TYPE:?}"
        ));
    }
    let signed: SignedAttestation = serde_json::from_value(
        served
            .get("signed")
            .cloned()
            .ok_or("the attestation has no signature")?,
    )
    .map_err(|e| format!("the signed attestation: {e}"))?;
    signed
        .verify_signature(&crate::attestation_domain(Some(chain_id)), Some(seller))
        .map_err(|e| e.to_string())?;
    let text = |field: &str| {
        result
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the result has no {field:?} string"))
    };
    let model =
        crate::ModelFingerprint::from_bytes(signed.attestation.model_fingerprint.0).to_string();
    if text("model")? != model {
        return Err(format!(
            "the result's model {} is not the attested model {model}",
            text("model")?
        ));
    }
    let output_hash = wallets::keccak256(text("output")?.as_bytes());
    if output_hash != signed.attestation.output_hash {
        return Err(format!(
            "the result's output hashes to {output_hash}, the attested output hash is {}",
            signed.attestation.output_hash
        ));
    }
    Ok(signed)
}

/// The JSON Schema of the result an LLM seller delivers ([`inference_result`]).
pub fn result_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "model": {"type": "string", "description": "the model's fingerprint: SHA-256 of the GGUF file, lowercase hex"},
            "output": {"type": "string", "description": "the generated text"}
        },
        "required": ["model", "output"],
        "additionalProperties": false
    })
}

/// The result an LLM seller delivers for `record`: `{"model": fingerprint, "output":
/// text}`. It is a function of the record alone, so the delivery's signed result hash
/// binds the attested output, and an auditor who holds only the journal's hashes
/// can recompute it.
pub fn inference_result(record: &InferenceRecord) -> Value {
    let mut m = Map::new();
    m.insert("model".into(), Value::String(record.model.to_string()));
    m.insert("output".into(), Value::String(record.output.clone()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{attestation_domain, ModelFingerprint, Prompt, SpecVersion};
    use wallets::Wallet;

    #[test]
    fn attested_inferences_round_trip_without_floats() {
        let record = InferenceRecord {
            model: ModelFingerprint::from_bytes([7; 32]),
            prompt: Prompt::user("hi"),
            prompt_text: "<|im_start|>user\nhi<|im_end|>\n".into(),
            params: SamplingParams::default()
                .with_seed(3)
                .with_temperature(0.1 + 0.2)
                .with_top_p(1e-7),
            grammar: Some("root ::= \"a\"".into()),
            spec_version: SpecVersion::CURRENT,
            output: "hello".into(),
        };
        let wallet = Wallet::random();
        let signed =
            SignedAttestation::sign(&wallet, &attestation_domain(Some(1)), record.attestation())
                .unwrap();
        let a = AttestedInference { record, signed };
        let v = a.to_value();
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("0.30000001"), "{text}");
        fn floats(v: &Value) -> bool {
            match v {
                Value::Number(n) => n.is_f64(),
                Value::Array(a) => a.iter().any(floats),
                Value::Object(o) => o.values().any(floats),
                _ => false,
            }
        }
        assert!(!floats(&v), "{text}");
        let back = AttestedInference::from_value(&v).unwrap().unwrap();
        assert_eq!(back, a);
        assert_eq!(
            back.record.params.temperature().to_bits(),
            (0.1f32 + 0.2).to_bits()
        );
        assert_eq!(
            AttestedInference::from_value(&json!({"kind": "weather"})).unwrap(),
            None
        );
        let mut bad = v.clone();
        bad["record"]["params"]["topP"] = json!(0.5);
        assert!(AttestedInference::from_value(&bad)
            .unwrap_err()
            .contains("decimal string"));
        assert_eq!(
            inference_result(&a.record),
            json!({"model": a.record.model.to_string(), "output": "hello"})
        );
    }
}
