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
